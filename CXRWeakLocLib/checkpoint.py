"""Model folders: ``model.safetensors`` (weights) + ``model.json`` (the model card).

Loading validates the card, the weights' sha256, and that every tensor matches the
architecture the card names; any mismatch is a :class:`CheckpointError` with a
one-line reason. Weights are read with safetensors only: no pickle, ever.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import CheckpointError, refuse_unknown
from .files import sha256_of
from .findings import Finding, finding_by_name
from .masks import MaskRule
from .models import build_model

__all__ = [
    "ModelCard",
    "LoadedModel",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "CARD_FILE",
    "model_search_path",
    "shipped_models",
    "resolve_model",
    "load_model",
    "save_model",
    "update_card",
    "training_lineage",
    "LINEAGE_METADATA_KEY",
]

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "model.json"
#: Shipped models, beside the engine in the source tree and in the Slicer extension.
SHIPPED_MODELS_DIR = Path(__file__).resolve().parents[1] / "Resources" / "Models"
#: Where a built (non-editable) wheel installs the shipped models.
INSTALLED_MODELS_DIR = Path(sys.prefix) / "share" / "cxrweakloc" / "models"
#: ``.safetensors`` metadata key holding a weights file's training lineage (JSON list).
LINEAGE_METADATA_KEY = "training_lineage"
#: Extra folders of model folders, separated by ``os.pathsep``.
MODELS_ENV = "CXRWEAKLOC_MODELS"


_STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16,
                   "bfloat16": torch.bfloat16}


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


@dataclass
class LoadedModel:
    """A validated card with its network, in eval mode, on ``device``."""

    card: ModelCard
    network: nn.Module
    folder: Path
    device: torch.device


def model_search_path() -> list[Path]:
    """Folders searched for model names: ``$CXRWEAKLOC_MODELS`` first, then shipped
    (beside the source tree, then where a wheel installed them)."""
    extra = [Path(p) for p in os.environ.get(MODELS_ENV, "").split(os.pathsep) if p]
    return [*extra, SHIPPED_MODELS_DIR, INSTALLED_MODELS_DIR]


def shipped_models() -> list[Path]:
    """Every model folder on the search path (a folder holding a ``model.json``)."""
    folders: dict[str, Path] = {}
    for root in model_search_path():
        if root.is_dir():
            for card in sorted(root.glob(f"*/{CARD_FILE}")):
                folders.setdefault(card.parent.name, card.parent)
    return list(folders.values())


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


def load_model(name_or_path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load and validate a model folder; the network is returned in eval mode."""
    folder = resolve_model(name_or_path)
    card = read_card(folder)
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"{folder}: no {WEIGHTS_FILE}")
    actual = sha256_of(weights_path)
    if not card.weights_sha256:
        raise CheckpointError(f"{folder / CARD_FILE}: no weights_sha256 to check the weights by")
    if actual != card.weights_sha256:
        raise CheckpointError(
            f"{weights_path}: sha256 {actual[:12]}... does not match the card's "
            f"{card.weights_sha256[:12]}... (corrupt or replaced weights)"
        )
    try:
        network = build_model({"method": card.method, **card.architecture}, len(card.findings))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{folder / CARD_FILE}: bad architecture ({error})") from None
    try:
        state = load_file(str(weights_path))
    except Exception as error:  # safetensors raises its own error types
        raise CheckpointError(f"{weights_path}: unreadable weights ({error})") from None
    _check_state(network, state, weights_path)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    network.load_state_dict(state, strict=True)
    device = torch.device(device)
    return LoadedModel(card, network.to(device).eval(), folder, device)


def _check_state(network: nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensors (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
    if wrong:
        key = wrong[0]
        problems.append(
            f"{len(wrong)} tensors of the wrong shape (e.g. {key}: "
            f"{tuple(state[key].shape)} vs {tuple(expected[key].shape)})"
        )
    if problems:
        raise CheckpointError(f"{where}: weights do not match the card's architecture: "
                              + "; ".join(problems))


def save_model(folder: Path, card: ModelCard, network: nn.Module, overwrite: bool = False) -> Path:
    """Write weights and card atomically (a temporary folder renamed into place)."""
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise CheckpointError(f"{folder}: already exists (pass overwrite=True to replace it)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        if card.weights_dtype not in _STORAGE_DTYPES:
            raise CheckpointError(f"weights_dtype must be one of {', '.join(_STORAGE_DTYPES)}")
        dtype = _STORAGE_DTYPES[card.weights_dtype]
        state = {
            k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).cpu().contiguous()
            for k, v in network.state_dict().items()
        }
        save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        card.weights_sha256 = sha256_of(staging / WEIGHTS_FILE)
        (staging / CARD_FILE).write_text(json.dumps(card.to_json(), indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder


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


#: The parts of a run's split that say which images it read (the rest: how it split them).
_SPLIT_IMAGES = ("train_list", "limit", "generated")


def split_identity(training: dict) -> dict:
    """What decides a run's patient split, from its card's ``training`` record: which
    images (image list, limit; for synthetic images generated in memory, their count,
    size and seed) and how they were split (validation fraction, seed)."""
    config = training.get("config", {})
    data = config.get("data", {})
    generated = training.get("dataset") == "synthetic" and not training.get("root")
    return {"train_list": training.get("train_list"), "limit": data.get("limit"),
            "generated": ([data.get("synthetic_count"), config.get("model", {}).get("input_size"),
                           training.get("seed")] if generated else None),
            "val_fraction": data.get("val_fraction"), "seed": training.get("seed")}


def stages_trained_on_validation(training: dict) -> list[str]:
    """The earlier stages of a run (``training["pretraining"]``) that may have trained on
    its validation images: a stage that read the same images but split them otherwise
    (another seed or validation fraction) holds most of them in its training set; a stage
    on the same dataset that did not record its split (older cards) may.
    """
    own = split_identity(training)
    flagged = []
    for stage in training.get("pretraining", []):
        if (stage.get("dataset"), stage.get("root")) != (training.get("dataset"),
                                                         training.get("root")):
            continue
        split = stage.get("split")
        same_images = split is not None and all(split.get(k) == own[k] for k in _SPLIT_IMAGES)
        if split is None or (same_images and split != own):
            flagged.append(str(stage.get("name")))
    return flagged


def training_lineage(source: Path) -> list[dict]:
    """The training stages behind a weights source, earliest first.

    A model folder contributes its card's own ``training["pretraining"]`` followed by
    its stage (name, dataset, data root, number of training images); a ``.safetensors`` file its
    :data:`LINEAGE_METADATA_KEY` metadata (written by seed files); anything else
    nothing. Cards record it so a fine-tuned model says what it was pretrained on.
    """
    source = Path(source)
    if (source / CARD_FILE).is_file():
        card = read_card(source)
        stage = {"name": card.name,
                 **{key: card.training.get(key) for key in ("dataset", "root", "train_images")},
                 "split": split_identity(card.training)}
        return [*card.training.get("pretraining", []), stage]
    if source.suffix == ".safetensors" and source.is_file():
        with safe_open(str(source), "pt") as handle:
            text = (handle.metadata() or {}).get(LINEAGE_METADATA_KEY)
        return json.loads(text) if text else []
    return []
