"""Batch throughput in images/s: the whole batch path, the model alone, and what bounds it.

1. ``localize_files`` (the CLI's batch path: decoding in DataLoader workers,
   localisation, every export) over synthetic 256-512 px PNGs, per ``--workers``.
2. The model alone: DataLoader workers decode and prepare (pinned memory on CUDA,
   copied with ``non_blocking``), ``Localizer.predict`` in ONNX Runtime (the CPU
   path, when the Localizer uses it), torch fp32, channels-last, bf16
   autocast (CUDA, or ``--cpu-bf16``) and ``torch.compile`` (``--compile``; on by
   default on CUDA). The copy to the device is inside the timed loop.
3. The bound: decoding + preparing per worker (measured), bytes per image copied to the
   device, and the forward pass's FLOPs per image (counted), from which the README's
   estimate of what limits a GPU run follows.

On a GPU machine one command runs all of it with GPU settings (workers 8, batch 64,
512 images, bf16, channels-last, compile, pinned memory):

    python benchmarks/throughput.py --device cuda

    python benchmarks/throughput.py [--images 32] [--workers 0 2] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from common import (
    add_common_arguments,
    add_compare_arguments,
    apply_threads,
    engine_path,
    machine_line,
    model_folder,
    print_table,
    ratio,
    run_on_engine,
    timed,
    write_pngs,
)
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from CXRWeakLocLib.batch import RadiographFiles, localize_files
from CXRWeakLocLib.localize import Localizer

#: Defaults that fit a GPU machine (``--device cuda``) and this project's 2-core CPU.
GPU_DEFAULTS = {"images": 512, "workers": [8], "batch_size": 64}
CPU_DEFAULTS = {"images": 32, "workers": [0, 2], "batch_size": 8}


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
    if getattr(localizer, "fast_forward", None) is not None:
        yield "ONNX Runtime (the Localizer's CPU path)", contextlib.nullcontext
    yield "fp32", contextlib.nullcontext
    yield "fp32 channels-last", contextlib.nullcontext
    if device.type == "cuda" or cpu_bf16:
        yield "bf16 autocast channels-last", lambda: torch.autocast(device.type, torch.bfloat16)
    if compile_model:
        yield "bf16/fp32 channels-last + torch.compile", (
            (lambda: torch.autocast(device.type, torch.bfloat16))
            if device.type == "cuda" else contextlib.nullcontext)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_throughput(localizer: Localizer, files: list[Path], workers: int, batch_size: int,
                     cpu_bf16: bool, compile_model: bool) -> list[tuple[str, float]]:
    """Images/s of ``Localizer.predict`` fed by a DataLoader, per inference setting."""
    device = localizer.model.device
    pin = device.type == "cuda"
    loader = DataLoader(PreparedFiles(files, localizer), batch_size=batch_size,
                        num_workers=workers, pin_memory=pin)
    batches = list(loader)  # decoding is timed apart (part 1 and decode_seconds)
    if pin:
        batches = [batch.pin_memory() for batch in batches]
    network, fast = localizer.model.network, getattr(localizer, "fast_forward", None)
    rows = []
    for name, context in inference_variants(localizer, cpu_bf16, compile_model):
        localizer.fast_forward = fast if name.startswith("ONNX") else None
        layout = torch.channels_last if "channels-last" in name else torch.contiguous_format
        localizer.model.network = network.to(memory_format=layout)
        if "compile" in name:
            localizer.model.network = torch.compile(localizer.model.network)

        def run(batch: torch.Tensor, layout=layout) -> None:
            moved = batch.to(device, non_blocking=pin).contiguous(memory_format=layout)
            localizer.predict(moved)

        with context():
            run(batches[0])  # warm-up / compile
            synchronize(device)
            start = time.perf_counter()
            for batch in batches:
                run(batch)
            synchronize(device)
        rows.append((name, len(files) / (time.perf_counter() - start)))
    localizer.model.network = network.to(memory_format=torch.contiguous_format)
    localizer.fast_forward = fast
    return rows


def decode_seconds(localizer: Localizer, files: list[Path]) -> float:
    """Mean CPU seconds one worker spends to decode and prepare one image (CPU time: on a
    shared machine, what it would take uncontended)."""
    dataset = PreparedFiles(files, localizer)
    dataset[0]
    start = time.process_time()
    for index in range(len(dataset)):
        dataset[index]
    return (time.process_time() - start) / len(dataset)


def forward_flops(localizer: Localizer) -> int:
    """FLOPs of one forward pass on one image (counted on the CPU, batch 1)."""
    size = localizer.card.input_size
    network = localizer.model.network
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        network(torch.zeros(1, 1, size, size, device=localizer.model.device))
    return counter.get_total_flops()


def measure(args: argparse.Namespace, work: Path) -> dict:
    """Every figure of this engine, as a JSON-ready dict."""
    cuda = args.device.startswith("cuda")
    work.mkdir(parents=True, exist_ok=True)
    folder, description = model_folder(args.model, work)
    localizer = Localizer.from_name(str(folder), args.device)
    files = write_pngs(work / "images", args.images)
    rows = []
    for workers in args.workers:
        seconds, _ = timed(lambda w=workers: localize_files(
            localizer, files, work / f"out-{w}", args.findings, overwrite=True,
            batch_size=args.batch_size, progress=False, workers=w))
        rows.append((f"batch localize + export ({args.findings}), {workers} workers",
                     args.images / seconds))
    for name, rate in model_throughput(localizer, files, max(args.workers), args.batch_size,
                                       args.cpu_bf16, args.compile or cuda):
        rows.append((f"model only, {name}", rate))
    return {"engine": engine_path(), "machine": machine_line(args.device),
            "model": f"{description}, model input {localizer.card.input_size} px",
            "size": localizer.card.input_size, "rows": rows,
            "decode": decode_seconds(localizer, files[:16]), "flops": forward_flops(localizer)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    add_compare_arguments(parser)
    parser.add_argument("--images", type=int, help="32 (CPU), 512 (CUDA)")
    parser.add_argument("--workers", type=int, nargs="+", help="0 2 (CPU), 8 (CUDA)")
    parser.add_argument("--batch-size", type=int, help="8 (CPU), 64 (CUDA)")
    parser.add_argument("--findings", default="positive", help="positive, all, or names")
    parser.add_argument("--cpu-bf16", action="store_true", help="also time bf16 on the CPU")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile (always on CUDA)")
    args = parser.parse_args()
    apply_threads(args)
    cuda = args.device.startswith("cuda")
    for key, value in (GPU_DEFAULTS if cuda else CPU_DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    with tempfile.TemporaryDirectory(prefix="cxr-throughput-") as temporary:
        work = Path(temporary)
        old = None
        if args.compare:
            argv = [a for a in sys.argv[1:] if a not in ("--compare", args.compare)]
            old = run_on_engine(args.compare, work / "old", argv)
        new = measure(args, work / "new")
    if args.json:
        print(json.dumps(new))
        return
    print(new["machine"])
    print(f"model: {new['model']}; {args.images} synthetic PNGs 256-512 px; "
          f"batch {args.batch_size}")
    if old:
        print(f"old: the engine of {args.compare}; new: this tree")
        before = dict(old["rows"])
        rows = [(name, f"{before[name]:.1f}" if name in before else "-", f"{rate:.1f}",
                 ratio(1 / before[name], 1 / rate) if name in before else "-")
                for name, rate in new["rows"]]
        print()
        print_table(["path (images/s)", "old", "new", "speed-up"], rows)
    else:
        print()
        print_table(["path", "images/s"], [(name, f"{rate:.1f}") for name, rate in new["rows"]])
    batch = max(rate for name, rate in new["rows"] if name.startswith("batch"))
    model = new["rows"][len(args.workers)][1]
    print(f"\ntarget: batch localize + export within 1.5x of the model alone ({model:.1f} "
          f"images/s, the Localizer's path): {batch:.1f} images/s, {model / batch:.1f}x apart "
          f"({'met' if model / batch <= 1.5 else 'MISSED'})")
    size, decode, flops = new["size"], new["decode"], new["flops"]
    workers = max(max(args.workers), 1)
    print(f"bound estimate (inputs for the README's formula): decoding + preparing "
          f"{decode * 1e3:.1f} ms / image / worker -> {workers / decode:.0f} images/s with "
          f"{workers} workers; {size * size * 4 / 2**20:.2f} MiB / image to the device "
          f"(fp32 1x{size}x{size}); forward {flops / 1e9:.2f} GFLOP / image")
    if not cuda:
        print("GPU rows: not measured here (no GPU); run `python benchmarks/throughput.py "
              "--device cuda` on a GPU machine")


if __name__ == "__main__":
    main()
