"""How a network runs on the CPU: ONNX Runtime where it agrees with torch, else torch eager.

``benchmarks/inference.py`` measured the CPU paths (eager fp32, channels-last, bf16
autocast, ``torch.compile``, ONNX Runtime) for the shipped ``cam`` and for
EfficientNet-Lite0 at 512 px; ONNX Runtime was the fastest whose maps stay within
:data:`MAP_TOLERANCE` of eager (bf16 does not). :func:`cpu_forward` gives it for a
loaded model when:

* the model runs on the CPU, its method needs no gradients at inference (Grad-CAM
  does), and ``onnxruntime`` and ``onnx`` are installed;
* the network exports (torch's TorchScript-based exporter, offline) and, on a probe
  image, ONNX Runtime's normalised maps are within :data:`MAP_TOLERANCE` of eager and
  its probabilities within :data:`PROBABILITY_TOLERANCE`.

The exported model is kept in a cache folder (:func:`cache_folder`), named by the
weights' sha256, the input size and the torch and ONNX Runtime versions, written
atomically with the probe's verdict beside it, so only a model's first run exports
and checks. Anything else (``CXRWEAKLOC_BACKEND=eager``, a failed export, a probe
that disagrees) runs torch eager, with one log line saying why.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .checkpoint import LoadedModel

__all__ = ["BACKEND_ENV", "MAP_TOLERANCE", "PROBABILITY_TOLERANCE", "cache_folder",
           "cpu_forward", "normalised_maps"]

logger = logging.getLogger(__name__)

#: How far (normalised map units) a faster path's maps may be from eager fp32.
MAP_TOLERANCE = 1e-3
#: How far its probabilities may be.
PROBABILITY_TOLERANCE = 1e-4
#: ``eager`` forces torch eager; anything else (or unset) lets ONNX Runtime run.
BACKEND_ENV = "CXRWEAKLOC_BACKEND"
#: Where exported models are cached (default ``$XDG_CACHE_HOME/cxrweakloc/onnx``).
CACHE_ENV = "CXRWEAKLOC_CACHE"

Forward = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def cache_folder() -> Path:
    """The folder exported models are kept in."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cxrweakloc" / "onnx"


def normalised_maps(maps: torch.Tensor) -> torch.Tensor:
    """Each map min-max normalised over its pixels, as heatmaps are."""
    maps = maps.float()
    low = maps.amin(dim=(-2, -1), keepdim=True)
    return (maps - low) / (maps.amax(dim=(-2, -1), keepdim=True) - low).clamp_min(1e-12)


def _probe(size: int) -> torch.Tensor:
    """A fixed, smooth, chest-like probe input (two dark lungs, a bright mediastinum)."""
    y, x = np.mgrid[-1:1:complex(0, size), -1:1:complex(0, size)]
    lungs = np.exp(-((np.abs(x) - 0.45) ** 2 / 0.06 + y ** 2 / 0.3))
    image = 0.7 - 0.5 * lungs + 0.05 * np.sin(9 * x) * np.cos(7 * y)
    return torch.from_numpy(((image - 0.5) / 0.25).astype(np.float32))[None, None]


def _export(network: torch.nn.Module, size: int) -> bytes:
    """The network as ONNX (batch dimension free), in memory."""
    buffer = io.BytesIO()
    with torch.inference_mode(False), torch.no_grad(), warnings_quiet():
        torch.onnx.export(network, (torch.zeros(1, 1, size, size),), buffer,
                          input_names=["x"], output_names=["logits", "maps"],
                          dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    return buffer.getvalue()


@contextlib.contextmanager
def warnings_quiet():
    """The exporter's deprecation and tracer warnings are about torch, not the user's run."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _session(model_bytes: bytes):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model_bytes, options,
                                        providers=["CPUExecutionProvider"])


def _run(session) -> Forward:
    def forward(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        logits, maps = session.run(None, {"x": x})
        return torch.from_numpy(logits), torch.from_numpy(maps)
    return forward


def agreement(model: LoadedModel, forward: Forward) -> tuple[float, float]:
    """Largest differences from eager on the probe: normalised maps, probabilities."""
    probe = _probe(model.card.input_size)
    with torch.inference_mode():
        logits, maps = model.network(probe)
    fast_logits, fast_maps = forward(probe)
    map_error = float((normalised_maps(fast_maps) - normalised_maps(maps)).abs().max())
    probability_error = float((torch.sigmoid(fast_logits.float())
                               - torch.sigmoid(logits.float())).abs().max())
    return map_error, probability_error


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "wb") as file:
        file.write(data)
    os.replace(temporary, path)


def cpu_forward(model: LoadedModel) -> Forward | None:
    """ONNX Runtime's forward for ``model`` when it may run it (see the module docstring);
    None for torch eager."""
    if (model.device.type != "cpu" or model.method.gradients_at_inference
            or os.environ.get(BACKEND_ENV, "").lower() == "eager"):
        return None
    try:
        import onnxruntime
    except ImportError:
        return None
    card = model.card
    stem = (f"{card.name}-{card.weights_sha256[:16]}-{card.input_size}px-torch"
            f"{torch.__version__}-ort{onnxruntime.__version__}")
    path = cache_folder() / f"{stem}.onnx"
    verdict_path = path.with_suffix(".json")
    try:
        if path.is_file() and verdict_path.is_file():
            verdict = json.loads(verdict_path.read_text())
            if not verdict.get("agrees"):
                logger.info("%s: ONNX Runtime disagreed with torch before; running eager",
                            card.name)
                return None
            return _run(_session(path.read_bytes()))
        model_bytes = _export(model.network, card.input_size)
        forward = _run(_session(model_bytes))
        map_error, probability_error = agreement(model, forward)
    except Exception as error:  # an exporter or runtime limit: eager always works
        logger.info("%s: ONNX Runtime unavailable (%s: %s); running eager", card.name,
                    type(error).__name__, str(error).splitlines()[0] if str(error) else "")
        return None
    agrees = map_error <= MAP_TOLERANCE and probability_error <= PROBABILITY_TOLERANCE
    with contextlib.suppress(OSError):  # a read-only cache only costs the next run time
        _write_atomically(path, model_bytes)
        _write_atomically(verdict_path, json.dumps({
            "agrees": agrees, "max_map_difference": map_error,
            "max_probability_difference": probability_error}).encode())
    if not agrees:
        logger.info("%s: ONNX Runtime's maps differ from torch's by %.1e; running eager",
                    card.name, map_error)
        return None
    return forward
