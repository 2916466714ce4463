"""Rewrite the file lists that packaging keeps by hand, from the tree as it is.

Usage: python training/sync_lists.py   (``ship_model.py`` runs it after installing)

- ``CXRWeakLoc/CMakeLists.txt``: ``ENGINE_PYTHON_SCRIPTS`` (every engine ``.py``) and
  ``ENGINE_PYTHON_RESOURCES`` (engine ``.json``, ``Resources/Models``,
  ``Resources/Terminology``) — what the Slicer extension installs;
- ``pyproject.toml``: ``[tool.setuptools.data-files]``, one line per shipped model
  folder — what a built wheel carries.

``Testing/test_slicer_module.py`` and ``Testing/test_checkpoint.py`` fail when these
lists and the tree disagree.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _files(root: Path, suffixes: tuple[str, ...] | None = None) -> list[str]:
    return sorted(
        p.relative_to(REPO).as_posix() for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")
        and (suffixes is None or p.suffix in suffixes)
    )


def _replace_cmake_list(text: str, name: str, entries: list[str]) -> str:
    body = "".join(f"  {entry}\n" for entry in entries)
    pattern = re.compile(rf"^set\({name}\n.*?^  \)", re.MULTILINE | re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"CMakeLists.txt: no set({name} ...) block")
    return pattern.sub(lambda _: f"set({name}\n{body}  )", text)


def sync_cmake(cmake: Path = REPO / "CXRWeakLoc" / "CMakeLists.txt") -> None:
    """The engine's scripts and resources in the Slicer module's CMakeLists.txt."""
    engine = REPO / "CXRWeakLocLib"
    resources = sorted({*_files(engine, (".json",)), *_files(REPO / "Resources" / "Models"),
                        *_files(REPO / "Resources" / "Terminology")})
    text = _replace_cmake_list(cmake.read_text(), "ENGINE_PYTHON_SCRIPTS",
                               _files(engine, (".py",)))
    cmake.write_text(_replace_cmake_list(text, "ENGINE_PYTHON_RESOURCES", resources))


def sync_pyproject(pyproject: Path = REPO / "pyproject.toml") -> None:
    """One ``[tool.setuptools.data-files]`` line per shipped model folder."""
    folders = sorted(p.name for p in (REPO / "Resources" / "Models").iterdir() if p.is_dir())
    lines = "".join(f'"share/cxrweakloc/models/{name}" = ["Resources/Models/{name}/*"]\n'
                    for name in folders)
    text = pyproject.read_text()
    pattern = re.compile(r"^\[tool\.setuptools\.data-files\]\n(?:\".*\n)*", re.MULTILINE)
    if not pattern.search(text):
        raise SystemExit("pyproject.toml: no [tool.setuptools.data-files] table")
    pyproject.write_text(pattern.sub(lambda _: "[tool.setuptools.data-files]\n" + lines, text))


def main() -> None:
    sync_cmake()
    sync_pyproject()


if __name__ == "__main__":
    main()
