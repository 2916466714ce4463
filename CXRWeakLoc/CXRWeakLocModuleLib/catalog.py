"""What the panel offers: model folders (with their cards' metrics) and compute devices.

Model cards are read as plain JSON so the panel fills in before the engine's
dependencies (torch) are installed; the engine validates the model when it runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ModelEntry", "Device", "findModels", "readModelEntry", "availableDevices"]

CARD_FILE = "model.json"


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
    """The entry of one model folder; ValueError when it holds no readable card."""
    card = Path(folder) / CARD_FILE
    try:
        data = json.loads(card.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{folder}: not a model folder ({error})") from None
    return ModelEntry(
        name=str(data.get("name", Path(folder).name)),
        folder=Path(folder),
        method=str(data.get("method", "")),
        description=str(data.get("description", "")),
        metrics=data.get("metrics") or {},
    )


def findModels(roots: Iterable[Path]) -> list[ModelEntry]:
    """Model folders in ``roots`` (each a model folder or a folder of them), first name wins."""
    entries: dict[str, ModelEntry] = {}
    for root in map(Path, roots):
        folders = [root] if (root / CARD_FILE).is_file() else sorted(
            card.parent for card in root.glob(f"*/{CARD_FILE}"))
        for folder in folders:
            try:
                entry = readModelEntry(folder)
            except ValueError:
                continue
            entries.setdefault(entry.name, entry)
    return list(entries.values())


@dataclass(frozen=True)
class Device:
    """A ``--device`` value and how the panel names it."""

    value: str
    label: str


def availableDevices() -> tuple[list[Device], str]:
    """Devices to offer and a one-line note on what ``auto`` will use."""
    devices = [Device("auto", "Auto"), Device("cpu", "CPU")]
    try:
        import torch
    except ImportError:
        return devices, "PyTorch is not installed yet: Auto uses a CUDA GPU if one is found."
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for index in range(count):
        value = "cuda" if index == 0 else f"cuda:{index}"
        devices.append(Device(value, f"GPU {index}: {torch.cuda.get_device_name(index)}"))
    if not count:
        return devices, "No CUDA GPU found: the model runs on the CPU (slower)."
    return devices, f"Auto uses GPU 0 ({torch.cuda.get_device_name(0)})."
