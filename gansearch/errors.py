"""User-facing errors.

Every problem a user can cause (bad YAML, unknown key, missing checkpoint, broken
factory, shape mismatch) raises a :class:`GansearchError`. The CLI prints its message
as one line and exits non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class GansearchError(Exception):
    """A problem with the user's input. The message names the problem and the fix."""

    exit_code: int = 2


class ConfigError(GansearchError):
    """A study file that cannot be read or validated."""


class CheckpointError(GansearchError):
    """A weights file that is missing, unreadable or does not fit its model."""


class FactoryError(GansearchError):
    """A user ``module:function`` factory that cannot be imported or fails when called."""


class MetricUnavailableError(GansearchError):
    """A metric that cannot be computed in this environment (e.g. no local Inception weights)."""


class UnwritableError(GansearchError):
    """A folder gansearch must write to (outputs, cache, weights) that it cannot write."""
