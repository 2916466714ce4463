"""Resumable training state in safetensors + JSON (no pickle anywhere).

Tensors of the model and optimizer go into ``state.safetensors``; the rest
(epoch, step, optimizer hyper-parameters, scheduler counters) into ``state.json``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

__all__ = ["save_training_state", "load_training_state"]

_TENSORS = "state.safetensors"
_META = "state.json"


def _split(prefix: str, value, tensors: dict, path: tuple = ()):  # -> JSON-able
    if isinstance(value, torch.Tensor):
        key = prefix + "/" + "/".join(map(str, path))
        tensors[key] = value.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(value, dict):
        return {"__dict__": [[k, _split(prefix, v, tensors, (*path, k))] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_split(prefix, v, tensors, (*path, i)) for i, v in enumerate(value)]
    return value


def _join(value, tensors: dict):
    if isinstance(value, dict) and "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if isinstance(value, dict) and "__dict__" in value:
        return {k: _join(v, tensors) for k, v in value["__dict__"]}
    if isinstance(value, list):
        return [_join(v, tensors) for v in value]
    return value


def save_training_state(folder: Path, parts: dict[str, dict], meta: dict) -> None:
    """Save state dicts (``{"model": ..., "optimizer": ...}``) and ``meta`` atomically."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    tensors: dict[str, torch.Tensor] = {}
    layout = {name: _split(name, state, tensors) for name, state in parts.items()}
    save_file(tensors, str(staging / _TENSORS))
    (staging / _META).write_text(json.dumps({"meta": meta, "layout": layout}))
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def load_training_state(folder: Path) -> tuple[dict[str, dict], dict]:
    """The parts and meta saved by :func:`save_training_state`."""
    folder = Path(folder)
    tensors = load_file(str(folder / _TENSORS))
    saved = json.loads((folder / _META).read_text())
    parts = {name: _join(layout, tensors) for name, layout in saved["layout"].items()}
    return parts, saved["meta"]
