"""Reading radiographs: DICOM, PNG/JPEG and SimpleITK formats, and every refusal."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk  # noqa: N813
from conftest import mirrored_copy_of_the_real_dicom, shared_path
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from CXRWeakLocLib.core.errors import RadiographError
from CXRWeakLocLib.core.radiograph import (
    MAX_PIXELS,
    DisplayOrientation,
    display_orientation,
    file_stem,
    find_radiographs,
    read_radiograph,
)

ROWS, COLUMNS = 40, 56  # non-square, so that a transposition shows
LUMA = np.array([0.299, 0.587, 0.114])
RNG = np.random.default_rng(7)


def ramp(top: int, dtype=np.uint16, low: int = 0) -> np.ndarray:
    """A ROWS x COLUMNS image running from ``low`` to ``top`` inclusive."""
    return np.linspace(low, top, ROWS * COLUMNS).round().astype(dtype).reshape(ROWS, COLUMNS)


def make_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    bits_stored: int | None = None,
    photometric: str = "MONOCHROME2",
    sop_class: str = DigitalXRayImageStorageForPresentation,
    modality: str = "DX",
    transfer_syntax: str = ExplicitVRLittleEndian,
    **elements,
) -> Path:
    """Write a minimal valid DICOM file with ``pixels`` and extra ``elements``."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    ds.PatientName = "Phantom^Chest"
    ds.PatientID = "CXR-TEST"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.set_pixel_data(pixels, photometric, bits_stored or pixels.itemsize * 8)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    if transfer_syntax != ExplicitVRLittleEndian:
        ds.compress(transfer_syntax, generate_instance_uid=False)
    ds.save_as(path, enforce_file_format=True)
    return path


def refusal(path: Path) -> str:
    """The RadiographError message for ``path``, checked to be one line naming it."""
    with pytest.raises(RadiographError) as info:
        read_radiograph(path)
    message = str(info.value)
    assert "\n" not in message
    assert path.name in message
    return message.lower()


def linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 LINEAR window, onto [0, 1]."""
    return np.clip(((values - (center - 0.5)) / (width - 1)) + 0.5, 0.0, 1.0)


# --- DICOM -------------------------------------------------------------------------


def test_dicom_8_bit(tmp_path):
    raw = ramp(255, np.uint8)
    path = make_dicom(tmp_path / "chest.dcm", raw)
    radiograph = read_radiograph(path)
    assert radiograph.size == (ROWS, COLUMNS)
    assert radiograph.pixels.dtype == np.float32
    np.testing.assert_allclose(radiograph.pixels, raw / 255.0, atol=1e-6)
    assert isinstance(radiograph.dicom, pydicom.Dataset)
    assert radiograph.dicom.PatientID == "CXR-TEST"
    assert radiograph.source == path
    assert radiograph.stem == "chest"
    assert len(radiograph.sha256) == 64
    assert not radiograph.spacing_known


def test_dicom_16_bit_with_12_bits_stored(tmp_path):
    raw = RNG.integers(100, 4000, size=(ROWS, COLUMNS), dtype=np.uint16)
    radiograph = read_radiograph(make_dicom(tmp_path / "a.dcm", raw, bits_stored=12))
    expected = (raw - raw.min()) / (raw.max() - raw.min())
    np.testing.assert_allclose(radiograph.pixels, expected, atol=1e-6)


def test_dicom_signed_pixels_keep_their_order(tmp_path):
    raw = ramp(2000, np.int16, low=-2000)
    radiograph = read_radiograph(make_dicom(tmp_path / "signed.dcm", raw, bits_stored=16))
    assert radiograph.dicom.PixelRepresentation == 1
    np.testing.assert_allclose(radiograph.pixels, (raw + 2000) / 4000.0, atol=1e-6)


def test_dicom_rescale_is_applied_before_the_window(tmp_path):
    raw = ramp(4095)
    path = make_dicom(
        tmp_path / "rescaled.dcm", raw, bits_stored=12,
        RescaleSlope=0.5, RescaleIntercept=-100, WindowCenter=500, WindowWidth=1001,
    )
    radiograph = read_radiograph(path)
    expected = linear_window(raw * 0.5 - 100, 500, 1001)
    np.testing.assert_allclose(radiograph.pixels, expected, atol=1e-6)
    # the window cuts both ends of the rescaled range: -100..1947.5 is wider than it
    assert radiograph.pixels.min() == 0.0 and radiograph.pixels.max() == 1.0
    assert 0.2 < radiograph.pixels.mean() < 0.8


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("LINEAR", lambda v: linear_window(v, 2000, 1000)),
        ("LINEAR_EXACT", lambda v: np.clip((v - 1500) / 1000, 0, 1)),
        ("SIGMOID", lambda v: 1 / (1 + np.exp(-4 * (v - 2000) / 1000))),
    ],
)
def test_dicom_window_functions(tmp_path, function, expected):
    raw = ramp(4095)
    path = make_dicom(
        tmp_path / "window.dcm", raw, bits_stored=12,
        WindowCenter=[2000, 100], WindowWidth=[1000, 50], VOILUTFunction=function,
    )
    pixels = read_radiograph(path).pixels
    np.testing.assert_allclose(pixels, expected(raw.astype(np.float64)), atol=1e-5)
    assert pixels[raw < 1000].max() < 0.05 and pixels[raw > 3000].min() > 0.95


def test_dicom_invalid_window_falls_back_to_full_range(tmp_path, caplog):
    raw = ramp(4095)
    path = make_dicom(tmp_path / "bad.dcm", raw, bits_stored=12, WindowCenter=0, WindowWidth=0)
    pixels = read_radiograph(path).pixels
    np.testing.assert_allclose(pixels, raw / 4095.0, atol=1e-6)
    assert "ignoring invalid VOI" in caplog.text


def test_dicom_voi_lut_sequence(tmp_path):
    raw = ramp(4095)
    # a 16-bit descriptor over 12-bit entries, as many vendors write it
    lut = np.sqrt(np.arange(4096) / 4095.0) * 4095
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 16])  # LUT Descriptor
    item.add_new(0x00283006, "US", lut.round().astype(int).tolist())  # LUT Data
    path = make_dicom(
        tmp_path / "voi.dcm", raw, bits_stored=12, VOILUTSequence=[item],
        WindowCenter=100, WindowWidth=10,  # the LUT takes precedence
    )
    pixels = read_radiograph(path).pixels
    np.testing.assert_allclose(pixels, lut.round()[raw] / 4095.0, atol=1e-6)


def test_dicom_monochrome1_is_inverted(tmp_path):
    raw = RNG.integers(0, 4096, size=(ROWS, COLUMNS), dtype=np.uint16)
    window = {"WindowCenter": 1800, "WindowWidth": 2400}
    mono2 = read_radiograph(make_dicom(tmp_path / "m2.dcm", raw, bits_stored=12, **window))
    mono1 = read_radiograph(
        make_dicom(tmp_path / "m1.dcm", raw, bits_stored=12, photometric="MONOCHROME1", **window)
    )
    np.testing.assert_allclose(mono1.pixels + mono2.pixels, 1.0, atol=1e-6)
    assert np.ptp(mono2.pixels) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("elements", "spacing"),
    [
        ({"PixelSpacing": [0.2, 0.1]}, (0.1, 0.2)),
        ({"ImagerPixelSpacing": [0.15, 0.12]}, (0.12, 0.15)),
        ({"PixelSpacing": [0.2, 0.1], "ImagerPixelSpacing": [0.15, 0.12]}, (0.1, 0.2)),
    ],
)
def test_dicom_spacing_is_column_then_row(tmp_path, elements, spacing):
    path = make_dicom(tmp_path / "spaced.dcm", ramp(255, np.uint8), **elements)
    radiograph = read_radiograph(path)
    assert radiograph.spacing_known
    assert radiograph.spacing == pytest.approx(spacing)
    assert radiograph.pixel_area_mm2 == pytest.approx(spacing[0] * spacing[1])


@pytest.mark.parametrize("transfer_syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_dicom_compressed_transfer_syntaxes_decode_losslessly(tmp_path, transfer_syntax):
    raw = RNG.integers(0, 4096, size=(ROWS, COLUMNS), dtype=np.uint16)
    plain = read_radiograph(make_dicom(tmp_path / "plain.dcm", raw, bits_stored=12))
    path = make_dicom(tmp_path / "packed.dcm", raw, bits_stored=12, transfer_syntax=transfer_syntax)
    packed = read_radiograph(path)
    assert packed.dicom.file_meta.TransferSyntaxUID == transfer_syntax
    np.testing.assert_array_equal(packed.pixels, plain.pixels)


def test_dicom_rgb_secondary_capture_becomes_grey(tmp_path):
    rgb = RNG.integers(0, 256, size=(ROWS, COLUMNS, 3), dtype=np.uint8)
    path = make_dicom(
        tmp_path / "rgb.dcm", rgb, photometric="RGB",
        sop_class=SecondaryCaptureImageStorage, modality="OT",
    )
    np.testing.assert_allclose(read_radiograph(path).pixels, rgb @ LUMA / 255.0, atol=1e-5)


def test_dicom_without_suffix_is_read(tmp_path):
    path = make_dicom(tmp_path / "IM000001", ramp(255, np.uint8))
    assert read_radiograph(path).size == (ROWS, COLUMNS)


@pytest.mark.parametrize(
    ("sop_class", "modality"), [(CTImageStorage, "CT"), (MRImageStorage, "MR")]
)
def test_dicom_cross_sectional_modalities_are_refused(tmp_path, sop_class, modality):
    path = make_dicom(
        tmp_path / "slice.dcm", ramp(1000, np.int16), sop_class=sop_class, modality=modality
    )
    message = refusal(path)
    assert f"modality {modality.lower()}" in message and "not a radiograph" in message


def test_dicom_multi_frame_is_refused(tmp_path):
    frames = np.stack([ramp(255, np.uint8)] * 3)
    message = refusal(make_dicom(tmp_path / "cine.dcm", frames))
    assert "multi-frame" in message and "3 frames" in message


def test_dicom_without_pixel_data_is_refused(tmp_path):
    path = make_dicom(tmp_path / "header.dcm", ramp(255, np.uint8))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    assert "no pixel data" in refusal(path)


def test_truncated_dicom_is_refused(tmp_path):
    path = make_dicom(tmp_path / "cut.dcm", ramp(4095), bits_stored=12)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "pixel data" in refusal(path)


def test_dicom_truncated_in_its_header_is_refused(tmp_path):
    path = make_dicom(tmp_path / "head.dcm", ramp(255, np.uint8))
    path.write_bytes(path.read_bytes()[:200])
    message = refusal(path)
    assert "dicom" in message


def test_text_file_named_dcm_is_refused(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("this is not an image\n")
    assert "not a dicom file" in refusal(path)


def test_dicom_palette_colour_is_refused(tmp_path):
    path = make_dicom(tmp_path / "palette.dcm", ramp(255, np.uint8))
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.save_as(path)
    assert "palette color" in refusal(path)


# --- PNG / JPEG --------------------------------------------------------------------


def test_png_8_bit(tmp_path):
    grey = ramp(255, np.uint8)
    path = tmp_path / "grey.png"
    Image.fromarray(grey).save(path)
    radiograph = read_radiograph(path)
    np.testing.assert_allclose(radiograph.pixels, grey / 255.0, atol=1e-6)
    assert radiograph.dicom is None and not radiograph.spacing_known


def test_png_16_bit(tmp_path):
    grey = ramp(60000)
    path = tmp_path / "deep.png"
    Image.fromarray(grey).save(path)
    assert Image.open(path).mode.startswith("I")
    np.testing.assert_allclose(read_radiograph(path).pixels, grey / 65535.0, atol=1e-6)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_png_colour_becomes_grey(tmp_path, mode):
    colour = RNG.integers(0, 256, size=(ROWS, COLUMNS, len(mode)), dtype=np.uint8)
    path = tmp_path / f"{mode}.png"
    Image.fromarray(colour, mode).save(path)
    pixels = read_radiograph(path).pixels
    np.testing.assert_allclose(pixels, colour[..., :3] @ LUMA / 255.0, atol=1.01 / 255)


def test_png_palette_becomes_grey(tmp_path):
    palette = RNG.integers(0, 256, size=(256, 3), dtype=np.uint8)
    indices = RNG.integers(0, 256, size=(ROWS, COLUMNS), dtype=np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette(palette.flatten().tolist())
    path = tmp_path / "palette.png"
    image.save(path)
    pixels = read_radiograph(path).pixels
    np.testing.assert_allclose(pixels, palette[indices] @ LUMA / 255.0, atol=1.01 / 255)


def test_jpeg(tmp_path):
    grey = ramp(255, np.uint8)
    path = tmp_path / "chest.jpeg"
    Image.fromarray(grey).save(path, quality=95)
    radiograph = read_radiograph(path)
    assert radiograph.size == (ROWS, COLUMNS)
    assert np.abs(radiograph.pixels - grey / 255.0).mean() < 0.02


def test_png_one_pixel_is_refused(tmp_path):
    path = tmp_path / "dot.png"
    Image.new("L", (1, 1)).save(path)
    message = refusal(path)
    assert "1x1" in message and "too small" in message


def write_png_header(path: Path, width: int, height: int) -> Path:
    """A PNG claiming ``width`` x ``height`` 8-bit grey pixels, cut after one row."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * (width + 1))[:-4]  # no checksum: the stream goes on
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data))
    return path


