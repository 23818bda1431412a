"""Status codes that tail fits and predictions return beside their values.

A status is an ``int32`` array with the batch shape of the fit. Codes are bit
flags, so one fit can report several conditions at once; ``OK`` (zero) means
that none applied. Test a flag with ``(status & Status.FEW_EXCEEDANCES) != 0``
or with :func:`has_flag`.
"""

import enum

import jax.numpy as jnp

__all__ = ["Status", "has_flag", "describe"]


class Status(enum.IntFlag):
    """Bit flags for the conditions a fit or a prediction can meet."""

    OK = 0
    # Fewer valid samples than the estimator needs; the result is a fallback.
    EMPTY = 1
    # Fewer exceedances than a stable fit needs (5 for a GPD, 2 for the
    # Gaussian tail); the fit used a fallback rule.
    FEW_EXCEEDANCES = 2
    # All tail samples are equal (zero spread): the fitted scale is zero. The
    # Gaussian tail then predicts the common reward for every budget; the GPD
    # value falls back to the empirical distribution of the valid rewards.
    DEGENERATE = 4
    # The GPD likelihood is unbounded below xi = -1; the fit is the boundary
    # solution xi = -1, sigma = max exceedance.
    XI_BOUNDARY = 8
    # The fitted shape is xi >= 1, so the expected maximum is infinite.
    INFINITE_MEAN = 16
    # An iterative fit stopped before meeting its tolerance.
    NOT_CONVERGED = 32
    # Ties at the threshold moved the count of exceedances away from the
    # requested one.
    TIES_AT_THRESHOLD = 64
    # The fitted shape lies at the edge of the search interval or the prior's
    # support, where the estimate is least trustworthy.
    AT_SEARCH_BOUND = 128


def has_flag(status, flag: Status):
    """Return a boolean array that is True where ``status`` carries ``flag``."""
    return (jnp.asarray(status) & int(flag)) != 0


def describe(status: int) -> str:
    """Return the names of the flags set in one integer status, for messages."""
    status = Status(int(status))
    if status == Status.OK:
        return "OK"
    return "|".join(flag.name for flag in Status if flag and flag in status)
