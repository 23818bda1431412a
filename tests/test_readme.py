"""The README's Python example runs as written."""

import pathlib

from markdown_blocks import code_blocks, compile_block

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(capsys):
    blocks = code_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "README.md has no python example"

    for block in blocks:
        exec(compile_block(block, str(README)), {})

    assert capsys.readouterr().out.strip()
