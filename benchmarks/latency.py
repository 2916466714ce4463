"""End-to-end latency of one study: read DICOM, all findings' heatmaps and masks, every export.

The timed path is the CLI's: ``read_radiograph`` -> ``Localizer.localize(...,
"all")`` -> ``export_all``. Warm is the median of ``--repeats`` calls in one
process; the per-stage rows time the same stages one by one (and each exporter
alone), so they add up to about the warm total. Cold is ``python -m CXRWeakLocLib
localize`` on one 512 px DICOM in a new process, imports and model load included,
until it exits (its first and only result written). ``--compare REF`` runs the same
measurements on the engine of git ``REF`` (extracted to a temporary folder, in a
child process) first, and prints old vs new side by side.

    python benchmarks/latency.py [--sizes 512 1024] [--repeats 5] [--model cam|lite0-512]
                                 [--compare main]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import (
    SIIM_DICOM,
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
    write_dicom,
)

from CXRWeakLocLib.core.layout import OutputLayout
from CXRWeakLocLib.core.radiograph import read_radiograph
from CXRWeakLocLib.export import export_all
from CXRWeakLocLib.export.dicom_seg import write_dicom_seg
from CXRWeakLocLib.export.heatmap_nrrd import write_heatmaps
from CXRWeakLocLib.export.overview_png import write_overview
from CXRWeakLocLib.export.seg_nrrd import write_segmentation
from CXRWeakLocLib.localize import Localizer

#: Targets on the 2-core development machine (issue 24), seconds.
TARGETS = {512: 0.3, 1024: 0.5}
COLD_TARGET = 2.0
COLD_SIZE = 512


def median_wall_cpu(function, repeats: int) -> list[float]:
    """Median wall and process CPU seconds (all threads) of ``repeats`` calls: on a machine
    that other jobs share, CPU time is the better estimate of the uncontended cost."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return [statistics.median(walls), statistics.median(cpus)]


def study(localizer: Localizer, path: Path, out: Path) -> None:
    """One study end to end, as ``cxrweakloc localize --findings all`` runs it."""
    radiograph = read_radiograph(path)
    result = localizer.localize([radiograph], "all")[0]
    export_all(result, radiograph, out, overwrite=True)


def stage_rows(localizer: Localizer, path: Path, out: Path, repeats: int) -> list[list]:
    """Median wall and CPU seconds of each stage of ``study``."""
    radiograph = read_radiograph(path)
    batch = torch.stack([localizer.prepare(radiograph)])
    result = localizer.localize([radiograph], "all")[0]
    layout = OutputLayout(out / "stages", radiograph.stem)
    layout.folder.mkdir(parents=True, exist_ok=True)
    read = median_wall_cpu(lambda: read_radiograph(path), repeats)
    prepare = median_wall_cpu(lambda: localizer.prepare(radiograph), repeats)
    model = median_wall_cpu(lambda: localizer.predict(batch), repeats)
    localize = median_wall_cpu(lambda: localizer.localize([radiograph], "all"), repeats)
    exporters = {
        "export: seg.nrrd": lambda: write_segmentation(result, radiograph, layout.segmentation),
        "export: heatmap NRRDs": lambda: write_heatmaps(result, radiograph, layout),
        "export: DICOM-SEG": lambda: write_dicom_seg(result, radiograph, layout.dicom_seg),
        "export: overview PNG": lambda: write_overview(result, radiograph, layout.overview),
    }
    rows = [["read DICOM", *read], ["prepare (resize, normalise)", *prepare],
            ["model forward (14 maps)", *model],
            ["maps + masks + boxes (14, input size)",
             *(whole - a - b for whole, a, b in zip(localize, prepare, model, strict=True))]]
    rows += [[name, *median_wall_cpu(write, repeats)] for name, write in exporters.items()]
    return rows


def cold_seconds(path: Path, model: str, out: Path, repeats: int) -> list[float]:
    """Median wall and CPU seconds (user + system, all threads) of ``python -m CXRWeakLocLib
    localize`` on one file, each run a new process."""
    command = [sys.executable, "-m", "CXRWeakLocLib", "localize", str(path), "--out", str(out),
               "--model", model, "--findings", "all", "--overwrite", "--quiet"]
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=dict(os.environ))
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return [statistics.median(walls), statistics.median(cpus)]