@pytest.mark.parametrize("side", [8000, 30000])
def test_huge_png_is_refused_before_decoding(tmp_path, side):
    path = write_png_header(tmp_path / "huge.png", side, side)
    assert path.stat().st_size < 1000
    assert side * side > MAX_PIXELS
    message = refusal(path)
    # decoding would have failed as truncated (see the test below) instead
    assert "megapixel limit" in message and "truncated" not in message


def test_truncated_png_is_refused(tmp_path):
    path = write_png_header(tmp_path / "short.png", 64, 64)
    assert "truncated" in refusal(path)


# --- NRRD / NIfTI / MetaImage --------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_itk_formats_carry_spacing_and_origin(tmp_path, suffix):
    array = RNG.normal(100.0, 20.0, size=(ROWS, COLUMNS)).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.3, 0.2))
    image.SetOrigin((10.0, -5.0))
    path = tmp_path / f"chest{suffix}"
    sitk.WriteImage(image, str(path))
    radiograph = read_radiograph(path)
    expected = (array - array.min()) / (array.max() - array.min())
    np.testing.assert_allclose(radiograph.pixels, expected, atol=1e-5)
    assert radiograph.spacing == pytest.approx((0.3, 0.2))
    assert radiograph.origin == pytest.approx((10.0, -5.0, 0.0))
    assert radiograph.spacing_known
    assert radiograph.stem == "chest"


