"""Append-only JSON Lines record files that survive crashes and refuse mixed settings.

File layout: line 1 is a header ``{"kind": "header", "settings": {...},
"config_hash": ...}``; every further line is one record ``{"kind": "record",
..., "config_hash": ...}``. Every line carries a ``"checksum"``, the CRC-32 of
the canonical JSON of the line's other fields.

Durability: a record is appended as one line with a single write, then the
file is flushed and ``os.fsync``-ed before :meth:`RecordFile.append` returns,
so a finished record survives a crash of the process or the machine. Rewriting
the file on every record (write a new file, ``os.replace``) would cost time
quadratic in the number of records; appending costs one line. A crash during
a write can leave a last line that is cut short. Reading checks every line
for a line end, valid JSON, the checksum and the header's settings. Bad lines
are reported with their line numbers, never dropped, and the user deletes such
a line and reruns. Only one process may write a file at a time, because
nothing locks it.
"""

import hashlib
import json
import math
import os
import pathlib
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "ConfigMismatchError",
    "CorruptRecordError",
    "RecordFile",
    "canonical_json",
    "config_hash",
    "diff_settings",
    "finite_or_none",
    "read_records",
]

FORMAT_VERSION = 1
_MAX_REPORTED = 10


class CorruptRecordError(ValueError):
    """Raised when lines of a record file are cut short, invalid or fail their checksum."""


class ConfigMismatchError(ValueError):
    """Raised when a record file was written with settings other than the current ones."""


def canonical_json(value: Any) -> str:
    """Return ``value`` as compact JSON with sorted keys; tuples become lists.

    Raises:
      TypeError: for values JSON cannot store (NaN and infinities included).
    """
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except ValueError as error:
        raise TypeError(f"value cannot be stored as JSON: {error}; use None for NaN.") from error


def config_hash(settings: Mapping[str, Any]) -> str:
    """Return a short SHA-256 hex digest of ``settings`` in canonical JSON."""
    return hashlib.sha256(canonical_json(settings).encode()).hexdigest()[:16]


