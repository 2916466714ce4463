"""The engine's Python packages, installed into Slicer's Python on first use, after asking.

torch comes through the PyTorch extension (``PyTorchUtils``) when it is installed, so
its CUDA build matches the driver; Slicer's own numpy, SimpleITK and vtk are pinned
by a constraints file so pip never replaces them.
"""

from __future__ import annotations

import importlib.metadata
import tempfile
from collections.abc import Callable
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # Slicer without a top-level packaging: pip's own copy
    from pip._vendor.packaging.requirements import Requirement

__all__ = ["REQUIREMENTS_FILE", "PROTECTED", "readRequirements", "missingRequirements",
           "protectedConstraints", "ensureDependencies"]

REQUIREMENTS_FILE = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"
#: Packages Slicer ships and that must never be replaced.
PROTECTED = ("numpy", "SimpleITK", "vtk")


def readRequirements(path: Path = REQUIREMENTS_FILE) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def missingRequirements(requirements: list[Requirement]) -> list[Requirement]:
    """Requirements not installed, or installed at a version outside their range."""
    missing = []
    for requirement in requirements:
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(requirement)
            continue
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            missing.append(requirement)
    return missing


def protectedConstraints() -> list[str]:
    """``name==version`` of each protected package that is installed."""
    pins = []
    for name in PROTECTED:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def _installTorch(confirm: Callable[[str], bool]) -> None:
    try:
        import PyTorchUtils  # the PyTorch extension
    except ImportError:
        return  # pip installs torch with the other requirements
    torchLogic = PyTorchUtils.PyTorchUtilsLogic()
    if not torchLogic.torchInstalled():
        if not confirm("CXRWeakLoc needs PyTorch. Install it now (PyTorch extension)?"):
            raise RuntimeError("PyTorch is required and was not installed")
        if torchLogic.installTorch(askConfirmation=False) is None:
            raise RuntimeError("PyTorch could not be installed")


def ensureDependencies(confirm: Callable[[str], bool]) -> None:
    """Install what is missing, after ``confirm(question)`` says yes; raises otherwise."""
    import slicer

    _installTorch(confirm)
    missing = missingRequirements(readRequirements())
    if not missing:
        return
    names = ", ".join(str(r) for r in missing)
    if not confirm(f"CXRWeakLoc needs these Python packages: {names}. Install them now?"):
        raise RuntimeError(f"required packages not installed: {names}")
    with tempfile.TemporaryDirectory() as folder:
        constraints = Path(folder) / "constraints.txt"
        constraints.write_text("\n".join(protectedConstraints()) + "\n")
        packaging = getattr(slicer, "packaging", None)
        if packaging is not None and hasattr(packaging, "pip_ensure"):  # Slicer 5.12+
            packaging.pip_ensure(missing, constraints=constraints, prompt_install=False,
                                 requester="CXRWeakLoc")
        else:
            slicer.util.pip_install(
                [*(str(r) for r in missing), "--constraint", str(constraints)])
