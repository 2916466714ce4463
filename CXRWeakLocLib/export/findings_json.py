"""``findings.json``: the machine-readable record of one radiograph's results.

It holds the input (path, sha256, size, spacing, how it was turned for the model:
``display_orientation``), the model, the mask rule, every
finding of the model (probability, threshold, positive, exported; mask area and
boxes ``[x, y, w, h]`` for the exported ones) and the files written beside it.
Areas in mm^2 are null when the pixel spacing is unknown.
:func:`~CXRWeakLocLib.core.results.read_result` reads it back.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.radiograph import Radiograph
from ..core.results import FINDINGS_FORMAT_VERSION, FindingResult, LocalizationResult

__all__ = ["findings_record", "write_findings_json"]


def _finding(item: FindingResult, radiograph: Radiograph) -> dict:
    record = {
        "name": item.name,
        "code": {"value": item.finding.code.value, "scheme": item.finding.code.scheme,
                 "meaning": item.finding.code.meaning},
        "probability": round(item.probability, 6),
        "threshold": item.threshold,
        "positive": item.positive,
        "exported": item.heatmap is not None,
    }
    if record["exported"]:
        area = item.mask_area_px
        record["mask_area_px"] = area
        record["mask_area_mm2"] = (
            round(area * radiograph.pixel_area_mm2, 3) if radiograph.spacing_known else None
        )
        record["boxes_xywh"] = [box.to_xywh() for box in item.boxes]
    return record


def findings_record(
    result: LocalizationResult, radiograph: Radiograph, files: list[str]
) -> dict:
    """The JSON-ready record; ``files`` are names relative to the result folder."""
    rows, columns = radiograph.size
    record = {
        "format_version": FINDINGS_FORMAT_VERSION,
        "input": {
            "path": str(radiograph.source) if radiograph.source else None,
            "sha256": radiograph.sha256,
            "rows": rows,
            "columns": columns,
            "spacing_mm": {"column": radiograph.spacing[0], "row": radiograph.spacing[1]},
            "spacing_known": radiograph.spacing_known,
            "display_orientation": str(radiograph.orientation),
        },
        "model": {"name": result.model_name, "version": result.model_version,
                  "method": result.method},
        "mask_rule": result.mask_rule.to_dict(),
        "findings": [_finding(item, radiograph) for item in result.findings],
        "files": files,
    }
    if not result.localized:
        record["note"] = "no finding localized: no segmentation, heatmap or DICOM-SEG written"
    return record


def write_findings_json(
    result: LocalizationResult, radiograph: Radiograph, path: Path, files: list[str]
) -> None:
    """Write ``findings.json``."""
    record = findings_record(result, radiograph, files)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
