"""Problems from a local file: JSON Lines, CSV, or a ``datasets.save_to_disk`` folder.

The caller names the question and answer fields, so any table with one
question and one reference answer per row works. A missing field raises an
error that lists the fields the file has.
"""

import csv
import importlib
import json
import os
import pathlib
from collections.abc import Iterable, Mapping

from slgjax.tasks.problem import Problem

__all__ = ["load_file"]


def _missing_field(field: str, available: Iterable[str], where: str) -> ValueError:
    return ValueError(
        f"{where} has no field {field!r}; available fields: {sorted(available)}. "
        "Pass question_field= and answer_field= to choose others."
    )


def _read_jsonl(path: pathlib.Path) -> Iterable[tuple[str, Mapping]]:
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: invalid JSON: {error.msg}.") from error
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: each line must be a JSON object.")
            yield f"{path}:{number}", row


def _read_csv(path: pathlib.Path) -> Iterable[tuple[str, Mapping]]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            raise ValueError(f"{path} is empty; a CSV file needs a header row.")
        # Line 1 is the header, so data row i sits on line i + 2 when no cell spans lines.
        for index, row in enumerate(reader):
            yield f"{path} row {index + 1}", row


def _read_saved_dataset(path: pathlib.Path, split: str | None) -> Iterable[tuple[str, Mapping]]:
    try:
        datasets = importlib.import_module("datasets")
    except ImportError as error:
        raise ImportError(
            f"{path} is a folder, read as a Hugging Face dataset saved with save_to_disk, "
            "but the `datasets` package is not installed. Install it with "
            "`pip install datasets`, or export the data to JSON Lines or CSV."
        ) from error
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split is None:
            raise ValueError(
                f"{path} contains the splits {sorted(loaded)}; pass split= to choose one."
            )
        if split not in loaded:
            raise ValueError(f"{path} has no split {split!r}; available: {sorted(loaded)}.")
        loaded = loaded[split]
    for index, row in enumerate(loaded):
        yield f"{path} row {index}", row


def load_file(
    path: str | os.PathLike,
    *,
    question_field: str = "question",
    answer_field: str = "answer",
    id_field: str | None = None,
    split: str | None = None,
) -> list[Problem]:
    """Load problems from a JSON Lines file, a CSV file or a saved Hugging Face dataset.

    The format follows the path: a folder is read with
    ``datasets.load_from_disk`` (the ``datasets`` package is imported only
    then), ``.csv`` as CSV with a header row, anything else as JSON Lines.

    Args:
      path: the file or folder.
      question_field: field holding the question.
      answer_field: field holding the reference answer; numbers are turned
        into text. A GSM8K-style answer ending in ``#### N`` is graded on ``N``.
      id_field: field holding a unique id; rows are numbered when None.
      split: the split of a saved ``DatasetDict``.

    Returns:
      Problems with ids ``"file:<name>/<id or row index>"`` and source
      ``"file:<path>"``; the row's other fields go to ``metadata``.

    Raises:
      FileNotFoundError: when ``path`` does not exist.
      ValueError: when a field is missing (the message lists the available
        ones), a value is empty, an id repeats, or a line is not valid JSON.
      ImportError: for a folder when ``datasets`` is not installed.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no file or folder at {path}.")
    if path.is_dir():
        rows = _read_saved_dataset(path, split)
    elif path.suffix.lower() == ".csv":
        rows = _read_csv(path)
    else:
        rows = _read_jsonl(path)

    problems, seen = [], {}
    for index, (where, row) in enumerate(rows):
        for field in (question_field, answer_field, id_field):
            if field is not None and field not in row:
                raise _missing_field(field, row.keys(), where)
        question, answer = row[question_field], row[answer_field]
        if question is None or not str(question).strip():
            raise ValueError(f"{where}: the question field {question_field!r} is empty.")
        if answer is None or not str(answer).strip():
            raise ValueError(f"{where}: the answer field {answer_field!r} is empty.")

        local_id = str(row[id_field]) if id_field is not None else str(index)
        if local_id in seen:
            raise ValueError(f"{where}: id {local_id!r} repeats the id of {seen[local_id]}.")
        seen[local_id] = where
        used = {question_field, answer_field, id_field}
        problems.append(
            Problem(
                id=f"file:{path.name}/{local_id}",
                question=str(question),
                answer=str(answer).strip(),
                source=f"file:{path}",
                metadata={key: value for key, value in row.items() if key not in used},
            )
        )
    if not problems:
        raise ValueError(f"{path} contains no rows.")
    return problems
