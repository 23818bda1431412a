"""Every Python block of docs/GUIDE.md runs as written, in order.

The blocks of one level-2 section (``## ...``) share one namespace, as they
would for a reader who pastes them into one session in order. Each section
starts from a fresh namespace whose ``__name__`` is ``"__main__"``. Each block
is its own test. When pytest-xdist sends a block to a process that has not run
the blocks before it in its section, the test runs those first, so any subset
of the tests can run in any process. Assertions inside the blocks check what
the guide's text claims.
"""

import pathlib

import pytest
from markdown_blocks import CodeBlock, code_blocks, compile_block

GUIDE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "GUIDE.md"
BLOCKS = code_blocks(GUIDE.read_text(encoding="utf-8"))
SECTIONS = list(dict.fromkeys(block.section for block in BLOCKS))


def _block_id(block):
    number = SECTIONS.index(block.section) + 1
    index = [b for b in BLOCKS if b.section == block.section].index(block) + 1
    return f"section{number}-block{index}-line{block.line}"


# Per section: the shared namespace and how many of its blocks have run in this process.
_namespaces: dict[str, dict] = {}
_blocks_run: dict[str, int] = {}


def _execute(block):
    exec(compile_block(block, str(GUIDE)), _namespaces[block.section])


def test_code_blocks_sections_and_fences():
    text = (
        "# Title\n"
        "```python\nx = 1\n```\n"
        "## First\n"
        "````Python\n```\n## not a heading\n````\n"
        "```bash\nls\n```\n"
        "## Second ##\n"
        "```python\ny = 2\n```"
    )

    assert code_blocks(text) == [
        CodeBlock("python", "x = 1\n", 2, ""),
        CodeBlock("python", "```\n## not a heading\n", 6, "First"),
        CodeBlock("python", "y = 2\n", 14, "Second"),
    ]
    assert [block.language for block in code_blocks(text, language=None)] == [
        "python",
        "python",
        "bash",
        "python",
    ]
    with pytest.raises(ValueError, match="opened on line 2 is never closed"):
        code_blocks("text\n```python\nx = 1\n")


def test_guide_has_sections_with_python():
    lines = GUIDE.read_text(encoding="utf-8").splitlines()
    headings = [line for line in lines if line.startswith("## ")]
    assert len(headings) >= 4, headings
    assert len(SECTIONS) >= 3, SECTIONS
    assert all(section for section in SECTIONS), "a python block comes before the first ## heading"


@pytest.mark.parametrize("block", BLOCKS, ids=[_block_id(block) for block in BLOCKS])
def test_guide_block_runs(block):
    section = [b for b in BLOCKS if b.section == block.section]
    index = section.index(block)
    _namespaces.setdefault(block.section, {"__name__": "__main__"})
    done = _blocks_run.setdefault(block.section, 0)

    for earlier in section[done:index]:
        try:
            _execute(earlier)
        except Exception as error:
            pytest.fail(
                f"{_block_id(block)} needs the earlier block {_block_id(earlier)}, which "
                f"raised {type(error).__name__}: {error}"
            )
        _blocks_run[block.section] += 1

    _execute(block)
    _blocks_run[block.section] = index + 1
