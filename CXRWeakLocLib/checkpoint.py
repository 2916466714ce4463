"""Loading and saving a model folder's network (torch); the card itself is torch-free.

Loading validates the card (:mod:`~CXRWeakLocLib.core.card`), the weights' sha256,
and that every tensor matches the architecture the card names; any mismatch is a
:class:`CheckpointError` with a one-line reason. Weights are read with safetensors
only: no pickle, ever.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .core.card import CARD_FILE, WEIGHTS_FILE, ModelCard, read_card, resolve_model
from .core.errors import CheckpointError, ConfigError
from .core.files import sha256_of
from .methods import Method, build_network, method_named

__all__ = ["LoadedModel", "load_model", "save_model"]

_STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16,
                   "bfloat16": torch.bfloat16}


@dataclass
class LoadedModel:
    """A validated card with its network, in eval mode, on ``device``."""

    card: ModelCard
    network: nn.Module
    folder: Path
    device: torch.device

    @property
    def method(self) -> Method:
        """The card's method: what the network can do beyond ``(logits, maps)``."""
        return method_named(self.card.method)


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
        network = build_network(card.method, card.architecture, len(card.findings))
    except (TypeError, ValueError, ConfigError) as error:
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
