"""Batch throughput in images/s: the whole batch path, and the model alone.

1. ``localize_files`` (the CLI's batch path: decoding in DataLoader workers,
   localisation, every export) over synthetic 256-512 px PNGs, per ``--workers``.
2. Inference only: DataLoader workers decode and prepare (pinned memory on CUDA),
   ``Localizer.predict`` runs in fp32, channels-last, bf16 autocast (CUDA, or
   ``--cpu-bf16``) and ``torch.compile`` (``--compile``).

    python benchmarks/throughput.py [--images 32] [--workers 0 2] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from common import (
    add_common_arguments,
    apply_threads,
    machine_line,
    model_folder,
    print_table,
    timed,
    write_pngs,
)
from torch.utils.data import DataLoader, Dataset

from CXRWeakLocLib.batch import RadiographFiles, localize_files
from CXRWeakLocLib.localize import Localizer


class PreparedFiles(Dataset):
    """Decoded and prepared network inputs, made in the DataLoader's workers."""

    def __init__(self, files: list[Path], localizer: Localizer) -> None:
        self.files = RadiographFiles(files)
        self.prepare = localizer.prepare

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.prepare(self.files[index].radiograph)


def inference_variants(localizer: Localizer, cpu_bf16: bool,
                       compile_model: bool) -> Iterator[tuple[str, Callable]]:
    """(name, context factory) of each inference setting worth measuring here."""
    device = localizer.model.device
    yield "fp32", contextlib.nullcontext
    yield "fp32 channels-last", contextlib.nullcontext
    if device.type == "cuda" or cpu_bf16:
        yield "bf16 autocast channels-last", lambda: torch.autocast(device.type, torch.bfloat16)
    if compile_model:
        yield "bf16/fp32 + torch.compile", (
            (lambda: torch.autocast(device.type, torch.bfloat16))
            if device.type == "cuda" else contextlib.nullcontext)


def model_throughput(localizer: Localizer, files: list[Path], workers: int, batch_size: int,
                     cpu_bf16: bool, compile_model: bool) -> list[tuple[str, float]]:
    """Images/s of ``Localizer.predict`` fed by a DataLoader, per inference setting."""
    pin = localizer.model.device.type == "cuda"
    loader = DataLoader(PreparedFiles(files, localizer), batch_size=batch_size,
                        num_workers=workers, pin_memory=pin)
    batches = list(loader)  # decoding is timed in part 1; here the model alone
    network = localizer.model.network
    rows = []
    for name, context in inference_variants(localizer, cpu_bf16, compile_model):
        layout = torch.channels_last if "channels-last" in name else torch.contiguous_format
        localizer.model.network = network.to(memory_format=layout)
        if "compile" in name:
            localizer.model.network = torch.compile(network)
        with context():
            localizer.predict(batches[0].to(memory_format=layout))  # warm-up / compile
            start = time.perf_counter()
            for batch in batches:
                localizer.predict(batch.to(memory_format=layout))
            if localizer.model.device.type == "cuda":
                torch.cuda.synchronize()
        rows.append((name, len(files) / (time.perf_counter() - start)))
    localizer.model.network = network.to(memory_format=torch.contiguous_format)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--findings", default="positive", help="positive, all, or names")
    parser.add_argument("--cpu-bf16", action="store_true", help="also time bf16 on the CPU")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = parser.parse_args()
    apply_threads(args)
    with tempfile.TemporaryDirectory(prefix="cxr-throughput-") as temporary:
        work = Path(temporary)
        folder, description = model_folder(args.model, work)
        localizer = Localizer.from_name(str(folder), args.device)
        files = write_pngs(work / "images", args.images)
        rows = []
        for workers in args.workers:
            seconds, _ = timed(lambda w=workers: localize_files(
                localizer, files, work / f"out-{w}", args.findings, overwrite=True,
                batch_size=args.batch_size, progress=False, workers=w))
            rows.append((f"batch localize + export ({args.findings}), {workers} workers",
                         f"{args.images / seconds:.2f}"))
        for name, rate in model_throughput(localizer, files, max(args.workers),
                                           args.batch_size, args.cpu_bf16, args.compile):
            rows.append((f"model only, {name}", f"{rate:.1f}"))

    print(machine_line(args.device))
    print(f"model: {description}; {args.images} synthetic PNGs 256-512 px; "
          f"batch {args.batch_size}\n")
    print_table(["path", "images/s"], rows)
    if localizer.model.device.type != "cuda":
        print("\nGPU rows (bf16, channels-last, torch.compile on CUDA): not measured here "
              "(no GPU); run with --device cuda --compile on a GPU machine")


if __name__ == "__main__":
    main()
