"""Load problems by task name: ``gsm8k``, ``aime2025``, ``rg:<dataset>`` or ``file:<path>``."""

from slgjax.tasks.bundled import load_aime2025, load_gsm8k
from slgjax.tasks.files import load_file
from slgjax.tasks.problem import Problem
from slgjax.tasks.procedural import SMALL_SETTINGS, load_reasoning_gym

__all__ = ["TASK_NAMES", "load_problems"]

TASK_NAMES = ("gsm8k", "aime2025", *(f"rg:{name}" for name in SMALL_SETTINGS), "file:<path>")


def load_problems(name: str, *, limit: int | None = None, **options) -> list[Problem]:
    """Load the problems of task ``name``.

    Args:
      name: ``"gsm8k"`` (the 1,319 test problems), ``"aime2025"`` (30),
        ``"rg:<dataset>"`` for any reasoning-gym dataset (``size=`` and
        ``seed=`` required, other options are dataset settings), or
        ``"file:<path>"`` (options of :func:`slgjax.tasks.files.load_file`).
      limit: keep only the first ``limit`` problems.
      **options: options of the loader.

    Raises:
      ValueError: for an unknown name, options the task does not take, or a
        bad limit.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit={limit!r} must be a positive integer or None.")

    if name in ("gsm8k", "aime2025"):
        if options:
            raise ValueError(f"task {name!r} takes no options; got {sorted(options)}.")
        problems = load_gsm8k() if name == "gsm8k" else load_aime2025()
    elif name.startswith("rg:") and len(name) > 3:
        missing = [key for key in ("size", "seed") if key not in options]
        if missing:
            raise ValueError(f"task {name!r} needs {missing}; for example size=100, seed=0.")
        problems = load_reasoning_gym(name[3:], **options)
    elif name.startswith("file:") and len(name) > 5:
        problems = load_file(name[5:], **options)
    else:
        raise ValueError(
            f"unknown task {name!r}; use one of {list(TASK_NAMES)} (any reasoning-gym "
            "dataset name works after 'rg:')."
        )
    return problems if limit is None else problems[:limit]
