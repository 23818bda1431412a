"""Turn a question into policy input through the tokenizer's chat template."""

from collections.abc import Sequence

__all__ = ["DEFAULT_TEMPLATE", "encode_prompt", "format_question"]

DEFAULT_TEMPLATE = (
    "{question}\n\n"
    "Solve the problem step by step. End your response with the sentence "
    '"The answer is N." where N is the final answer.'
)


def format_question(question: str, *, template: str = DEFAULT_TEMPLATE) -> str:
    """Return the user message: ``template`` with ``{question}`` replaced by the question.

    Only ``{question}`` is substituted, so braces elsewhere (LaTeX in the
    question or the template) are kept as written.

    Raises:
      ValueError: when ``template`` lacks ``{question}``.
    """
    if "{question}" not in template:
        raise ValueError(f"template must contain '{{question}}'; got {template!r}.")
    return template.replace("{question}", question)


def encode_prompt(
    tokenizer,
    question: str,
    *,
    template: str = DEFAULT_TEMPLATE,
    system: str | None = None,
) -> list[int]:
    """Return the token ids of the chat that asks ``question``, ready for generation.

    The messages are an optional system turn and one user turn
    (:func:`format_question`), rendered by ``tokenizer.apply_chat_template``
    with the assistant header appended. The rendered text is encoded without
    adding special tokens, because the template already contains them.

    Args:
      tokenizer: a ``transformers`` tokenizer with a chat template.
      question: the question text.
      template: the user message, with a ``{question}`` field; the default
        asks for a final "The answer is N." sentence.
      system: optional system message.

    Raises:
      ValueError: when the tokenizer has no chat template or ``template``
        lacks ``{question}``.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer {type(tokenizer).__name__} has no chat_template; load one that "
            "ships a template or set tokenizer.chat_template."
        )
    content = format_question(question, template=template)
    messages: Sequence[dict] = [{"role": "user", "content": content}]
    if system is not None:
        messages = [{"role": "system", "content": system}, *messages]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