def test_3d_nrrd_is_refused(tmp_path):
    path = tmp_path / "volume.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, ROWS, COLUMNS), np.int16)), str(path))
    message = refusal(path)
    assert "3-d" in message and f"{COLUMNS}x{ROWS}x3" in message


def test_nrrd_with_one_slice_is_read(tmp_path):
    path = tmp_path / "slab.nrrd"
    array = ramp(1000, np.int16)[None]
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    np.testing.assert_allclose(read_radiograph(path).pixels, array[0] / 1000.0, atol=1e-6)


def test_nrrd_with_nan_is_refused(tmp_path):
    array = np.ones((ROWS, COLUMNS), np.float32)
    array[3, 4] = np.nan
    path = tmp_path / "nan.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    assert "nan" in refusal(path)


# --- files that are not images -------------------------------------------------------


def test_missing_path_is_refused(tmp_path):
    assert "no such file" in refusal(tmp_path / "absent.png")


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.dcm"
    path.touch()
    assert "empty" in refusal(path)


def test_folder_is_refused(tmp_path):
    folder = tmp_path / "study.dcm"
    folder.mkdir()
    assert "folder" in refusal(folder)


def test_unknown_suffix_is_refused(tmp_path):
    path = tmp_path / "report.txt"
    path.write_text("no finding")
    assert "unsupported file type" in refusal(path)


# --- find_radiographs -------------------------------------------------------------------


def test_find_radiographs_walks_nested_folders(tmp_path):
    root = tmp_path / "study"
    (root / "a" / "b").mkdir(parents=True)
    (root / ".cache").mkdir()
    Image.new("L", (64, 64)).save(root / "front.png")
    Image.new("L", (64, 64)).save(root / ".hidden.png")
    Image.new("L", (64, 64)).save(root / ".cache" / "thumb.png")
    make_dicom(root / "a" / "b" / "IM0001", ramp(255, np.uint8))
    make_dicom(root / "a" / "lateral.DCM", ramp(255, np.uint8))
    (root / "a" / "notes.txt").write_text("no finding")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((64, 64), np.uint8)), str(root / "x.nii.gz"))
    explicit = tmp_path / "other.txt"
    explicit.write_text("kept: given by name")

    found = find_radiographs([root, explicit])
    assert found == [
        root / "a" / "b" / "IM0001",
        root / "a" / "lateral.DCM",
        root / "front.png",
        root / "x.nii.gz",
        explicit,
    ]
    assert [read_radiograph(path).size for path in found[:4]] == [
        (ROWS, COLUMNS), (ROWS, COLUMNS), (64, 64), (64, 64)
    ]


