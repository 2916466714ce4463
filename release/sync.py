"""Rewrite the file lists that packaging keeps by hand, from the tree as it is.

Usage: python -m release.sync   (``release.ship`` runs it after installing a model)

- ``CXRWeakLoc/CMakeLists.txt``: ``ENGINE_PYTHON_SCRIPTS`` (every engine ``.py``) and
  ``ENGINE_PYTHON_RESOURCES`` (engine ``.json``, ``Resources/Models``,
  ``Resources/Terminology``) — what the Slicer extension installs;
- ``pyproject.toml``: ``[tool.setuptools.data-files]``, one line per shipped model
  folder — what a built wheel carries;
- ``CXRWeakLoc/Resources/requirements.txt``: the engine's dependencies from
  ``pyproject.toml`` without Slicer's own packages and the training-only ones — what
  the Slicer module installs into Slicer's Python.

``Testing/test_slicer_module.py`` and ``Testing/test_checkpoint.py`` fail when these
lists and the tree disagree.
"""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

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


#: Packages Slicer's Python already has (never replaced) and packages only training needs.
NOT_FOR_SLICER = {"numpy", "simpleitk", "vtk", "tensorboard"}
REQUIREMENTS_HEADER = """\
# The engine's packages for Slicer's Python, written by `python -m release.sync` from
# pyproject.toml's dependencies (do not edit by hand). torch is installed by the PyTorch
# extension when present (CUDA build matching the driver), else by pip from this line.
# numpy, SimpleITK and vtk are Slicer's own and are never replaced (the installer pins
# them with a constraints file); tensorboard is for training only.
"""


def slicer_requirements(pyproject: Path = REPO / "pyproject.toml") -> str:
    """The text of the Slicer module's ``requirements.txt``."""
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    kept = [d for d in dependencies
            if re.split(r"[<>=!~ \[;]", d, maxsplit=1)[0].lower() not in NOT_FOR_SLICER]
    return REQUIREMENTS_HEADER + "".join(f"{line}\n" for line in kept)


def sync_requirements(path: Path = REPO / "CXRWeakLoc" / "Resources" / "requirements.txt"
                      ) -> None:
    """Write the Slicer module's ``requirements.txt`` (:func:`slicer_requirements`)."""
    path.write_text(slicer_requirements())


def main() -> None:
    sync_cmake()
    sync_pyproject()
    sync_requirements()


if __name__ == "__main__":
    main()
