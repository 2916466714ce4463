"""End-to-end latency of one study: read DICOM, all findings' heatmaps and masks, every export.

The timed path is the CLI's: ``read_radiograph`` -> ``Localizer.localize(...,
"all")`` -> ``export_all``. Cold is the first call in the process, model load
included (imports excluded); warm is the median of ``--repeats`` calls. The
per-stage rows time the same stages one by one (and each exporter alone), so
they add up to about the warm total.

    python benchmarks/latency.py [--sizes 512 1024] [--repeats 5] [--model cam]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from common import (
    SIIM_DICOM,
    add_common_arguments,
    apply_threads,
    machine_line,
    median_seconds,
    model_folder,
    print_table,
    timed,
    write_dicom,
)

from CXRWeakLocLib.core.layout import OutputLayout
from CXRWeakLocLib.core.radiograph import read_radiograph
from CXRWeakLocLib.export import export_all
from CXRWeakLocLib.export.dicom_seg import write_dicom_seg
from CXRWeakLocLib.export.findings_json import write_findings_json
from CXRWeakLocLib.export.heatmap_nrrd import write_heatmaps
from CXRWeakLocLib.export.overview_png import write_overview
from CXRWeakLocLib.export.seg_nrrd import write_segmentation
from CXRWeakLocLib.localize import Localizer

TARGET_SECONDS = 1.0  # one study at 512 px, warm, on the 2-core development machine


def study(localizer: Localizer, path: Path, out: Path) -> None:
    """One study end to end, as ``cxrweakloc localize --findings all`` runs it."""
    radiograph = read_radiograph(path)
    result = localizer.localize([radiograph], "all")[0]
    export_all(result, radiograph, out, overwrite=True)


def stage_rows(localizer: Localizer, path: Path, out: Path, repeats: int) -> list[tuple]:
    """Median seconds of each stage of ``study``."""
    radiograph = read_radiograph(path)
    batch = torch.stack([localizer.prepare(radiograph)])
    result = localizer.localize([radiograph], "all")[0]
    layout = OutputLayout(out / "stages", radiograph.stem)
    layout.folder.mkdir(parents=True, exist_ok=True)
    read = median_seconds(lambda: read_radiograph(path), repeats)
    prepare = median_seconds(lambda: localizer.prepare(radiograph), repeats)
    model = median_seconds(lambda: localizer.predict(batch), repeats)
    localize = median_seconds(lambda: localizer.localize([radiograph], "all"), repeats)
    exporters = {
        "export: seg.nrrd": lambda: write_segmentation(result, radiograph, layout.segmentation),
        "export: heatmap NRRDs": lambda: write_heatmaps(result, radiograph, layout),
        "export: DICOM-SEG": lambda: write_dicom_seg(result, radiograph, layout.dicom_seg),
        "export: overview PNG": lambda: write_overview(result, radiograph, layout.overview),
        "export: findings.json": lambda: write_findings_json(
            result, radiograph, layout.findings_json, []),
    }
    rows = [("read DICOM", read), ("prepare (resize, normalise)", prepare),
            ("model forward (14 maps)", model),
            ("maps + masks + boxes (14, input size)", localize - prepare - model)]
    rows += [(name, median_seconds(write, repeats)) for name, write in exporters.items()]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024],
                        help="input image sides in pixels")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    apply_threads(args)
    with tempfile.TemporaryDirectory(prefix="cxr-latency-") as temporary:
        work = Path(temporary)
        folder, description = model_folder(args.model, work)
        inputs = {size: write_dicom(work / f"study{size}.dcm", size) for size in args.sizes}
        first = args.sizes[0]
        cold, localizer = timed(lambda: Localizer.from_name(str(folder), args.device))
        cold += timed(lambda: study(localizer, inputs[first], work / "out"))[0]

        print(machine_line(args.device))
        print(f"model: {description}, model input {localizer.card.input_size} px")
        source = "the SIIM DICOM fixture" if SIIM_DICOM.is_file() else "a synthetic DICOM"
        print(f"input: {source} at each size; --findings all (14 heatmaps, masks, "
              "every export)\n")
        warm = {size: median_seconds(lambda p=path: study(localizer, p, work / "out"),
                                     args.repeats) for size, path in inputs.items()}
        stages = {size: stage_rows(localizer, path, work, args.repeats)
                  for size, path in inputs.items()}
        headers = ["stage (median s)", *(f"{size} px" for size in args.sizes)]
        rows = [(f"cold: first study incl. model load ({first} px)", f"{cold:.3f}",
                 *("" for _ in args.sizes[1:]))]
        rows.append(("warm: end to end", *(f"{warm[size]:.3f}" for size in args.sizes)))
        for index, (name, _) in enumerate(stages[first]):
            rows.append((f"  {name}", *(f"{stages[size][index][1]:.3f}" for size in args.sizes)))
        print_table(headers, rows)
        if 512 in warm:
            verdict = "met" if warm[512] <= TARGET_SECONDS else "MISSED"
            print(f"\ntarget: one study at 512 px <= {TARGET_SECONDS:.1f} s warm: "
                  f"{warm[512]:.3f} s ({verdict})")


if __name__ == "__main__":
    main()