def _flatten(value, prefix=""):
    if isinstance(value, Mapping) and value:
        out = {}
        for key in value:
            out.update(_flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def diff_settings(old: Mapping, new: Mapping) -> list[str]:
    """Return one line per setting that differs, as ``"key: <old> in the file, <new> now"``.

    Nested mappings are compared key by key and named with dotted keys
    (``"environment.temperature"``). A missing key reads as ``<unset>``.
    """
    old_flat = _flatten(json.loads(canonical_json(old)))
    new_flat = _flatten(json.loads(canonical_json(new)))
    lines = []
    for key in sorted(set(old_flat) | set(new_flat)):
        before = old_flat.get(key, "<unset>")
        after = new_flat.get(key, "<unset>")
        if before != after:
            lines.append(f"{key}: {before!r} in the file, {after!r} now")
    return lines


def _checksum(fields: Mapping) -> str:
    return f"{zlib.crc32(canonical_json(fields).encode()):08x}"


def _seal(fields: Mapping) -> str:
    if "checksum" in fields:
        raise ValueError("a record may not contain the field 'checksum'; it is added on write.")
    body = dict(fields)
    body["checksum"] = _checksum(body)
    return canonical_json(body) + "\n"


def _parse_line(text: str) -> tuple[dict | None, str | None]:
    """Return ``(fields, None)`` for a sound line or ``(None, problem)``."""
    if not text.endswith("\n"):
        return None, "the line has no line end, so a crash cut it while it was written"
    try:
        body = json.loads(text)
    except json.JSONDecodeError as error:
        return None, f"invalid JSON ({error.msg} at column {error.colno})"
    if not isinstance(body, dict) or "checksum" not in body:
        return None, "not a JSON object with a checksum"
    stored = body.pop("checksum")
    if stored != _checksum(body):
        return None, f"checksum {stored!r} does not match the content, which was changed"
    return body, None


def _check_lines(path: pathlib.Path) -> list[dict]:
    """Read and verify every line of ``path``; return the parsed lines."""
    with open(path, encoding="utf-8", newline="") as handle:
        lines = handle.readlines()
    parsed, problems = [], []
    for number, text in enumerate(lines, start=1):
        body, problem = _parse_line(text)
        if problem is not None:
            problems.append(f"line {number}: {problem}")
        else:
            parsed.append((number, body))
    if problems:
        shown = "\n  ".join(problems[:_MAX_REPORTED])
        hidden = len(problems) - _MAX_REPORTED
        more = f"\n  ... and {hidden} more" if hidden > 0 else ""
        raise CorruptRecordError(
            f"{path} has {len(problems)} corrupt line(s); no record was dropped:\n  {shown}{more}\n"
            "Delete or repair those lines, then rerun: the run they belonged to is redone, "
            "and every other record is kept."
        )
    return parsed


def _write_durably(path: pathlib.Path, text: str, mode: str) -> None:
    with open(path, mode, encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def read_records(path: str | os.PathLike) -> tuple[dict, list[dict]]:
    """Read a record file and return ``(header, records)`` after checking every line.

    Raises:
      FileNotFoundError: when ``path`` does not exist.
      CorruptRecordError: when a line is cut short, invalid, fails its
        checksum, or the header is missing or repeated; the message lists the
        line numbers.
    """
    path = pathlib.Path(path)
    parsed = _check_lines(path)
    if not parsed:
        raise CorruptRecordError(f"{path} is empty; it has no header line.")
    number, header = parsed[0]
    if header.get("kind") != "header" or "settings" not in header:
        raise CorruptRecordError(
            f"{path}: line {number} is not a header, so the file is not a record file."
        )
    if header.get("config_hash") != config_hash(header["settings"]):
        raise CorruptRecordError(
            f"{path}: line {number}: the header's config_hash does not match its settings."
        )

    records = []
    for number, body in parsed[1:]:
        if body.get("kind") != "record":
            raise CorruptRecordError(
                f"{path}: line {number} has kind {body.get('kind')!r}; expected 'record'."
            )
        body["_line"] = number
        records.append(body)
    return header, records


class RecordFile:
    """An append-only record file bound to one set of settings.

    Opening an existing file reads and checks every line (see the module
    docstring), then compares the header's settings with ``settings``. A new
    or empty file gets a header.

    Args:
      path: the JSON Lines file.
      settings: everything that shapes the records (JSON values). Its
        :func:`config_hash` is stored in the header and in every record.
      key_fields: fields that identify a record; two records with equal keys
        are an error.

    Raises:
      CorruptRecordError: see :func:`read_records`, and for repeated keys.
      ConfigMismatchError: when the file's settings differ; the message lists
        each differing key.
    """

    def __init__(self, path: str | os.PathLike, *, settings: Mapping, key_fields: Sequence[str]):
        self.path = pathlib.Path(path)
        self.settings = json.loads(canonical_json(settings))
        self.config_hash = config_hash(self.settings)
        self.key_fields = tuple(key_fields)
        self.records: list[dict] = []
        self._keys: dict[tuple, int] = {}

        if not self.path.exists() or self.path.stat().st_size == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            header = {
                "kind": "header",
                "format": FORMAT_VERSION,
                "settings": self.settings,
                "config_hash": self.config_hash,
            }
            _write_durably(self.path, _seal(header), "w")
            return

        header, records = read_records(self.path)
        if header["config_hash"] != self.config_hash:
            differences = diff_settings(header["settings"], self.settings)
            raise ConfigMismatchError(
                f"{self.path} contains records made with other settings, and records of "
                "different settings cannot be mixed. Differences:\n  "
                + "\n  ".join(differences)
                + "\nWrite to a new file (choose another output path), or delete or move "
                f"{self.path} to start over."
            )
        for record in records:
            if record.get("config_hash") != self.config_hash:
                raise CorruptRecordError(
                    f"{self.path}: line {record['_line']} has config_hash "
                    f"{record.get('config_hash')!r}, not the header's {self.config_hash!r}; "
                    "the file mixes runs. Move that line to another file."
                )
            self._add(record)

    def key_of(self, record: Mapping) -> tuple:
        """Return the identifying key of ``record``."""
        missing = [name for name in self.key_fields if name not in record]
        if missing:
            raise ValueError(f"record lacks the key fields {missing}.")
        return tuple(record[name] for name in self.key_fields)

    def _add(self, record: dict):
        key = self.key_of(record)
        if key in self._keys:
            raise CorruptRecordError(
                f"{self.path}: line {record.get('_line', '?')} repeats the record {key} of "
                f"line {self._keys[key]}; delete one of the two lines."
            )
        self._keys[key] = record.get("_line", len(self.records) + 2)
        self.records.append(record)

    def __contains__(self, key: tuple) -> bool:
        return tuple(key) in self._keys

    def keys(self) -> set[tuple]:
        """Return the keys of all records in the file."""
        return set(self._keys)

    def append(self, record: Mapping) -> dict:
        """Append ``record`` durably (written, flushed and fsync-ed) and return it as stored.

        Raises:
          ValueError: when a record with the same key exists.
          TypeError: when a field is not a JSON value (NaN included).
        """
        body = {key: value for key, value in record.items() if key != "_line"}
        body["kind"] = "record"
        body["config_hash"] = self.config_hash
        key = self.key_of(body)
        if key in self._keys:
            raise ValueError(f"{self.path} already has the record {key} (line {self._keys[key]}).")
        line = _seal(body)
        _write_durably(self.path, line, "a")
        body["_line"] = len(self.records) + 2
        self._add(body)
        return body


def finite_or_none(value: float | None) -> float | None:
    """Return ``value`` as a float, or None when it is None, NaN or infinite (JSON has neither)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
