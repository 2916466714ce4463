"""What the panel offers: model folders (with their cards' metrics) and compute devices.

Cards are read with the engine's torch-free core (``CXRWeakLocLib.core.card``), where
the command line finds models too; GPUs are listed by the NVIDIA driver's
``nvidia-smi``, so the panel never loads torch (the engine runs in its own process).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from CXRWeakLocLib.core.card import model_folders, model_search_path, read_card
from CXRWeakLocLib.core.errors import CXRWeakLocError

from .i18n import tr as _

__all__ = ["ModelEntry", "Device", "findModels", "readModelEntry", "availableDevices"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEntry:
    """A model folder as the panel lists it."""

    name: str
    folder: Path
    method: str = ""
    description: str = ""
    metrics: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def tooltip(self) -> str:
        """Description, method and measured metrics, one per line."""
        lines = [self.description or self.name, f"method: {self.method or 'unknown'}"]
        lines += [f"{key}: {_format(value)}" for key, value in sorted(self.metrics.items())]
        return "\n".join(lines)


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_format(v)}" for k, v in value.items())
    return str(value)


def readModelEntry(folder: Path) -> ModelEntry:
    """The entry of one model folder; ValueError (one line) when its card is not valid."""
    try:
        card = read_card(Path(folder))
    except CXRWeakLocError as error:
        raise ValueError(str(error)) from None
    return ModelEntry(card.name, Path(folder), card.method, card.description, card.metrics)


def findModels(extraRoots: Iterable[Path] = ()) -> list[ModelEntry]:
    """Models in ``extraRoots`` (folders the user added) and on the engine's search path,
    the first folder of a name winning; folders with an invalid card are skipped."""
    entries = []
    for folder in model_folders([*map(Path, extraRoots), *model_search_path()]):
        try:
            entries.append(readModelEntry(folder))
        except ValueError as error:
            logger.warning("skipped model folder: %s", error)
    return entries


@dataclass(frozen=True)
class Device:
    """A ``--device`` value and how the panel names it."""

    value: str
    label: str


def _nvidiaGpus(timeout: float = 5.0) -> list[str]:
    """GPU names as the NVIDIA driver lists them (none without the driver)."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return []
    try:
        listed = subprocess.run([tool, "--query-gpu=name", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=timeout, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        logger.warning("nvidia-smi failed: %s", error)
        return []
    return [line.strip() for line in listed.stdout.splitlines() if line.strip()]


def availableDevices() -> tuple[list[Device], str]:
    """Devices to offer and a one-line note on what ``auto`` will use."""
    devices = [Device("auto", _("Auto")), Device("cpu", _("CPU"))]
    gpus = _nvidiaGpus()
    for index, name in enumerate(gpus):
        devices.append(Device("cuda" if index == 0 else f"cuda:{index}", f"GPU {index}: {name}"))
    if not gpus:
        return devices, _("No NVIDIA GPU found: the model runs on the CPU (slower).")
    return devices, _("Auto uses GPU 0 ({name}).").format(name=gpus[0])
