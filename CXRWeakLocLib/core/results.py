"""What a localisation produces, in memory and on disk (``findings.json``): no torch.

:class:`LocalizationResult` is what :class:`~CXRWeakLocLib.localize.Localizer` returns
and every exporter takes; :func:`read_result` reads a result folder's ``findings.json``
back (the Slicer module, the web app and re-runs use it), so nobody parses that file
by hand.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .card import ModelCard
from .errors import CXRWeakLocError
from .findings import Finding, finding_by_name
from .layout import OutputLayout
from .masks import Box, MaskRule

__all__ = [
    "FINDINGS_FORMAT_VERSION",
    "FindingResult",
    "LocalizationResult",
    "SavedFinding",
    "SavedResult",
    "read_result",
    "select_findings",
]

#: Version of the ``findings.json`` layout.
FINDINGS_FORMAT_VERSION = 1


@dataclass
class FindingResult:
    """One finding on one radiograph. ``heatmap``/``mask`` are None when not selected;
    both are on the radiograph's pixel grid."""

    finding: Finding
    probability: float
    threshold: float
    heatmap: np.ndarray | None = None
    mask: np.ndarray | None = None
    boxes: list[Box] = field(default_factory=list)
    #: DICOM Segment Algorithm Type: AUTOMATIC as the model made it, SEMIAUTOMATIC
    #: once a person edited the mask (Slicer's Segment Editor)
    algorithm_type: str = "AUTOMATIC"
    #: the radiograph with this finding's disease map removed, in [0, 1] (only for
    #: generative methods, which can heal an image)
    healed: np.ndarray | None = None
    #: ``heatmap`` at the resolution the model made it (its feature grid, stored
    #: orientation), scaled like ``heatmap``: ``resample_heatmap(heatmap_grid,
    #: radiograph.size)`` is ``heatmap`` (see :mod:`~CXRWeakLocLib.core.heatmaps`);
    #: None when only the full-resolution map exists
    heatmap_grid: np.ndarray | None = None

    @property
    def name(self) -> str:
        return self.finding.name

    @property
    def positive(self) -> bool:
        return self.probability >= self.threshold

    @property
    def mask_area_px(self) -> int:
        return 0 if self.mask is None else int(self.mask.sum())


@dataclass
class LocalizationResult:
    """All findings of one radiograph under one model."""

    model_name: str
    model_version: str
    method: str
    mask_rule: MaskRule
    findings: list[FindingResult]

    @property
    def localized(self) -> list[FindingResult]:
        """The findings that carry a heatmap and a mask (the exported ones)."""
        return [f for f in self.findings if f.heatmap is not None]

    def get(self, name: str) -> FindingResult:
        wanted = finding_by_name(name).name
        for result in self.findings:
            if result.name == wanted:
                return result
        raise KeyError(wanted)


def select_findings(selection: str | Sequence[str], card: ModelCard) -> str | list[str]:
    """Validate ``positive``, ``all`` or finding names against the model's findings."""
    if isinstance(selection, str) and selection in ("positive", "all"):
        return selection
    names = selection.split(",") if isinstance(selection, str) else list(selection)
    chosen = []
    for name in (n.strip() for n in names if n.strip()):
        finding = finding_by_name(name)
        if finding.name not in card.findings:
            raise CXRWeakLocError(
                f"model {card.name} does not know {finding.name} (it knows: "
                f"{', '.join(card.findings)})"
            )
        chosen.append(finding.name)
    if not chosen:
        raise CXRWeakLocError("no findings selected")
    return chosen


@dataclass(frozen=True)
class SavedFinding:
    """One finding as ``findings.json`` records it (masks and heatmaps live in files)."""

    name: str
    probability: float
    threshold: float
    positive: bool
    exported: bool
    mask_area_px: int | None = None
    mask_area_mm2: float | None = None
    boxes_xywh: tuple[tuple[int, int, int, int], ...] = ()


@dataclass(frozen=True)
class SavedResult:
    """A result folder read back: its files, model, mask rule, input and findings."""

    layout: OutputLayout
    model: dict
    mask_rule: MaskRule
    input: dict
    findings: tuple[SavedFinding, ...]
    files: tuple[str, ...]

    @property
    def exported(self) -> list[SavedFinding]:
        """The findings with a heatmap file and a segment."""
        return [f for f in self.findings if f.exported]

    @property
    def spacing_known(self) -> bool:
        return bool(self.input.get("spacing_known"))


def read_result(folder: Path) -> SavedResult:
    """Read ``folder/findings.json`` (files in a result folder are named after the folder);
    a :class:`CXRWeakLocError` if it is not a result."""
    folder = Path(folder)
    path = OutputLayout(folder, folder.name).findings_json
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        version = record.get("format_version")
        if version != FINDINGS_FORMAT_VERSION:
            raise ValueError(f"format_version {version!r} is not {FINDINGS_FORMAT_VERSION}")
        findings = tuple(
            SavedFinding(name=finding_by_name(f["name"]).name,
                         probability=float(f["probability"]), threshold=float(f["threshold"]),
                         positive=bool(f["positive"]), exported=bool(f["exported"]),
                         mask_area_px=f.get("mask_area_px"),
                         mask_area_mm2=f.get("mask_area_mm2"),
                         boxes_xywh=tuple(tuple(box) for box in f.get("boxes_xywh", ())))
            for f in record["findings"])
        return SavedResult(OutputLayout(folder, folder.name), dict(record["model"]),
                           MaskRule(**record["mask_rule"]), dict(record["input"]), findings,
                           tuple(record.get("files", ())))
    except OSError as error:
        raise CXRWeakLocError(f"{path}: cannot read ({error.strerror or error})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError,
            ValueError) as error:
        raise CXRWeakLocError(f"{path}: not a CXRWeakLoc result ({error})") from None

