"""User-facing errors: each carries a one-line message that the CLI prints as it is."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields


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


def refuse_unknown(
    names: Iterable[str], known: Iterable[str] | type, what: str,
    error: type[Exception] = ConfigError,
) -> None:
    """Raise ``error("<what> a, b (known: ...)")`` if ``names`` holds names not in ``known``.

    ``known`` is a collection of names or a dataclass (its field names).
    """
    known = {f.name for f in fields(known)} if isinstance(known, type) else set(known)
    unknown = sorted(set(names) - known)
    if unknown:
        raise error(f"{what} {', '.join(unknown)} (known: {', '.join(sorted(known))})")
