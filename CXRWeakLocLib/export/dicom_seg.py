"""``<stem>.SEG.dcm``: a DICOM Segmentation of the localised findings (DICOM input only).

Written with highdicom (Slicer's dcmqi cannot write SEGs of CR/DX images): BINARY,
one segment per localised finding, coded in SNOMED CT with the category
"Morphologically Abnormal Structure", algorithm type AUTOMATIC identified by the
model's name, method and version, referencing the source image.

Every localised finding keeps its segment even when its mask is empty (empty
frames are written, not omitted), so segment numbers match ``findings.json`` and
the ``.seg.nrrd``. With no localised finding no SEG is written.

The SEG copies the patient and study of the source. A source value that is
invalid for its VR in an optional (Type 3) attribute, such as a Patient's Age of
``62`` instead of ``062Y``, is dropped from the SEG rather than repeated.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code as DicomCode

from .. import __version__
from ..core.findings import CATEGORY, PRIVATE_SCHEME, Code
from ..core.radiograph import Radiograph
from ..core.results import LocalizationResult

__all__ = ["write_dicom_seg"]

logger = logging.getLogger(__name__)

MANUFACTURER = "CXRWeakLoc"
_AGE = re.compile(r"^\d{3}[DWMY]$")


def _dicom_code(code: Code) -> DicomCode:
    return DicomCode(code.value, code.scheme, code.meaning)


def _segment(number: int, item, result: LocalizationResult) -> hd.seg.SegmentDescription:
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"{result.model_name} ({result.method})",
        family=codes.cid7162.ArtificialIntelligence,
        version=result.model_version,
    )
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=item.name,
        segmented_property_category=_dicom_code(CATEGORY),
        segmented_property_type=_dicom_code(item.finding.code),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues[item.algorithm_type],
        algorithm_identification=algorithm,
        tracking_uid=hd.UID(),
        tracking_id=item.name,
        display_color=hd.color.CIELabColor.from_rgb(*item.finding.color),
    )


def _private_scheme() -> Dataset:
    """Coding Scheme Identification item of :data:`~CXRWeakLocLib.findings.PRIVATE_SCHEME`."""
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = "CXRWeakLoc findings"
    item.CodingSchemeResponsibleOrganization = "CXRWeakLoc"
    return item


def _pixel_measures(radiograph: Radiograph) -> hd.PixelMeasuresSequence:
    column_spacing, row_spacing = radiograph.spacing
    return hd.PixelMeasuresSequence(
        pixel_spacing=(row_spacing, column_spacing), slice_thickness=1.0
    )


def write_dicom_seg(result: LocalizationResult, radiograph: Radiograph, path: Path) -> bool:
    """Write the SEG; False (nothing written) for non-DICOM input or no localised finding."""
    source: Dataset | None = radiograph.dicom  # type: ignore[assignment]
    localized = result.localized
    if source is None or not localized:
        return False
    masks = np.stack([item.mask for item in localized], axis=-1)[np.newaxis].astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=[source],
        pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[
            _segment(number, item, result) for number, item in enumerate(localized, start=1)
        ],
        series_instance_uid=hd.UID(),
        series_number=int(source.get("SeriesNumber") or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=result.model_name,
        software_versions=__version__,
        device_serial_number="0",
        series_description=f"CXRWeakLoc {result.method} localisation",
        content_label="FINDINGS",
        content_description=f"{result.model_name} {result.model_version}, mask {result.mask_rule}",
        pixel_measures=_pixel_measures(radiograph),
        omit_empty_frames=False,
    )
    if any(item.finding.code.scheme == PRIVATE_SCHEME for item in localized):
        seg.CodingSchemeIdentificationSequence = [_private_scheme()]
    if "PatientOrientation" in source:  # Type 2C that highdicom leaves out
        seg.PatientOrientation = source.PatientOrientation
    if "PatientAge" in seg and not _AGE.match(str(seg.PatientAge)):
        logger.info("%s: Patient's Age %r is invalid; left out of the SEG",
                    radiograph.source, str(seg.PatientAge))
        del seg.PatientAge
    seg.save_as(path)
    return True
