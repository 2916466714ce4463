"""The engine's Python packages, installed into Slicer's Python on first use, after asking.

torch comes through the PyTorch extension (``PyTorchUtils``) when it is installed, so
its CUDA build matches the driver; Slicer's own numpy, SimpleITK and vtk are pinned
by a constraints file so pip never replaces them. Slicer 5.12 and later install
through ``slicer.packaging.pip_ensure`` (progress dialog, restart prompt); earlier
versions through ``slicer.util.pip_install``, after which the panel asks for a
restart itself when a package already in memory was replaced.

The engine needs Python 3.10 or later (pydicom 3, highdicom): Slicer 5.10 and later
(Python 3.12). Slicer 5.8 has Python 3.9 and cannot install it; the panel says so.
"""

from __future__ import annotations

import importlib.metadata
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # Slicer without a top-level packaging: pip's own copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

from .i18n import tr as _

__all__ = ["REQUIREMENTS_FILE", "PROTECTED", "MINIMUM_PYTHON", "PackageStatus", "Dependencies",
           "protectedConstraints"]

REQUIREMENTS_FILE = Path(__file__).resolve().parents[1] / "Resources" / "requirements.txt"
#: Packages Slicer ships and that must never be replaced.
PROTECTED = ("numpy", "SimpleITK", "vtk")
#: The engine's oldest Python (pyproject.toml's requires-python).
MINIMUM_PYTHON = (3, 10)
PYTHON_VERSION = tuple(sys.version_info[:3])


@dataclass(frozen=True)
class PackageStatus:
    """One requirement and the version installed (None when it is not installed)."""

    requirement: Requirement
    installed: str | None

    @property
    def satisfied(self) -> bool:
        return self.installed is not None and (
            not self.requirement.specifier
            or self.requirement.specifier.contains(self.installed, prereleases=True))


def _installedVersion(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def protectedConstraints() -> list[str]:
    """``name==version`` of each protected package that is installed."""
    return [f"{name}=={version}" for name in PROTECTED
            if (version := _installedVersion(name)) is not None]


def _importedDistributions() -> set[str]:
    """Canonical names of the distributions whose top-level modules are imported."""
    owners = importlib.metadata.packages_distributions()
    return {canonicalize_name(owner) for module in list(sys.modules) if "." not in module
            for owner in owners.get(module, ())}


def _slicerPackaging():
    """``slicer.packaging`` (Slicer 5.12 and later), or None."""
    try:
        from slicer import packaging
    except ImportError:
        return None
    return packaging if hasattr(packaging, "pip_ensure") else None


def _installTorch(confirm: Callable[[str], bool]) -> None:
    try:
        import PyTorchUtils  # the PyTorch extension
    except ImportError:
        return  # pip installs torch with the other requirements
    torchLogic = PyTorchUtils.PyTorchUtilsLogic()
    if not torchLogic.torchInstalled():
        if not confirm(_("CXRWeakLoc needs PyTorch. Install it now (PyTorch extension)?")):
            raise RuntimeError(_("PyTorch is required and was not installed"))
        if torchLogic.installTorch(askConfirmation=False) is None:
            raise RuntimeError(_("PyTorch could not be installed"))


class Dependencies:
    """The engine's requirements (``Resources/requirements.txt``) in Slicer's Python."""

    def __init__(self, requirementsFile: Path = REQUIREMENTS_FILE) -> None:
        self.requirementsFile = Path(requirementsFile)

    def requirements(self) -> list[Requirement]:
        lines = (line.split("#", 1)[0].strip()
                 for line in self.requirementsFile.read_text().splitlines())
        return [Requirement(line) for line in lines if line]

    def status(self) -> list[PackageStatus]:
        """Each requirement with the version installed now."""
        return [PackageStatus(r, _installedVersion(r.name)) for r in self.requirements()]

    @staticmethod
    def pythonProblem() -> str:
        """Why this Slicer's Python cannot run the engine ('' when it can)."""
        if PYTHON_VERSION >= MINIMUM_PYTHON:
            return ""
        return _("CXRWeakLoc needs Slicer 5.10 or later: its engine needs Python {needed}, "
                 "this Slicer has Python {version}.").format(
                     needed=".".join(map(str, MINIMUM_PYTHON)) + "+",
                     version=".".join(map(str, PYTHON_VERSION)))

    def ensure(self, confirm: Callable[[str], bool]) -> bool:
        """Install what is missing after ``confirm(question)`` says yes (RuntimeError if it
        says no); True when Slicer should restart (a replaced package was in memory)."""
        import slicer

        if self.pythonProblem():
            raise RuntimeError(self.pythonProblem())
        _installTorch(confirm)
        missing = [s for s in self.status() if not s.satisfied]
        if not missing:
            return False
        names = ", ".join(str(s.requirement) for s in missing)
        if not confirm(_("CXRWeakLoc needs these Python packages: {names}. "
                         "Install them now?").format(names=names)):
            raise RuntimeError(_("required packages not installed: {names}").format(names=names))
        replaced = {canonicalize_name(s.requirement.name) for s in missing if s.installed}
        inMemory = bool(replaced & _importedDistributions())
        with tempfile.TemporaryDirectory() as folder:
            constraints = Path(folder) / "constraints.txt"
            constraints.write_text("\n".join(protectedConstraints()) + "\n")
            packaging = _slicerPackaging()
            if packaging is not None:  # Slicer 5.12+: progress dialog and its restart prompt
                packaging.pip_ensure([s.requirement for s in missing], constraints=constraints,
                                     prompt_install=False, requester="CXRWeakLoc")
                return False
            slicer.util.pip_install(
                [*(str(s.requirement) for s in missing), "--constraint", str(constraints)])
        return inMemory
