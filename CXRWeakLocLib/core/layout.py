"""Where each export of one radiograph lives: ``OUT/<stem>/...``.

The CLI, the Slicer module and the batch resume logic all use these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["OutputLayout"]


@dataclass(frozen=True)
class OutputLayout:
    """File names of one radiograph's results inside ``folder`` (= ``OUT/<stem>``)."""

    folder: Path
    stem: str

    @classmethod
    def for_input(cls, out_dir: Path, stem: str) -> OutputLayout:
        return cls(Path(out_dir) / stem, stem)

    @property
    def segmentation(self) -> Path:
        return self.folder / f"{self.stem}.seg.nrrd"

    def heatmap(self, finding: str) -> Path:
        return self.folder / f"{self.stem}.{finding}.heatmap.nrrd"

    def healed(self, finding: str, extension: str) -> Path:
        """The healed image of a finding (generative methods): ``.nrrd`` or ``.png``."""
        return self.folder / f"{self.stem}.{finding}.healed{extension}"

    @property
    def dicom_seg(self) -> Path:
        return self.folder / f"{self.stem}.SEG.dcm"

    @property
    def overview(self) -> Path:
        return self.folder / f"{self.stem}.png"

    @property
    def findings_json(self) -> Path:
        return self.folder / "findings.json"