def measure(args: argparse.Namespace, work: Path) -> dict:
    """Every figure of this engine, as a JSON-ready dict."""
    work.mkdir(parents=True, exist_ok=True)
    folder, description = model_folder(args.model, work)
    inputs = {size: write_dicom(work / f"study{size}.dcm", size) for size in args.sizes}
    cold_input = inputs.get(COLD_SIZE) or write_dicom(work / "cold.dcm", COLD_SIZE)
    # first: a model's first run exports it for ONNX Runtime once (cached); cold is after
    first, localizer = timed(lambda: Localizer.from_name(str(folder), args.device))
    cold = cold_seconds(cold_input, str(folder), work / "cold", max(1, args.repeats // 2))
    study(localizer, inputs[args.sizes[0]], work / "out")  # warm-up
    figures = {"engine": engine_path(), "machine": machine_line(args.device),
               "model": f"{description}, model input {localizer.card.input_size} px",
               "cold": cold, "first_load": first, "sizes": {}}
    for size, path in inputs.items():
        warm = median_wall_cpu(lambda p=path: study(localizer, p, work / "out"), args.repeats)
        stages = stage_rows(localizer, path, work, args.repeats)
        figures["sizes"][str(size)] = {"warm": warm, "stages": stages}
    return figures


def report(args: argparse.Namespace, new: dict, old: dict | None) -> None:
    """The table (old | new | speed-up per size with --compare) and the targets."""
    print(new["machine"])
    print(f"model: {new['model']}")
    source = "the SIIM DICOM fixture" if SIIM_DICOM.is_file() else "a synthetic DICOM"
    print(f"input: {source} at each size; --findings all (14 heatmaps, masks, every export); "
          f"median of {args.repeats}")
    if old:
        print(f"old: the engine of {args.compare}; new: this tree\n")
    else:
        print()
    sizes = [str(size) for size in args.sizes]

    def cells(get) -> list[str]:
        """``wall (cpu)`` per size; with --compare old, new and both speed-ups."""
        out = []
        for size in sizes:
            wall, cpu = get(new, size)
            if old:
                wall_before, cpu_before = get(old, size)
                out += [f"{wall_before:.3f} ({cpu_before:.3f})", f"{wall:.3f} ({cpu:.3f})",
                        f"{ratio(wall_before, wall)} ({ratio(cpu_before, cpu)})"]
            else:
                out.append(f"{wall:.3f} ({cpu:.3f})")
        return out

    headers = ["stage: median wall s (cpu s)"]
    for size in sizes:
        headers += [f"{size} px old", f"{size} px new", "speed-up"] if old else [f"{size} px"]
    def rest(figures: dict, size: str) -> list[float]:
        warm, forward = figures["sizes"][size]["warm"], figures["sizes"][size]["stages"][2][1:]
        return [w - f for w, f in zip(warm, forward, strict=True)]

    rows = [["warm: end to end", *cells(lambda f, s: f["sizes"][s]["warm"])],
            ["warm: everything but the forward pass", *cells(rest)]]
    for index, (name, *_) in enumerate(new["sizes"][sizes[0]]["stages"]):
        rows.append([f"  {name}", *cells(lambda f, s, i=index: f["sizes"][s]["stages"][i][1:])])
    rows.append([f"cold: `cxrweakloc localize`, new process, one {COLD_SIZE} px DICOM",
                 *cells(lambda f, s: f["cold"])[:3 if old else 1]])
    print_table(headers, rows)
    print()
    for size, target in TARGETS.items():
        if str(size) in new["sizes"]:
            wall, cpu = new["sizes"][str(size)]["warm"]
            print(f"target: one study at {size} px <= {target} s warm: {wall:.3f} s wall, "
                  f"{cpu:.3f} s cpu ({'met' if wall <= target else 'MISSED'})")
    for size in sizes:
        others, forward = rest(new, size)[0], new["sizes"][size]["stages"][2][1]
        print(f"target: everything but the forward pass < the forward pass at {size} px: "
              f"{others:.3f} s vs {forward:.3f} s ({'met' if others < forward else 'MISSED'})")
    wall, cpu = new["cold"]
    print(f"target: cold, new process, <= {COLD_TARGET} s to the first result: {wall:.3f} s "
          f"wall, {cpu:.3f} s cpu ({'met' if wall <= COLD_TARGET else 'MISSED'}); the "
          f"model's load in this process (its first ever: export and check for ONNX "
          f"Runtime, cached) {new['first_load']:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    add_compare_arguments(parser)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024],
                        help="input image sides in pixels")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    apply_threads(args)
    with tempfile.TemporaryDirectory(prefix="cxr-latency-") as temporary:
        work = Path(temporary)
        old = None
        if args.compare:
            argv = [a for a in sys.argv[1:] if a not in ("--compare", args.compare)]
            old = run_on_engine(args.compare, work / "old", argv)
        new = measure(args, work / "new")
    if args.json:
        print(json.dumps(new))
        return
    report(args, new, old)


if __name__ == "__main__":
    main()
