"""The command line end to end: localize (good and bad inputs), models, version, errors."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import nrrd
import numpy as np
import pydicom
import pytest
import slicerio
from conftest import mirrored_copy_of_the_real_dicom, shared_path
from PIL import Image

from CXRWeakLocLib.data.synthetic import make_demo_radiograph


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "CXRWeakLocLib", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=600)


def huge_png(path: Path, side: int = 30000) -> Path:
    """A PNG header claiming side x side pixels, with a tiny (cut short) data stream."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1000)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body)
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return make_demo_radiograph(tmp_path_factory.mktemp("in") / "chest.png", size=192).image


def test_version_and_help():
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("cxrweakloc ")
    assert "localize" in cli("--help").stdout


def test_localize_png_writes_every_export(tmp_path, sample, tiny_model):
    out = tmp_path / "out"
    result = cli("localize", sample, "--out", out, "--model", tiny_model, "--findings", "all",
                 "--quiet")
    assert result.returncode == 0, result.stderr
    folder = out / "chest"
    record = json.loads((folder / "findings.json").read_text())
    assert len(record["findings"]) == 14 and all(f["exported"] for f in record["findings"])
    segmentation = slicerio.read_segmentation(str(folder / "chest.seg.nrrd"))
    names = sorted(s["name"] for s in segmentation["segments"])
    assert names == sorted(f["name"] for f in record["findings"])
    heatmap, header = nrrd.read(str(folder / "chest.Atelectasis.heatmap.nrrd"))
    assert heatmap.dtype == np.float32 and heatmap.shape[2] == 1  # the model's grid ...
    spacing = record["input"]["spacing_mm"]
    np.testing.assert_allclose(  # ... spanning the 192 x 192 input
        np.abs(np.diag(header["space directions"]))[:2] * heatmap.shape[:2],
        [192 * spacing["column"], 192 * spacing["row"]])
    assert Image.open(folder / "chest.png").size[0] > 0
    assert not (folder / "chest.SEG.dcm").exists()  # PNG input: no DICOM-SEG
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 2 and ",done," in summary[1]


def test_existing_results_are_kept_unless_overwrite(tmp_path, sample, tiny_model):
    out = tmp_path / "out"
    assert cli("localize", sample, "--out", out, "--model", tiny_model, "--quiet").returncode == 0
    first = (out / "chest" / "findings.json").stat().st_mtime_ns
    again = cli("localize", sample, "--out", out, "--model", tiny_model, "--quiet")
    assert again.returncode == 0 and "already had complete results" in again.stdout
    assert (out / "chest" / "findings.json").stat().st_mtime_ns == first
    forced = cli("localize", sample, "--out", out, "--model", tiny_model, "--quiet",
                 "--overwrite")
    assert forced.returncode == 0
    assert (out / "chest" / "findings.json").stat().st_mtime_ns != first


def test_named_findings_only(tmp_path, sample, tiny_model):
    out = tmp_path / "out"
    result = cli("localize", sample, "--out", out, "--model", tiny_model, "--quiet",
                 "--findings", "pleural effusion,Cardiomegaly")
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "chest" / "findings.json").read_text())
    assert sorted(f["name"] for f in record["findings"] if f["exported"]) == [
        "Cardiomegaly", "Effusion"]


def make_bad_inputs(folder: Path) -> dict[str, str]:
    """Bad files -> a word their error line must contain."""
    folder.mkdir()
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.dcm").write_text("this is not DICOM\n")
    ct = pydicom.Dataset()
    ct.file_meta = pydicom.dataset.FileMetaDataset()
    ct.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ct.file_meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
    ct.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ct.SOPClassUID, ct.SOPInstanceUID = ct.file_meta.MediaStorageSOPClassUID, \
        ct.file_meta.MediaStorageSOPInstanceUID
    ct.Modality, ct.Rows, ct.Columns = "CT", 64, 64
    ct.BitsAllocated, ct.BitsStored, ct.HighBit, ct.PixelRepresentation = 16, 12, 11, 0
    ct.SamplesPerPixel, ct.PhotometricInterpretation = 1, "MONOCHROME2"
    ct.PixelData = np.zeros((64, 64), np.uint16).tobytes()
    ct.save_as(folder / "ct_slice.dcm", enforce_file_format=True)
    nopixels = ct.copy()
    nopixels.Modality = "DX"
    del nopixels.PixelData
    nopixels.save_as(folder / "no_pixels.dcm", enforce_file_format=True)
    dx = ct.copy()
    dx.Modality = "DX"
    dx.save_as(folder / "truncated.dcm", enforce_file_format=True)
    data = (folder / "truncated.dcm").read_bytes()
    (folder / "truncated.dcm").write_bytes(data[: len(data) - 3000])
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(folder / "tiny.png")
    huge_png(folder / "huge.png")
    nan = np.full((64, 64), np.nan, np.float32)
    nrrd.write(str(folder / "nan.nrrd"), nan)
    return {"empty.png": "empty", "text.dcm": "DICOM", "ct_slice.dcm": "CT",
            "no_pixels.dcm": "pixel data", "truncated.dcm": "truncated.dcm", "tiny.png": "small",
            "huge.png": "megapixel", "nan.nrrd": "NaN", "missing.png": "no such file"}


