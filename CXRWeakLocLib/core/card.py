"""The model card (``model.json``) and where model folders are found: no torch.

A model folder holds ``model.safetensors`` (weights) and ``model.json`` (this card).
Everything here reads and writes plain JSON, so the Slicer panel, the exporters and
``cxrweakloc models`` use cards without loading torch; the engine's
:mod:`~CXRWeakLocLib.checkpoint` builds and loads the network a card names.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import CheckpointError, refuse_unknown
from .findings import Finding, finding_by_name
from .masks import MaskRule

__all__ = [
    "CARD_FILE",
    "FORMAT_VERSION",
    "MODELS_ENV",
    "SHIPPED_MODELS_DIR",
    "WEIGHTS_FILE",
    "ModelCard",
    "model_folders",
    "model_search_path",
    "read_card",
    "resolve_model",
    "shipped_models",
    "update_card",
]

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model.json"
#: Shipped models, beside the engine in the source tree and in the Slicer extension.
SHIPPED_MODELS_DIR = Path(__file__).resolve().parents[2] / "Resources" / "Models"
#: Where a built (non-editable) wheel installs the shipped models.
INSTALLED_MODELS_DIR = Path(sys.prefix) / "share" / "cxrweakloc" / "models"
#: Extra folders of model folders, separated by ``os.pathsep``.
MODELS_ENV = "CXRWEAKLOC_MODELS"


@dataclass
class ModelCard:
    """Everything needed to rebuild, run and judge a model (``model.json``)."""

    name: str
    method: str
    architecture: dict
    findings: list[str]
    input_size: int = 256
    normalization: dict = field(default_factory=lambda: {"mean": 0.5, "std": 0.5})
    mask_rule: MaskRule = field(default_factory=MaskRule)
    operating_thresholds: dict[str, float] = field(default_factory=dict)
    version: str = "0.1.0"
    description: str = ""
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    weights_sha256: str = ""
    #: storage precision of floating-point weights; loading always gives float32
    weights_dtype: str = "float16"
    format_version: int = FORMAT_VERSION

    @property
    def finding_objects(self) -> list[Finding]:
        return [finding_by_name(name) for name in self.findings]

    def threshold(self, finding: str) -> float:
        """Operating threshold of a finding's probability (0.5 when not calibrated)."""
        return float(self.operating_thresholds.get(finding, 0.5))

    def to_json(self) -> dict:
        data = asdict(self)
        data["mask_rule"] = self.mask_rule.to_dict()
        data["findings"] = [
            {"name": f.name, "code": f.code.value, "scheme": f.code.scheme,
             "meaning": f.code.meaning}
            for f in self.finding_objects
        ]
        return data

    @classmethod
    def from_json(cls, data: dict, where: str = "model.json") -> ModelCard:
        """Parse and validate a card; raises :class:`CheckpointError` on any problem."""
        if not isinstance(data, dict):
            raise CheckpointError(f"{where}: expected a JSON object")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"{where}: format_version {version!r} is not supported (expected {FORMAT_VERSION})"
            )
        missing = [key for key in ("name", "method", "architecture", "findings") if key not in data]
        if missing:
            raise CheckpointError(f"{where}: missing {', '.join(missing)}")
        values = dict(data)
        try:
            values["findings"] = [_card_finding(entry) for entry in data["findings"]]
            values["mask_rule"] = MaskRule(**data.get("mask_rule", {}))
            refuse_unknown(values, cls, "unknown keys", ValueError)
            return cls(**values)
        except (TypeError, ValueError, KeyError) as error:
            raise CheckpointError(f"{where}: {error}") from None


def _card_finding(entry: dict | str) -> str:
    if isinstance(entry, str):
        return finding_by_name(entry).name
    finding = finding_by_name(entry["name"])
    if "code" in entry and entry["code"] not in (finding.code.value, *finding.retired_codes):
        raise ValueError(
            f"finding {finding.name} has code {entry['code']}, expected {finding.code.value}"
        )
    return finding.name


def model_search_path() -> list[Path]:
    """Folders searched for model names: ``$CXRWEAKLOC_MODELS`` first, then shipped
    (beside the source tree, then where a wheel installed them)."""
    extra = [Path(p) for p in os.environ.get(MODELS_ENV, "").split(os.pathsep) if p]
    return [*extra, SHIPPED_MODELS_DIR, INSTALLED_MODELS_DIR]


def model_folders(roots: Iterable[Path]) -> list[Path]:
    """Model folders (folders holding a ``model.json``) in ``roots``, each root a model
    folder or a folder of them; where two share a name, the earlier root wins."""
    folders: dict[str, Path] = {}
    for root in map(Path, roots):
        found = [root] if (root / CARD_FILE).is_file() else sorted(
            card.parent for card in root.glob(f"*/{CARD_FILE}"))
        for folder in found:
            folders.setdefault(folder.name, folder)
    return list(folders.values())


def shipped_models() -> list[Path]:
    """Every model folder on the search path (:func:`model_search_path`)."""
    return model_folders(model_search_path())


def resolve_model(name_or_path: str | Path) -> Path:
    """A model folder from a name on the search path or a path to a folder."""
    candidate = Path(name_or_path)
    if candidate.is_dir():
        return candidate
    if candidate.is_file() and candidate.name in (CARD_FILE, WEIGHTS_FILE):
        return candidate.parent
    for root in model_search_path():
        if (root / str(name_or_path) / CARD_FILE).is_file():
            return root / str(name_or_path)
    names = ", ".join(p.name for p in shipped_models()) or "none installed"
    raise CheckpointError(f"model {str(name_or_path)!r} not found (known models: {names})")


def read_card(folder: Path) -> ModelCard:
    """The validated card of a model folder (weights not read)."""
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        raise CheckpointError(f"{folder}: no {CARD_FILE} (not a model folder)")
    try:
        data = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{card_path}: not valid JSON ({error})") from None
    return ModelCard.from_json(data, where=str(card_path))


def update_card(folder: Path, **changes) -> ModelCard:
    """Change card fields of an existing model folder (e.g. measured metrics, mask rule).

    The weights are untouched; the card is validated, then replaced atomically.
    """
    folder = Path(folder)
    card = read_card(folder)
    for key, value in changes.items():
        if key not in ModelCard.__dataclass_fields__ or key == "weights_sha256":
            raise CheckpointError(f"{folder}: card field {key!r} cannot be updated")
        setattr(card, key, value)
    text = json.dumps(card.to_json(), indent=2) + "\n"
    ModelCard.from_json(json.loads(text), where=str(folder / CARD_FILE))
    temporary = folder / f".{CARD_FILE}.partial"
    temporary.write_text(text)
    temporary.replace(folder / CARD_FILE)
    return card
