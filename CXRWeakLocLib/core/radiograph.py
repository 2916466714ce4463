"""Reading chest radiographs: every supported format into one :class:`Radiograph`.

Nothing else in the engine parses image files. Every refusal is a
:class:`~CXRWeakLocLib.errors.RadiographError` whose message names the file and the
reason on one line.

Pixel convention: ``pixels`` is float32 in [0, 1], rows x columns, in the usual
display polarity (bone and air bright and dark as a radiologist reads them), i.e.
DICOM MONOCHROME1 is inverted, modality and VOI LUTs are applied. ``pixels`` keep the
stored orientation (every export lines up with the stored image); a DICOM whose
Patient Orientation says it is stored mirrored, upside down or turned carries a
:class:`DisplayOrientation` that brings it to the conventional chest display (the
patient's right on the viewer's left, head at the top), which is what the models saw
in training.

Intensity mapping to [0, 1]: a DICOM window maps its own interval, a VOI LUT
Sequence maps the range of its entries, colour images map their full bit depth,
8- and 16-bit PNG/JPEG map their full range, and anything else (DICOM without VOI,
NRRD/NIfTI/MHA) maps its minimum and maximum.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import RadiographError
from .files import sha256_of

__all__ = [
    "DisplayOrientation",
    "display_orientation",
    "MAX_PIXELS",
    "MIN_SIDE",
    "SUPPORTED_SUFFIXES",
    "Radiograph",
    "read_radiograph",
    "find_radiographs",
    "file_stem",
]

logger = logging.getLogger(__name__)

#: Largest image read (pixels); bigger files are refused before decoding, so memory
#: stays bounded whatever the header claims. 50 MP is well above any detector
#: (a 43 x 43 cm DR panel at 0.1 mm is 18.5 MP).
MAX_PIXELS = 50_000_000
#: Smallest side accepted, in pixels.
MIN_SIDE = 32
#: Modalities accepted from DICOM (computed, digital and general radiography,
#: and secondary captures of radiographs).
RADIOGRAPH_MODALITIES = {"CR", "DX", "RG", "DR", "OT"}
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
#: ITU-R 601 luma, the weights PIL's ``convert("L")`` uses.
_LUMA = np.array([0.299, 0.587, 0.114])
SUPPORTED_SUFFIXES = (
    ".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".nrrd", ".nhdr", ".nii", ".nii.gz",
    ".mha", ".mhd",
)
_SITK_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


@dataclass(frozen=True)
class DisplayOrientation:
    """How a stored image reaches the conventional chest display, and back.

    ``to_display`` transposes (if ``transpose``), then flips the columns (if
    ``flip_columns``) and the rows (if ``flip_rows``); ``from_display`` undoes it.
    The identity leaves arrays untouched.
    """

    transpose: bool = False
    flip_columns: bool = False
    flip_rows: bool = False

    @property
    def is_identity(self) -> bool:
        return not (self.transpose or self.flip_columns or self.flip_rows)

    def to_display(self, array: np.ndarray) -> np.ndarray:
        """A stored-orientation array (rows, columns, ...) in display orientation."""
        if self.transpose:
            array = np.swapaxes(array, 0, 1)
        if self.flip_columns:
            array = array[:, ::-1]
        if self.flip_rows:
            array = array[::-1]
        return np.ascontiguousarray(array)

    def from_display(self, array: np.ndarray) -> np.ndarray:
        """A display-orientation array back in the stored orientation."""
        if self.flip_rows:
            array = array[::-1]
        if self.flip_columns:
            array = array[:, ::-1]
        if self.transpose:
            array = np.swapaxes(array, 0, 1)
        return np.ascontiguousarray(array)

    def display_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(rows, columns) in display orientation of a stored ``size``."""
        return (size[1], size[0]) if self.transpose else size

    def __str__(self) -> str:
        steps = [name for name, on in (("transposed", self.transpose),
                                       ("columns flipped", self.flip_columns),
                                       ("rows flipped", self.flip_rows)) if on]
        return ", ".join(steps) or "as stored"


