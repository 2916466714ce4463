"""Peak memory of a batch run over N images: must stay flat as N grows.

Writes the largest N synthetic 256-512 px PNGs once into a temporary folder, then
runs ``localize_files`` (the CLI's batch path) over the first N of them for each
N in a fresh process, and prints each run's peak RSS (the main process and,
separately, its largest DataLoader worker).

    python benchmarks/memory.py [--counts 100 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import add_common_arguments, apply_threads, machine_line, model_folder, print_table

from CXRWeakLocLib.batch import localize_files
from CXRWeakLocLib.localize import Localizer

TARGET_GROWTH = 0.10  # peak RSS from the smallest to the largest N


def child(args: argparse.Namespace) -> None:
    """One batch run; prints its figures as JSON."""
    files = sorted(Path(args.images).glob("*.png"))[:args.child]
    localizer = Localizer.from_name(args.model, args.device)
    start = time.perf_counter()
    report = localize_files(localizer, files, Path(args.out), args.findings,
                            batch_size=args.batch_size, progress=False, workers=args.workers)
    print(json.dumps({
        "seconds": time.perf_counter() - start,
        "done": len(report.by_status("done")),
        "main_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--findings", default="positive")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--images", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    apply_threads(args)
    if args.child:
        child(args)
        return

    from common import write_pngs  # the parent alone makes images

    rows, peaks = [], []
    with tempfile.TemporaryDirectory(prefix="cxr-memory-") as temporary:
        work = Path(temporary)
        folder, description = model_folder(args.model, work)
        write_pngs(work / "images", max(args.counts))
        for count in args.counts:
            command = [sys.executable, __file__, "--child", str(count), "--images",
                       str(work / "images"), "--out", str(work / f"out-{count}"),
                       "--model", str(folder), "--device", args.device,
                       "--workers", str(args.workers), "--batch-size", str(args.batch_size),
                       "--findings", args.findings, "--threads", str(args.threads)]
            output = subprocess.run(command, capture_output=True, text=True, check=True)
            figures = json.loads(output.stdout.strip().splitlines()[-1])
            peaks.append(figures["main_mib"])
            rows.append((count, figures["done"], f"{figures['seconds']:.0f}",
                         f"{figures['main_mib']:.0f}", f"{figures['worker_mib']:.0f}"))

    print(machine_line(args.device))
    print(f"model: {description}; --findings {args.findings}; {args.workers} workers; "
          f"batch {args.batch_size}\n")
    print_table(["images", "done", "seconds", "peak RSS main (MiB)",
                 "peak RSS largest worker (MiB)"], rows)
    growth = peaks[-1] / peaks[0] - 1
    print(f"\ntarget: peak RSS within {TARGET_GROWTH:.0%} from {args.counts[0]} to "
          f"{args.counts[-1]} images: {growth:+.1%} "
          f"({'met' if abs(growth) <= TARGET_GROWTH else 'MISSED'})")


if __name__ == "__main__":
    main()
