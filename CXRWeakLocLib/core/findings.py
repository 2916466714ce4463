"""The finding vocabulary: names, aliases, SNOMED CT codes, display colours, symmetry.

Every part of the engine names findings through this module, so a label read from
NIH's box file (``Infiltrate``), CheXpert (``Pleural Effusion``) or a user's command
line (``pleural_effusion``) all resolve to the same :class:`Finding`.

SNOMED CT concept ids: where DICOM PS3.16 lists the concept (checked against
``pydicom.sr.codedict``, which is generated from PS3.16), its code and meaning are
used as DICOM gives them; the others are SNOMED CT International concept ids as
public SNOMED-coded data use them (no SNOMED CT release is available offline to check
them against). Where no id could be confirmed, the finding has a code of our own
private scheme :data:`PRIVATE_SCHEME` rather than a guess: Pleural_Thickening carried
44608003 until 2026-11-22, which public SNOMED-coded data use for "Blood typing, RH
typing" (a procedure). Cards written with such a retired code still load.
``Resources/Terminology/CXRWeakLoc.term.json`` carries the same codes for Slicer; a test
keeps the two in step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import CXRWeakLocError

__all__ = [
    "CHESTXRAY14",
    "BOXED_FINDINGS",
    "Finding",
    "UnknownFindingError",
    "finding_by_name",
    "CATEGORY",
    "PRIVATE_SCHEME",
]


@dataclass(frozen=True)
class Code:
    """A coded concept (value, coding scheme, meaning), as DICOM and Slicer use it."""

    value: str
    scheme: str
    meaning: str


#: DICOM private coding scheme (designator prefix "99") of the concepts CXRWeakLoc defines;
#: exports that use it describe it (DICOM-SEG: Coding Scheme Identification Sequence).
PRIVATE_SCHEME = "99CXRWL"

#: Segment category of every finding (DICOM CID 7150 / Slicer terminology).
CATEGORY = Code("49755003", "SCT", "Morphologically Abnormal Structure")


@dataclass(frozen=True)
class Finding:
    """One radiological finding a model can localise."""

    name: str
    code: Code
    color: tuple[int, int, int]
    symmetric: bool = True
    aliases: tuple[str, ...] = ()
    #: codes this finding carried in earlier versions (cards that hold them still load)
    retired_codes: tuple[str, ...] = ()

    @property
    def color_float(self) -> tuple[float, float, float]:
        """Display colour as RGB in 0-1 (Slicer's convention)."""
        return tuple(c / 255.0 for c in self.color)  # type: ignore[return-value]


def _f(name, value, meaning, color, symmetric=True, aliases=(), scheme="SCT", retired=()):
    return Finding(name, Code(value, scheme, meaning), color, symmetric, tuple(aliases),
                   tuple(retired))


#: The 14 ChestX-ray14 findings in NIH's order (the label order of every shipped model).
CHESTXRAY14: tuple[Finding, ...] = (
    _f("Atelectasis", "46621007", "Atelectasis", (230, 159, 0)),
    _f("Cardiomegaly", "287272002", "Cardiomegaly", (213, 94, 0), symmetric=False,
       aliases=("Enlarged Heart",)),
    _f("Effusion", "60046008", "Pleural effusion", (0, 114, 178),
       aliases=("Pleural Effusion",)),
    _f("Infiltration", "409609008", "Radiologic infiltrate of lung", (240, 228, 66),
       aliases=("Infiltrate",)),
    _f("Mass", "4147007", "Mass", (204, 121, 167), aliases=("Lung Lesion",)),
    _f("Nodule", "27925004", "Nodule", (86, 180, 233)),
    _f("Pneumonia", "233604007", "Pneumonia", (0, 158, 115)),
    _f("Pneumothorax", "36118008", "Pneumothorax", (220, 50, 32)),
    _f("Consolidation", "95436008", "Lung consolidation", (153, 79, 0)),
    _f("Edema", "19242006", "Pulmonary edema", (100, 143, 255)),
    _f("Emphysema", "87433001", "Pulmonary emphysema", (120, 94, 240)),
    _f("Fibrosis", "112674009", "Fibrosis", (254, 97, 0)),
    _f("Pleural_Thickening", "PLEURAL_THICK", "Pleural thickening", (255, 176, 0),
       aliases=("Pleural Thickening", "Pleural Other"), scheme=PRIVATE_SCHEME,
       retired=("44608003",)),
    _f("Hernia", "84089009", "Hiatal hernia", (127, 127, 127), symmetric=False),
)

#: Findings with expert boxes in NIH's BBox_List_2017.csv (8 of the 14).
BOXED_FINDINGS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration",
    "Mass", "Nodule", "Pneumonia", "Pneumothorax",
)

#: Findings of other collections that are not in ChestX-ray14.
EXTRA_FINDINGS: tuple[Finding, ...] = (
    _f("Tuberculosis", "56717001", "Tuberculosis", (178, 34, 34), aliases=("TB",)),
    _f("COVID-19", "840539006", "Disease caused by severe acute respiratory syndrome coronavirus 2",
       (148, 0, 211), aliases=("COVID19",)),
)


class UnknownFindingError(CXRWeakLocError, KeyError):
    """A finding name that no vocabulary entry or alias matches (a user-facing error)."""

    def __str__(self) -> str:  # KeyError quotes its message; a user should not see quotes
        return str(self.args[0])


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_BY_KEY: dict[str, Finding] = {}
for _finding in CHESTXRAY14 + EXTRA_FINDINGS:
    for _name in (_finding.name, *_finding.aliases):
        _BY_KEY[_key(_name)] = _finding


def finding_by_name(name: str) -> Finding:
    """Resolve a finding name or alias, ignoring case, spaces, ``_`` and ``-``."""
    try:
        return _BY_KEY[_key(name)]
    except KeyError:
        known = ", ".join(f.name for f in CHESTXRAY14 + EXTRA_FINDINGS)
        raise UnknownFindingError(f"unknown finding {name!r} (known: {known})") from None
