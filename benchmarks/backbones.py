"""Training-step and inference cost of the backbones, per input size and precision.

For the shipped half-width ResNet-18 and for EfficientNet-Lite0 (every layer trained,
and with the stem and first stages frozen), each as the ``cam`` network with 14
findings: seconds per training step (AdamW, weighted BCE, a batch of ``--batch-size``
random images) and seconds per inference image (batch ``--batch-size``, no autograd),
in fp32, CPU bf16 autocast, and channels-last (fp32). Each figure is the median of
``--repeats`` timed calls after one warm-up call. ``cpu s`` is the process's CPU time
per call divided by the threads: on a machine that other jobs share, it estimates the
uncontended wall time when ``wall s`` is inflated.

    python benchmarks/backbones.py [--sizes 256 384 512] [--batch-size 16] [--repeats 3]

Rows print as they are measured (a Markdown table: pastes into RESULTS.md).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from common import SHIPPED_ARCHITECTURE, apply_threads, machine_line, print_table
from tqdm import tqdm

from CXRWeakLocLib.losses import WeightedBCELoss
from CXRWeakLocLib.methods import build_network

#: name -> backbone config of the ``cam`` network timed
BACKBONES = {
    "resnet18 x0.5 (shipped)": dict(SHIPPED_ARCHITECTURE["backbone"]),
    "lite0, full fine-tune": {"name": "efficientnet-lite0", "output_stride": 16},
    "lite0, stem + 3 stages frozen": {"name": "efficientnet-lite0", "output_stride": 16,
                                      "freeze": 3},
}
#: precision -> (bf16 autocast, channels-last)
PRECISIONS = {"fp32": (False, False), "bf16 autocast": (True, False),
              "channels-last": (False, True)}
FINDINGS = 14


def median_call(function: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds (CPU time over threads) of ``repeats`` calls."""
    function()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - wall)
        cpus.append((time.process_time() - cpu) / torch.get_num_threads())
    return statistics.median(walls), statistics.median(cpus)


def measure(backbone: dict, size: int, bf16: bool, channels_last: bool,
            args: argparse.Namespace) -> tuple[float, float, float, float]:
    """(step wall, step cpu, per-image inference wall, cpu) seconds of one setting."""
    torch.manual_seed(0)
    network = build_network("cam", {"backbone": backbone}, FINDINGS)
    trainable = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    criterion = WeightedBCELoss()
    images = torch.rand(args.batch_size, 1, size, size)
    labels = (torch.rand(args.batch_size, FINDINGS) < 0.2).float()
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        network.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, _ = network(images)
        loss = criterion(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def infer() -> None:
        network.eval()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            network(images)

    step_wall, step_cpu = median_call(step, args.repeats)
    infer_wall, infer_cpu = median_call(infer, args.repeats)
    return step_wall, step_cpu, infer_wall / args.batch_size, infer_cpu / args.batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 384, 512])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--backbones", nargs="+", choices=list(BACKBONES),
                        default=list(BACKBONES))
    parser.add_argument("--precisions", nargs="+", choices=list(PRECISIONS),
                        default=list(PRECISIONS))
    args = parser.parse_args()
    apply_threads(args)
    settings = [(name, size, precision) for name in args.backbones for size in args.sizes
                for precision in args.precisions]
    print(machine_line("cpu"))
    print(f"cam network, {FINDINGS} findings, batch {args.batch_size}, AdamW; median of "
          f"{args.repeats} after one warm-up\n")
    print_table(["backbone", "px", "precision", "train step wall s", "train step cpu s",
                 "inference wall s / image", "inference cpu s / image"], [])
    for name, size, precision in tqdm(settings, desc="settings"):
        figures = measure(BACKBONES[name], size, *PRECISIONS[precision], args)
        row = (name, size, precision, *(f"{value:.3f}" for value in figures))
        tqdm.write("| " + " | ".join(str(cell) for cell in row) + " |")


if __name__ == "__main__":
    main()