def display_orientation(patient_orientation) -> DisplayOrientation:
    """The :class:`DisplayOrientation` of a DICOM Patient Orientation (0020,0020).

    Its two values name the patient direction along a row and down a column (the
    first letter dominates: ``"LP"`` is mostly left). The conventional frontal chest
    display is ``L\\F``; ``R\\F`` is mirrored, ``L\\H`` upside down, ``F\\L`` turned.
    Anything else (missing, a lateral view's ``A``/``P``) is left as stored.
    """
    values = [str(v).strip().upper() for v in (patient_orientation or [])]
    if len(values) != 2 or not all(values):
        return DisplayOrientation()
    along_row, down_column = values[0][0], values[1][0]
    transpose = along_row in "HF" and down_column in "LR"
    if transpose:
        along_row, down_column = down_column, along_row
    if along_row not in "LR" or down_column not in "HF":
        return DisplayOrientation()
    return DisplayOrientation(transpose, along_row == "R", down_column == "H")


@dataclass
class Radiograph:
    """A 2-D chest radiograph with its geometry and, for DICOM input, its dataset.

    Geometry follows ITK/Slicer (LPS): pixel (i = column, j = row) sits at
    ``origin + direction @ (i * spacing[0], j * spacing[1], 0)``.
    """

    pixels: np.ndarray
    spacing: tuple[float, float] = (1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    spacing_known: bool = False
    source: Path | None = None
    dicom: object | None = None  # pydicom.Dataset when read from DICOM
    sha256: str = ""
    #: how ``pixels`` reach the conventional chest display (DICOM Patient Orientation)
    orientation: DisplayOrientation = field(default_factory=DisplayOrientation)

    def __post_init__(self) -> None:
        if self.pixels.ndim != 2:
            raise ValueError(f"pixels must be 2-D, got shape {self.pixels.shape}")
        self.pixels = np.ascontiguousarray(self.pixels, dtype=np.float32)

    @property
    def size(self) -> tuple[int, int]:
        """(rows, columns) of the image as stored."""
        return self.pixels.shape  # type: ignore[return-value]

    @property
    def stem(self) -> str:
        """File name without its image suffixes (``a.nii.gz`` -> ``a``)."""
        return "radiograph" if self.source is None else file_stem(self.source)

    @property
    def pixel_area_mm2(self) -> float:
        """Area of one pixel in mm^2 (1.0 when the spacing is unknown)."""
        return float(self.spacing[0] * self.spacing[1])


def file_stem(path: Path) -> str:
    """File name without its image suffixes (``a.nii.gz`` -> ``a``, ``IM0001`` kept)."""
    name = path.name
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def read_radiograph(path: str | Path) -> Radiograph:
    """Read a DICOM, PNG, JPEG, NRRD, NIfTI or MetaImage chest radiograph.

    Raises:
        RadiographError: with a one-line reason, for anything that is not a readable
            2-D radiograph (missing, empty, truncated, 3-D, multi-frame, CT/MR, too
            small or too large, NaN pixels, ...).
    """
    path = Path(path)
    if not path.exists():
        raise RadiographError(f"{path}: no such file")
    if path.is_dir():
        raise RadiographError(f"{path}: is a folder, not an image file")
    try:
        with path.open("rb") as handle:
            data_head = handle.read(132)
    except OSError as error:
        raise RadiographError(f"{path}: cannot be read ({error.strerror})") from None
    if not data_head:
        raise RadiographError(f"{path}: empty file")

    name = path.name.lower()
    if data_head[128:132] == b"DICM" or name.endswith((".dcm", ".dicom")):
        reader = _read_dicom
    elif data_head.startswith(b"\x89PNG") or data_head.startswith(b"\xff\xd8"):
        reader = _read_pil
    elif name.endswith(_SITK_SUFFIXES):
        reader = _read_sitk
    elif name.endswith((".png", ".jpg", ".jpeg")):
        reader = _read_pil
    else:
        raise RadiographError(
            f"{path}: unsupported file type (expected one of {', '.join(SUPPORTED_SUFFIXES)})"
        )
    radiograph = reader(path)
    radiograph.source = path
    radiograph.sha256 = sha256_of(path)
    return radiograph


def find_radiographs(inputs: list[str | Path]) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of candidate files.

    Folders contribute files with a supported suffix, and DICOM files without one
    (detected by the ``DICM`` preamble); hidden files and folders are skipped.
    Paths given explicitly are kept whatever their suffix, so that a wrong file
    gets its own error rather than vanishing.
    """
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            for candidate in sorted(p for p in item.rglob("*") if p.is_file()):
                if any(part.startswith(".") for part in candidate.relative_to(item).parts):
                    continue
                if candidate.name.lower().endswith(SUPPORTED_SUFFIXES) or _has_dicm(candidate):
                    found.append(candidate)
        else:
            found.append(item)
    return found


def _has_dicm(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _check_size(path: Path, rows: int, columns: int) -> None:
    if rows * columns > MAX_PIXELS:
        raise RadiographError(
            f"{path}: image is {columns}x{rows} pixels, more than the "
            f"{MAX_PIXELS // 1_000_000}-megapixel limit"
        )
    if min(rows, columns) < MIN_SIDE:
        raise RadiographError(
            f"{path}: image is {columns}x{rows} pixels, too small for a radiograph "
            f"(at least {MIN_SIDE}x{MIN_SIDE})"
        )


def _to_unit_range(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly onto [0, 1], clipping; an empty interval thresholds."""
    values = np.asarray(values, dtype=np.float64)
    if high <= low:
        return (values > low).astype(np.float32)
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _min_max(values: np.ndarray) -> np.ndarray:
    return _to_unit_range(values, float(values.min()), float(values.max()))


# --- DICOM -------------------------------------------------------------------------


def _read_dicom(path: Path) -> Radiograph:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        raise RadiographError(f"{path}: not a DICOM file (no DICM preamble)") from None
    except Exception as error:  # truncated or corrupt headers raise many types
        raise RadiographError(f"{path}: unreadable DICOM ({_one_line(error)})") from None

    modality = str(ds.get("Modality", "")).upper()
    if modality and modality not in RADIOGRAPH_MODALITIES:
        raise RadiographError(
            f"{path}: modality {modality} is not a radiograph (expected CR or DX)"
        )
    if "PixelData" not in ds:
        raise RadiographError(f"{path}: DICOM has no pixel data")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise RadiographError(
            f"{path}: multi-frame DICOM ({frames} frames); one radiograph expected"
        )
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    colour = int(ds.get("SamplesPerPixel", 1) or 1) == 3
    if photometric not in _MONOCHROME and not colour:
        raise RadiographError(
            f"{path}: photometric interpretation {photometric or 'missing'} is not supported"
        )
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    _check_size(path, rows, columns)

    try:
        raw = ds.pixel_array
    except Exception as error:  # short pixel data, missing codec, corrupt stream, ...
        raise RadiographError(f"{path}: cannot decode pixel data ({_one_line(error)})") from None
    if raw.shape[:2] != (rows, columns):
        raise RadiographError(
            f"{path}: decoded pixels have shape {raw.shape}, expected {rows}x{columns}"
        )
    if colour:  # RGB secondary capture; YBR is converted to RGB by pydicom
        top = 2 ** int(ds.get("BitsStored", 8)) - 1
        pixels = _to_unit_range(raw[..., :3] @ _LUMA, 0.0, float(top))
    else:
        pixels = _dicom_display_values(path, ds, raw)
        if photometric == "MONOCHROME1":
            pixels = 1.0 - pixels

    spacing, known = _dicom_spacing(ds)
    orientation = display_orientation(ds.get("PatientOrientation"))
    if not orientation.is_identity:
        logger.info("%s: Patient Orientation %s: the model sees it %s", path,
                    "\\".join(ds.PatientOrientation), orientation)
    return Radiograph(pixels=pixels, spacing=spacing, spacing_known=known, dicom=ds,
                      orientation=orientation)


def _dicom_display_values(path: Path, ds, raw: np.ndarray) -> np.ndarray:
    """Modality LUT (rescale), then VOI LUT or window, to [0, 1].

    An invalid VOI (zero width, unknown function, malformed LUT) is ignored with a
    warning and the modality values are mapped by their minimum and maximum.
    """
    from pydicom.pixels import apply_modality_lut

    values = apply_modality_lut(raw, ds).astype(np.float64)
    try:
        if ds.get("VOILUTSequence"):
            return _apply_voi_lut_sequence(values, ds)
        if "WindowCenter" in ds and "WindowWidth" in ds:
            return _apply_window(values, ds)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError,
            NotImplementedError) as error:
        logger.warning("%s: ignoring invalid VOI LUT/window (%s)", path, _one_line(error))
    return _min_max(values)


