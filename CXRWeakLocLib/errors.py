"""User-facing errors: each carries a one-line message that the CLI prints as it is."""

from __future__ import annotations


class CXRWeakLocError(Exception):
    """Base class for errors caused by the user's input, files or settings.

    The command line prints ``str(error)`` on one line and exits non-zero; anything
    that is not a ``CXRWeakLocError`` is a bug and keeps its traceback.
    """


class RadiographError(CXRWeakLocError):
    """A file that cannot be read as a chest radiograph."""


class CheckpointError(CXRWeakLocError):
    """A model folder that is missing, incomplete, or does not match its card."""


class ConfigError(CXRWeakLocError):
    """A training or evaluation setting that is missing or invalid."""
