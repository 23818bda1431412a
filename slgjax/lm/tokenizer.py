"""Load the tokenizer of a local Hugging Face directory or GGUF file, offline."""

import pathlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import transformers

__all__ = ["load_tokenizer"]


def load_tokenizer(path) -> "transformers.PreTrainedTokenizerFast":
    """Load a fast tokenizer with its chat template, from local files only.

    Args:
        path: a Hugging Face model directory (``tokenizer.json`` and
            ``tokenizer_config.json``) or a ``.gguf`` file. transformers converts
            the vocabulary and merges stored in a GGUF file; the chat template comes
            from its ``tokenizer.chat_template`` metadata.

    Returns:
        The tokenizer (in transformers 5, ``PreTrainedTokenizerFast`` is the
        ``TokenizersBackend`` class).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the path is neither a directory nor a ``.gguf`` file.
    """
    # transformers takes seconds to import; only tokenizer users pay for it.
    import transformers

    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No tokenizer at {path}.")

    if path.is_dir():
        return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    if path.suffix != ".gguf":
        raise ValueError(
            f"{path} is neither a directory nor a .gguf file; pass a Hugging Face model "
            "directory or a GGUF file."
        )

    tokenizer = transformers.AutoTokenizer.from_pretrained(
        path.parent, gguf_file=path.name, local_files_only=True
    )
    if tokenizer.chat_template is None:
        # Take the template from the metadata if the conversion left it unset.
        import gguf

        field = gguf.GGUFReader(path).fields.get("tokenizer.chat_template")
        if field is not None:
            tokenizer.chat_template = field.contents()
    return tokenizer
