"""Small file helpers shared by every writer: folders with clear errors, atomic text."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import CXRWeakLocError

__all__ = ["ensure_folder", "atomic_write_text", "partial_path", "sha256_of"]


def ensure_folder(folder: Path) -> Path:
    """Create ``folder`` (and parents); an unwritable location is a one-line error."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CXRWeakLocError(
            f"{folder}: cannot create output folder ({error.strerror or error})"
        ) from None
    return folder


def partial_path(path: Path) -> Path:
    """The hidden temporary name a file is written under before its rename."""
    return path.with_name(f".{path.name}.partial{path.suffix}")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary sibling, then rename it over ``path``."""
    temporary = partial_path(path)
    temporary.write_text(text)
    temporary.replace(path)


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
