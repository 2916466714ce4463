"""What the module registers with Slicer at start-up: its findings terminology (so the
Segment Editor offers the findings with their codes) and its sample radiograph (in
the Sample Data module).

The sample is SYNTHETIC (``cxrweakloc sample``: drawn by the engine, no patient's
image); no real radiograph ships with the module.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from . import ENGINE_ROOT
from .i18n import tr as _
from .logic import SAMPLE_FILE

__all__ = ["SAMPLE_CATEGORY", "SAMPLE_NAME", "TERMINOLOGY_FILE", "registerSampleData",
           "registerTerminology"]

#: Installed beside the engine (``ENGINE_PYTHON_RESOURCES``), at the repository root in
#: a source tree.
TERMINOLOGY_FILE = ENGINE_ROOT / "Resources" / "Terminology" / "CXRWeakLoc.term.json"
SAMPLE_CATEGORY = "CXRWeakLoc"
SAMPLE_NAME = "CXRWeakLocSyntheticChest"


def registerTerminology(terminologiesLogic, path: Path = TERMINOLOGY_FILE) -> str:
    """Load the findings terminology into Slicer's Terminologies logic; its context name."""
    context = terminologiesLogic.LoadTerminologyFromFile(str(path))
    if not context:
        raise RuntimeError(_("{path}: Slicer could not load this terminology").format(path=path))
    return context


def registerSampleData(sampleDataLogic, path: Path = SAMPLE_FILE) -> None:
    """Offer the sample radiograph in the Sample Data module (``SampleDataLogic``)."""
    if hasattr(sampleDataLogic, "registerCustomSampleDataCategory"):  # Slicer 5.10+
        sampleDataLogic.registerCustomSampleDataCategory(SAMPLE_CATEGORY, title=_("CXRWeakLoc"))
    sampleDataLogic.registerCustomSampleDataSource(
        category=SAMPLE_CATEGORY,
        sampleName=SAMPLE_NAME,
        uris=path.as_uri(),
        fileNames=path.name,
        nodeNames=SAMPLE_NAME,
        thumbnailFileName=str(path),
        checksums=f"SHA256:{hashlib.sha256(path.read_bytes()).hexdigest()}",
    )
