"""``cxrweakloc compare``: is model A better than model B on the same regions?"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import CXRWeakLocError
from ..metrics import MODES, Interval, paired_iou_accuracy_difference
from .report import check_mode

__all__ = ["Comparison", "compare_evaluations"]


@dataclass(frozen=True)
class Comparison:
    """Two evaluations of the same regions: ``first`` minus ``second`` at one T(IoU)."""

    first: str
    second: str
    regions: int
    threshold: float
    mode: str
    difference: Interval

    @property
    def verdict(self) -> str:
        """Which model is better, or that the interval cannot tell them apart."""
        if self.difference.low > 0:
            return f"{self.first} is better"
        if self.difference.high < 0:
            return f"{self.second} is better"
        return "no clear difference"

    def summary_line(self) -> str:
        return (f"{self.first} minus {self.second}: mean {self.mode} IoU-accuracy@"
                f"{self.threshold:g} {self.difference.as_difference()} (paired "
                f"{self.difference.level:.0%} CI) over {self.regions} regions: {self.verdict}")


def compare_evaluations(first: Path | Sequence[Path], second: Path | Sequence[Path],
                        threshold: float = 0.3, mode: str = "pixel") -> Comparison:
    """Compare two ``evaluate`` output folders region by region (paired bootstrap).

    Both must have scored the same ground-truth regions (same images, same boxes): the
    ``per_image.csv`` rows are matched on image and finding, in order. The interval is
    :func:`~CXRWeakLocLib.metrics.paired_iou_accuracy_difference` of their IoUs in
    ``mode`` (``pixel`` or ``box``, see :data:`MODES`). A side given as several folders
    (runs of one recipe, e.g. training seeds) is scored by its mean over the runs.
    """
    check_mode(mode)
    column = f"iou_{mode}"
    sides = [_runs_side(side, column) for side in (first, second)]
    (name_a, keys, ious_a), (name_b, keys_b, ious_b) = sides
    if keys != keys_b:
        raise CXRWeakLocError(
            f"{first} and {second} did not score the same regions ({len(keys)} vs "
            f"{len(keys_b)}, {len(set(keys) ^ set(keys_b))} not in both): evaluate both "
            "models on the same dataset and images list")
    pairs = [(finding, ious_a[index], ious_b[index])
             for index, (_, finding, _) in enumerate(keys)]
    if not pairs:
        raise CXRWeakLocError(f"{first}: no scored regions to compare")
    return Comparison(name_a, name_b, len(pairs), threshold, mode,
                      paired_iou_accuracy_difference(pairs, threshold))


def _runs_side(folders: Path | Sequence[Path], column: str
               ) -> tuple[str, list[tuple[str, str, int]], list[list[float]]]:
    """One side of a comparison: its name, region keys, and each region's IoUs (one per run)."""
    folders = [Path(folders)] if isinstance(folders, (str, Path)) else [Path(f) for f in folders]
    if not folders:
        raise CXRWeakLocError("compare: no evaluate folder given")
    keys: list[tuple[str, str, int]] = []
    ious: list[list[float]] = []
    for run, folder in enumerate(folders):
        name, rows = _evaluation_rows(folder)
        by_key = dict(zip(_region_keys(rows), rows, strict=True))
        if run == 0:
            first_name, keys, ious = name, list(by_key), [[] for _ in by_key]
        elif set(by_key) != set(keys):
            raise CXRWeakLocError(f"{folders[0]} and {folder} did not score the same regions: "
                                  "runs of one side must be evaluated on the same images")
        for values, key in zip(ious, keys, strict=True):
            values.append(float(by_key[key][column]))
    label = first_name if len(folders) == 1 else f"{first_name} ({len(folders)} runs)"
    return label, keys, ious


def _evaluation_rows(folder: Path) -> tuple[str, list[dict]]:
    """The model name and ``per_image.csv`` rows of an ``evaluate`` output folder."""
    table, summary = Path(folder) / "per_image.csv", Path(folder) / "metrics.json"
    if not table.is_file() or not summary.is_file():
        raise CXRWeakLocError(f"{folder}: not an evaluate output folder (no per_image.csv "
                              "and metrics.json)")
    try:
        name = json.loads(summary.read_text())["model"]
        with table.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        for row in rows:
            for mode in MODES:
                float(row[f"iou_{mode}"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise CXRWeakLocError(f"{folder}: unreadable evaluation ({error})") from None
    return name, rows


def _region_keys(rows: list[dict]) -> list[tuple[str, str, int]]:
    """``(image, finding, k)``: the k-th region of that finding on that image."""
    seen: dict[tuple[str, str], int] = {}
    keys = []
    for row in rows:
        pair = (row["image"], row["finding"])
        seen[pair] = seen.get(pair, 0) + 1
        keys.append((*pair, seen[pair]))
    return keys