def _apply_voi_lut_sequence(values: np.ndarray, ds) -> np.ndarray:
    """The first VOI LUT, normalised by the range of its entries.

    Using the entries' range rather than the nominal bit depth of the LUT
    descriptor copes with the common 16-bit descriptor holding 12-bit data.
    """
    from pydicom.pixels import apply_voi

    descriptor = ds.VOILUTSequence[0].LUTDescriptor
    entries = int(descriptor[0]) or 2**16  # PS3.3 C.11.2.1.1: 0 means 65536 entries
    first = int(descriptor[1])
    lut = apply_voi(np.arange(first, first + entries), ds).astype(np.float64)
    indices = np.clip(np.rint(values) - first, 0, entries - 1).astype(np.intp)
    return _to_unit_range(lut[indices], float(lut.min()), float(lut.max()))


def _apply_window(values: np.ndarray, ds) -> np.ndarray:
    """The first window (PS3.3 C.11.2.1.2), mapped to [0, 1] rather than a bit range."""
    center = _first_value(ds, "WindowCenter")
    width = _first_value(ds, "WindowWidth")
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if function == "LINEAR":
        if width < 1:
            raise ValueError(f"window width {width} < 1")
        low = center - 0.5 - (width - 1) / 2
        return _to_unit_range(values, low, low + width - 1)
    if width <= 0:
        raise ValueError(f"window width {width} <= 0")
    if function == "LINEAR_EXACT":
        return _to_unit_range(values, center - width / 2, center + width / 2)
    if function == "SIGMOID":
        return (1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))).astype(np.float32)
    raise ValueError(f"unknown VOI LUT function {function}")


