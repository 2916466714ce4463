"""The CPU inference paths of one model: seconds per image and how far their maps are from eager.

For each path (torch eager fp32, channels-last, bf16 autocast, ``torch.compile``, and
ONNX Runtime as the Localizer runs it, when it does) on ``--batch-size`` synthetic
radiographs prepared as the Localizer prepares them: median wall and process-CPU
seconds per image at batch 1 (one study) and at ``--batch-size``, and the largest
difference from eager of the min-max normalised maps (what heatmaps and masks are
made of) and of the probabilities. The Localizer ships the fastest path whose maps
stay within :data:`~CXRWeakLocLib.runtime.MAP_TOLERANCE` of eager.

    python benchmarks/inference.py [--model cam|lite0-512] [--repeats 5] [--compile]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import (
    add_common_arguments,
    apply_threads,
    machine_line,
    model_folder,
    print_table,
    synthetic_pixels,
)

from CXRWeakLocLib.core.radiograph import Radiograph
from CXRWeakLocLib.localize import Localizer
from CXRWeakLocLib.runtime import MAP_TOLERANCE, normalised_maps


def paths(localizer: Localizer, compile_model: bool) -> dict[str, Callable]:
    """name -> function(batch) -> (logits, maps) of each inference path."""
    eager = localizer.model.network.eval()
    last = None

    def channels_last(batch):
        nonlocal last
        if last is None:
            last = copy.deepcopy(eager).to(memory_format=torch.channels_last)
        return last(batch.contiguous(memory_format=torch.channels_last))

    def bf16(batch):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return channels_last(batch)

    found = {"eager fp32": eager, "channels-last fp32": channels_last,
             "bf16 autocast, channels-last": bf16}
    if compile_model:
        found["torch.compile (inductor)"] = torch.compile(eager)
    if localizer.fast_forward is not None:  # the Localizer's own (runtime.cpu_forward)
        found["ONNX Runtime"] = localizer.fast_forward
    return found


def timed(function: Callable, batch: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds per image of ``repeats`` calls after one warm-up."""
    with torch.inference_mode():
        function(batch)
        walls, cpus = [], []
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            function(batch)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    return statistics.median(walls) / len(batch), statistics.median(cpus) / len(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = parser.parse_args()
    apply_threads(args)
    with tempfile.TemporaryDirectory(prefix="cxr-inference-") as temporary:
        folder, description = model_folder(args.model, Path(temporary))
        localizer = Localizer.from_name(str(folder), "cpu")
    images = [localizer.prepare(Radiograph(pixels=synthetic_pixels(512, seed)))
              for seed in range(args.batch_size)]
    batch, single = torch.stack(images), images[0][None]
    with torch.inference_mode():
        reference_logits, reference_maps = localizer.model.network.eval()(batch)
    reference = normalised_maps(reference_maps)
    rows = []
    for name, function in paths(localizer, args.compile).items():
        with torch.inference_mode():
            logits, maps = function(batch)
        map_error = float((normalised_maps(maps) - reference).abs().max())
        probability_error = float((torch.sigmoid(logits.float())
                                   - torch.sigmoid(reference_logits)).abs().max())
        one = timed(function, single, args.repeats)
        many = timed(function, batch, args.repeats)
        verdict = "yes" if map_error <= MAP_TOLERANCE else "no"
        rows.append((name, f"{one[0]:.4f} ({one[1]:.4f})", f"{many[0]:.4f} ({many[1]:.4f})",
                     f"{map_error:.1e}", f"{probability_error:.1e}", verdict))
    print(machine_line("cpu"))
    print(f"model: {description}, model input {localizer.card.input_size} px; median of "
          f"{args.repeats} after one warm-up; s / image: wall (process cpu)\n")
    print_table(["path", "batch 1 s/image", f"batch {args.batch_size} s/image",
                 "max |map - eager| (normalised)", "max |p - eager|",
                 f"within {MAP_TOLERANCE:g}"], rows)


if __name__ == "__main__":
    main()
