"""Fenced code blocks of Markdown documents, for tests that run the documentation."""

import re
from typing import NamedTuple

__all__ = ["CodeBlock", "code_blocks", "compile_block"]

# An opening fence: three or more backticks at the start of a line, then the language.
_OPENING = re.compile(r"^(`{3,})\s*([\w+-]*)\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


class CodeBlock(NamedTuple):
    """One fenced code block of a Markdown document.

    Attributes:
      language: the word after the opening fence, lower case ("" when none).
      code: the lines between the fences, each ending in a newline.
      line: 1-based line number of the opening fence.
      section: text of the nearest level-2 heading (``## ...``) above the block,
        or "" before the first one.
    """

    language: str
    code: str
    line: int
    section: str


def code_blocks(text: str, language: str | None = "python") -> list[CodeBlock]:
    """Return the fenced code blocks of a Markdown text, in document order.

    A block opens with three or more backticks at the start of a line and closes
    with a line of at least as many backticks. Headings inside a block are code,
    not headings.

    Args:
      text: the Markdown source.
      language: keep only blocks of this language (compared in lower case), or
        all blocks when None.

    Raises:
      ValueError: when a block is never closed; the message names its line.
    """
    blocks = []
    section = ""
    fence = None
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        stripped = line.rstrip("\n")
        if fence is None:
            opening = _OPENING.match(stripped)
            if opening:
                fence, block_language, start, body = opening.group(1), opening.group(2), number, []
                continue
            heading = _HEADING.match(stripped)
            if heading and len(heading.group(1)) == 2:
                section = heading.group(2)
            continue

        if stripped.strip().startswith(fence) and set(stripped.strip()) == {"`"}:
            block = CodeBlock(block_language.lower(), "".join(body), start, section)
            if language is None or block.language == language.lower():
                blocks.append(block)
            fence = None
        else:
            body.append(line if line.endswith("\n") else line + "\n")

    if fence is not None:
        raise ValueError(
            f"the code block opened on line {start} is never closed. Add a line {fence} after it."
        )
    return blocks


def compile_block(block: CodeBlock, filename: str):
    """Compile a block so that tracebacks show the Markdown file and its line numbers."""
    return compile("\n" * block.line + block.code, filename, "exec")