@pytest.mark.parametrize(
    ("name", "stem"),
    [("a.nii.gz", "a"), ("b.DCM", "b"), ("IM0001", "IM0001"), ("c.d.png", "c.d"), ("e.txt", "e")],
)
def test_file_stem_drops_image_suffixes(name, stem):
    assert file_stem(Path("/data") / name) == stem


# --- real data -----------------------------------------------------------------------


@pytest.mark.realdata
def test_real_siim_jpeg_baseline_dicom():
    radiograph = read_radiograph(shared_path("fixtures/dicom/siim_cxr.dcm"))
    assert radiograph.size == (1024, 1024)
    assert radiograph.spacing == pytest.approx((0.168, 0.168))
    assert radiograph.spacing_known
    assert radiograph.dicom.Modality == "CR"
    assert radiograph.pixels.min() == 0.0 and radiograph.pixels.max() == 1.0
    assert 0.2 < radiograph.pixels.mean() < 0.8


@pytest.mark.realdata
def test_real_monochrome1_is_the_inverse():
    normal = read_radiograph(shared_path("fixtures/dicom/siim_cxr.dcm"))
    inverted = read_radiograph(shared_path("fixtures/dicom/monochrome1.dcm"))
    assert inverted.dicom.PhotometricInterpretation == "MONOCHROME1"
    np.testing.assert_allclose(normal.pixels + inverted.pixels, 1.0, atol=1e-6)


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("relative", "size"),
    [
        ("fixtures/tbx11k/imgs/tb/tb0005.png", (512, 512)),
        ("fixtures/chexpert/valid/patient64541/study1/view1_frontal.jpg", (2320, 2828)),
    ],
)
def test_real_png_and_jpeg(relative, size):
    radiograph = read_radiograph(shared_path(relative))
    assert radiograph.size == size
    assert 0.0 <= radiograph.pixels.min() < 0.1 and 0.9 < radiograph.pixels.max() <= 1.0
    assert radiograph.pixels.std() > 0.05


# ------------------------------------------------------------ display orientation
#: A stored image for each Patient Orientation, built from the display image C by its
#: definition: (direction along a row, direction down a column) in patient terms,
#: where C runs towards the patient's left along a row and towards the feet down a column.
STORED_FROM_DISPLAY = {
    ("L", "F"): lambda c: c,
    ("R", "F"): lambda c: c[:, ::-1],
    ("L", "H"): lambda c: c[::-1],
    ("R", "H"): lambda c: c[::-1, ::-1],
    ("F", "L"): lambda c: c.T,
    ("F", "R"): lambda c: c[:, ::-1].T,
    ("H", "L"): lambda c: c[::-1].T,
    ("H", "R"): lambda c: c[::-1, ::-1].T,
}


@pytest.mark.parametrize("values", sorted(STORED_FROM_DISPLAY))
def test_patient_orientation_brings_the_stored_image_to_display(values):
    display = np.arange(6 * 9).reshape(6, 9)
    stored = STORED_FROM_DISPLAY[values](display)
    orientation = display_orientation(list(values))
    np.testing.assert_array_equal(orientation.to_display(stored), display)
    np.testing.assert_array_equal(orientation.from_display(display), stored)
    assert orientation.display_size(stored.shape) == display.shape
    assert orientation.is_identity == (values == ("L", "F"))


@pytest.mark.parametrize("values", [None, [], ["L"], ["", "F"], ["A", "F"], ["P", "H"],
                                    ["L", "R"]])
def test_orientation_without_a_frontal_meaning_is_left_as_stored(values):
    assert display_orientation(values) == DisplayOrientation()


def test_oblique_orientation_follows_its_dominant_letter():
    assert display_orientation(["RP", "FL"]) == DisplayOrientation(flip_columns=True)


def test_real_dicom_stored_mirrored_is_read_as_stored_with_its_orientation(tmp_path):
    original = read_radiograph(shared_path("fixtures/dicom/siim_cxr.dcm"))
    mirrored = read_radiograph(mirrored_copy_of_the_real_dicom(tmp_path, ["R", "F"]))
    np.testing.assert_array_equal(mirrored.pixels, original.pixels[:, ::-1])
    assert mirrored.orientation == DisplayOrientation(flip_columns=True)
    assert original.orientation.is_identity
    np.testing.assert_array_equal(mirrored.orientation.to_display(mirrored.pixels),
                                  original.pixels)