def _first_value(ds, keyword: str) -> float:
    """The first value of a possibly multi-valued numeric DICOM element."""
    element = ds[keyword]
    return float(element.value[0] if element.VM > 1 else element.value)


def _dicom_spacing(ds) -> tuple[tuple[float, float], bool]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) == 2 and float(value[0]) > 0 and float(value[1]) > 0:
            row_spacing, column_spacing = float(value[0]), float(value[1])
            return (column_spacing, row_spacing), True
    return (1.0, 1.0), False


# --- PNG / JPEG --------------------------------------------------------------------


def _read_pil(path: Path) -> Radiograph:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError:
        raise RadiographError(
            f"{path}: image is more than the {MAX_PIXELS // 1_000_000}-megapixel limit"
        ) from None
    except UnidentifiedImageError:
        raise RadiographError(f"{path}: not a PNG or JPEG image") from None
    except OSError as error:
        raise RadiographError(f"{path}: unreadable image ({_one_line(error)})") from None

    with image:
        columns, rows = image.size
        _check_size(path, rows, columns)
        if getattr(image, "n_frames", 1) > 1:
            raise RadiographError(f"{path}: animated/multi-frame image; one radiograph expected")
        try:
            image.load()
        except Exception as error:  # truncated data raises OSError, SyntaxError, ...
            raise RadiographError(
                f"{path}: truncated or corrupt image ({_one_line(error)})"
            ) from None
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit greyscale PNG
            array = np.asarray(image, dtype=np.float64)
            pixels = _to_unit_range(array, 0.0, max(65535.0, float(array.max())))
        else:
            grey = image.convert("L") if image.mode != "L" else image
            pixels = np.asarray(grey, dtype=np.float32) / 255.0
    return Radiograph(pixels=pixels)


# --- NRRD / NIfTI / MetaImage ---------------------------------------------------------


def _read_sitk(path: Path) -> Radiograph:
    import SimpleITK as sitk  # noqa: N813

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise RadiographError(f"{path}: unreadable image ({_sitk_reason(error)})") from None
    size = reader.GetSize()
    if len(size) not in (2, 3) or (len(size) == 3 and size[2] > 1):
        raise RadiographError(
            f"{path}: {len(size)}-D image of size {'x'.join(map(str, size))}; "
            "a 2-D radiograph is expected"
        )
    _check_size(path, size[1], size[0])
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise RadiographError(f"{path}: unreadable image ({_sitk_reason(error)})") from None
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    components = image.GetNumberOfComponentsPerPixel()
    if components > 1:
        array = array[..., :3] @ _LUMA if components >= 3 else array[..., 0]
    array = array.reshape(size[1], size[0])
    if not np.isfinite(array).all():
        raise RadiographError(f"{path}: image contains NaN or infinite values")

    spacing = image.GetSpacing()
    origin = tuple(image.GetOrigin()) + (0.0,) * (3 - image.GetDimension())
    direction = np.eye(3)
    dim = image.GetDimension()
    direction[:dim, :dim] = np.asarray(image.GetDirection()).reshape(dim, dim)
    return Radiograph(
        pixels=_min_max(array),
        spacing=(float(spacing[0]), float(spacing[1])),
        origin=tuple(float(v) for v in origin[:3]),
        direction=direction,
        spacing_known=True,
    )


def _sitk_reason(error: RuntimeError) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:200] if text else type(error).__name__
