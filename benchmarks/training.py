"""Training throughput in images/s for every method the trainer trains.

Each trainable method of ``CXRWeakLocLib.models.METHODS`` is trained for one epoch
by the engine's own trainer (``train.trainer.train``) on a small in-memory
synthetic dataset with the shipped architecture; the figure is the images of that
epoch over its training-loop seconds (from the run's ``log.csv``).

    python benchmarks/training.py [--images 48] [--batch-size 8] [--size 256]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

from common import SHIPPED_ARCHITECTURE, apply_threads, machine_line, print_table

from CXRWeakLocLib.core.card import read_card
from CXRWeakLocLib.methods import METHODS, OBJECTIVES
from CXRWeakLocLib.train.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from CXRWeakLocLib.train.engine import train


def images_per_second(method: str, args: argparse.Namespace, work: Path) -> tuple[int, float]:
    """Training images and seconds of one epoch of ``method``."""
    config = TrainConfig(
        run=RunConfig(name=f"bench-{method}", output=str(work / method)),
        data=DataConfig(dataset="synthetic", synthetic_count=args.images, val_fraction=0.0),
        model=ModelConfig(method=method, input_size=args.size,
                          backbone=dict(SHIPPED_ARCHITECTURE["backbone"])),
        optim=OptimConfig(epochs=1, batch_size=args.batch_size, warmup_epochs=0),
    )
    result = train(config, device=args.device, resume=False)
    trained = read_card(result.model_folder).training["train_images"]
    with (result.run_folder / "log.csv").open(newline="") as handle:
        seconds = float(next(csv.DictReader(handle))["seconds"])
    images = (trained // args.batch_size) * args.batch_size or trained
    return images, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="model input side in pixels")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=[m for m in METHODS if m in OBJECTIVES],
                        help="default: every trainable method")
    args = parser.parse_args()
    apply_threads(args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cxr-training-") as temporary:
        for method in args.methods:
            images, seconds = images_per_second(method, args, Path(temporary))
            rows.append((method, images, f"{seconds:.1f}", f"{images / seconds:.1f}"))
    print(machine_line(args.device))
    print(f"shipped architecture {SHIPPED_ARCHITECTURE['backbone']}, input {args.size} px, "
          f"batch {args.batch_size}, one epoch of synthetic images\n")
    print_table(["method", "images", "seconds", "images/s"], rows)
    untrained = [m for m in METHODS if m not in OBJECTIVES]
    if untrained:
        print(f"\nnot trained by the trainer: {', '.join(untrained)}")


if __name__ == "__main__":
    main()
