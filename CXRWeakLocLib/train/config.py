"""Training run configuration: one TOML file per run.

Example (``training/configs/cam_nih_mini.toml``)::

    [run]
    name = "cam"
    output = "runs/cam"
    seed = 0

    [data]
    dataset = "chestxray14"
    root = "../shared/data/nih-mini"
    train_list = "train_val_list.txt"

    [model]
    method = "cam"
    input_size = 256
    backbone = { name = "resnet18", width = 0.5, output_stride = 16 }

    [optim]
    epochs = 30
    batch_size = 32
    lr = 1e-3

Relative paths are relative to the config file's folder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import tomllib

from ..core.errors import ConfigError, refuse_unknown
from ..data.dataset import Augmentation

__all__ = ["RunConfig", "DataConfig", "ModelConfig", "OptimConfig", "TrainConfig", "load_config"]


@dataclass
class RunConfig:
    name: str = "model"
    output: str = "runs/model"
    seed: int = 0
    description: str = ""


@dataclass
class DataConfig:
    dataset: str = "chestxray14"
    root: str = ""
    train_list: str = ""
    #: fraction of patients held out for validation (AUC, operating thresholds)
    val_fraction: float = 0.1
    #: CheXpert's uncertainty policy (ones / zeros / ignore)
    uncertainty: str = "ignore"
    #: synthetic dataset size, when dataset = "synthetic"
    synthetic_count: int = 512
    num_workers: int = 0
    limit: int = 0  # use only the first N records (smoke tests)
    #: training augmentation (a table of :class:`~CXRWeakLocLib.data.dataset.Augmentation`)
    augmentation: Augmentation = field(default_factory=Augmentation)

    def __post_init__(self) -> None:
        if isinstance(self.augmentation, dict):
            self.augmentation = Augmentation.from_dict(self.augmentation)


@dataclass
class ModelConfig:
    method: str = "cam"
    input_size: int = 256
    backbone: dict = field(default_factory=lambda: {"name": "resnet18", "width": 0.5,
                                                    "output_stride": 16})
    normalization: dict = field(default_factory=lambda: {"mean": 0.5, "std": 0.5})
    findings: list[str] = field(default_factory=list)  # default: the 14 ChestX-ray14 findings
    #: method-specific architecture options (stored in the model card)
    options: dict = field(default_factory=dict)
    #: start from these weights (a model folder or a .safetensors file): every tensor
    #: whose name and shape match is loaded, e.g. a user's own pretrained backbone
    init_from: str = ""


@dataclass
class OptimConfig:
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    #: bf16 autocast on CPU too (about 2x faster on CPUs with AVX-512 BF16)
    cpu_amp: bool = False
    #: channels-last memory format for the network and its inputs
    channels_last: bool = False
    #: the backbone's learning rate is lr x this (1: one rate for every parameter)
    backbone_lr_factor: float = 1.0
    checkpoint_every: int = 1  # epochs between resumable checkpoints


@dataclass
class TrainConfig:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    #: free-form settings of the method's objective (loss weights, ...)
    loss: dict = field(default_factory=dict)
    base_dir: Path = Path(".")

    def path(self, value: str) -> Path:
        """A config path resolved relative to the config file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("base_dir")
        return data


def _section(cls, values: dict, name: str):
    if not isinstance(values, dict):
        raise ConfigError(f"[{name}] must be a table")
    refuse_unknown(values, cls, f"[{name}]: unknown setting(s)")
    try:
        return cls(**values)
    except TypeError as error:
        raise ConfigError(f"[{name}]: {error}") from None


def load_config(path: str | Path, overrides: dict[str, dict] | None = None) -> TrainConfig:
    """Read a TOML run config; ``overrides`` (section -> values) win over the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML ({error})") from None
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update(values)
    sections = {"run": RunConfig, "data": DataConfig, "model": ModelConfig, "optim": OptimConfig}
    unknown = sorted(set(data) - set(sections) - {"loss"})
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}")
    parts = {name: _section(cls, data.get(name, {}), name) for name, cls in sections.items()}
    loss = data.get("loss", {})
    if not isinstance(loss, dict):
        raise ConfigError("[loss] must be a table")
    return TrainConfig(**parts, loss=loss, base_dir=path.resolve().parent)