def test_bad_inputs_get_one_line_each_and_the_batch_goes_on(tmp_path, sample, tiny_model):
    bad = make_bad_inputs(tmp_path / "bad")
    out = tmp_path / "out"
    inputs = [tmp_path / "bad" / name for name in bad] + [sample]
    result = cli("localize", *inputs, "--out", out, "--model", tiny_model, "--quiet")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(bad)
    for name, word in bad.items():
        line = next(e for e in errors if name in e)
        assert word.lower() in line.lower(), line
    assert (out / "chest" / "findings.json").is_file()  # the good input was still done
    leftovers = [p.name for p in out.iterdir() if p.name not in ("chest", "summary.csv")]
    assert leftovers == []  # nothing half-written for the bad ones
    assert "1 localized" in result.stdout and f"{len(bad)} failed" in result.stdout


def test_unwritable_output_folder(tmp_path, sample, tiny_model):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    result = cli("localize", sample, "--out", blocker / "out", "--model", tiny_model)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "cannot create output folder" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "no-such-model"], "not found"),
    (["--findings", "Unicorn"], "unknown finding"),
    (["--device", "cuda"], "CUDA"),
])
def test_user_mistakes_are_one_line(tmp_path, sample, tiny_model, args, message):
    model = [] if "--model" in args else ["--model", str(tiny_model)]
    result = cli("localize", sample, "--out", tmp_path / "o", *model, *args)
    if "cuda" in args and "CUDA" not in result.stderr and result.returncode == 0:
        pytest.skip("a CUDA GPU is present")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_empty_folder_is_a_clear_error(tmp_path, tiny_model):
    (tmp_path / "empty").mkdir()
    result = cli("localize", tmp_path / "empty", "--out", tmp_path / "o", "--model", tiny_model)
    assert result.returncode == 2 and "no radiographs found" in result.stderr


def test_models_lists_metrics(tmp_path, tiny_model):
    import os

    env = {**os.environ, "CXRWEAKLOC_MODELS": str(tiny_model.parent)}
    result = subprocess.run([sys.executable, "-m", "CXRWeakLocLib", "models", "--json"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0
    cards = json.loads(result.stdout)
    assert tiny_model.name in [c["name"] for c in cards]


def test_localize_real_dicom_fixtures(tmp_path, fixtures_dir, tiny_model):
    out = tmp_path / "out"
    dicoms = sorted((fixtures_dir / "dicom").glob("*.dcm"))
    result = cli("localize", *dicoms, "--out", out, "--model", tiny_model, "--quiet",
                 "--findings", "Pneumothorax,Effusion")
    assert result.returncode == 0, result.stderr
    for path in dicoms:
        folder = out / path.stem
        for name in (f"{path.stem}.seg.nrrd", f"{path.stem}.SEG.dcm", f"{path.stem}.png",
                     "findings.json", f"{path.stem}.Pneumothorax.heatmap.nrrd"):
            assert (folder / name).is_file(), name
        header = nrrd.read_header(str(folder / f"{path.stem}.seg.nrrd"))
        spatial = np.asarray(header["space directions"], dtype=float)[-3:]  # 4-D: list axis
        assert np.allclose(np.diag(spatial)[:2], [0.168, 0.168])


def test_a_dicom_stored_mirrored_gets_the_mirrored_results(tmp_path):
    """Patient Orientation R\\F: the model sees the chest as in training; exports stay stored."""
    original = shared_path("fixtures/dicom/siim_cxr.dcm")
    mirrored = mirrored_copy_of_the_real_dicom(tmp_path, ["R", "F"])
    for path in (original, mirrored):
        result = cli("localize", path, "--out", tmp_path / "out", "--model", "cam", "--quiet",
                     "--findings", "Cardiomegaly")
        assert result.returncode == 0, result.stderr
    records = {p: json.loads((tmp_path / "out" / p / "findings.json").read_text())
               for p in ("siim_cxr", "mirrored")}
    assert records["siim_cxr"]["input"]["display_orientation"] == "as stored"
    assert records["mirrored"]["input"]["display_orientation"] == "columns flipped"
    probabilities = {p: next(f["probability"] for f in r["findings"] if f["name"] == "Cardiomegaly")
                     for p, r in records.items()}
    assert probabilities["mirrored"] == pytest.approx(probabilities["siim_cxr"], abs=1e-4)
    heatmaps = {p: nrrd.read(str(tmp_path / "out" / p / f"{p}.Cardiomegaly.heatmap.nrrd"),
                             index_order="C")[0] for p in records}
    np.testing.assert_allclose(np.squeeze(heatmaps["mirrored"]),
                               np.squeeze(heatmaps["siim_cxr"])[:, ::-1], atol=2e-3)
