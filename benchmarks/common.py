"""What every benchmark script shares: the machine line, the model, test inputs, tables.

Benchmarks walk the engine's own path (``read_radiograph`` -> ``Localizer`` ->
``export_all`` / ``localize_files``); this module only finds a model and makes
inputs. Without a shipped model it builds one with the shipped architecture and
random weights: timings are the same, the maps are meaningless.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pydicom
import torch
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from CXRWeakLocLib.checkpoint import save_model
from CXRWeakLocLib.core.card import ModelCard, resolve_model
from CXRWeakLocLib.core.errors import CheckpointError
from CXRWeakLocLib.core.findings import CHESTXRAY14
from CXRWeakLocLib.data.synthetic import SyntheticChestGenerator
from CXRWeakLocLib.methods import build_network

REPO = Path(__file__).resolve().parents[1]
SIIM_DICOM = REPO.parent / "shared" / "data" / "fixtures" / "dicom" / "siim_cxr.dcm"
#: The shipped ``cam`` model's architecture (training/configs/cam_nih_mini.toml).
SHIPPED_ARCHITECTURE = {"backbone": {"name": "resnet18", "width": 0.5, "output_stride": 16}}
SHIPPED_INPUT_SIZE = 256
#: Models the benchmarks build when asked by name (random weights): the ImageNet-initialised
#: EfficientNet-Lite0 that the next shipped models use, at 512 px.
BUILT_MODELS = {
    "lite0-512": {"architecture": {"backbone": {"name": "efficientnet-lite0",
                                                "output_stride": 16}},
                  "input_size": 512,
                  "normalization": {"mean": 127.5 / 255.0, "std": 128.0 / 255.0}},
}


def add_common_arguments(parser: argparse.ArgumentParser, model: str = "cam") -> None:
    parser.add_argument("--model", default=model,
                        help=f"model name or folder (default {model!r}; when it is not "
                             "installed, its architecture with random weights)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (default: torch's choice)")


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compare", metavar="REF",
                        help="also run this script on the engine of git REF (e.g. main or a "
                             "commit) in a child process, and print old vs new side by side")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)


def engine_of(ref: str, folder: Path) -> Path:
    """The tree of git ``ref`` (engine and shipped models) extracted into ``folder``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True,
                             check=False)
    if archive.returncode:
        sys.exit(f"--compare {ref}: {archive.stderr.decode().strip() or 'git archive failed'}")
    folder.mkdir(parents=True, exist_ok=True)
    archive_path = folder.with_suffix(".tar")
    archive_path.write_bytes(archive.stdout)
    with tarfile.open(archive_path) as tar:
        tar.extractall(folder, filter="data")
    archive_path.unlink()
    return folder


def run_on_engine(ref: str, work: Path, argv: list[str]) -> dict:
    """This script's figures (``--json``) measured on the engine of git ``ref``."""
    tree = engine_of(ref, work / "ref-tree")
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, sys.argv[0], *argv, "--json"]
    run = subprocess.run(command, capture_output=True, text=True, env=environment,
                         check=False)
    if run.returncode:
        sys.exit(f"--compare {ref}: the run on that engine failed:\n{run.stderr[-2000:]}")
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    if not figures.get("engine", "").startswith(str(tree)):
        sys.exit(f"--compare {ref}: the child ran {figures.get('engine')}, not {tree}")
    return figures


def engine_path() -> str:
    """Where the engine this process runs was imported from."""
    import CXRWeakLocLib

    return str(Path(CXRWeakLocLib.__file__).resolve().parent)


def apply_threads(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)


def machine_line(device: str) -> str:
    """CPU model, cores, torch version, threads, device and date, on one line."""
    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = (torch.cuda.get_device_name(torch.device(device))
           if device.startswith("cuda") and torch.cuda.is_available() else "no GPU")
    return (f"machine: {cpu}, {cores} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), device {device} ({gpu}), "
            f"{datetime.date.today().isoformat()}")


def model_folder(name_or_path: str, workdir: Path, method: str = "cam") -> tuple[Path, str]:
    """The model to time and how to describe it: installed, one of :data:`BUILT_MODELS`,
    or the shipped architecture; the last two with random weights."""
    built = BUILT_MODELS.get(name_or_path)
    if built is None:
        try:
            return resolve_model(name_or_path), f"{name_or_path} (trained weights)"
        except CheckpointError:
            pass
    torch.manual_seed(0)
    settings = built or {"architecture": SHIPPED_ARCHITECTURE, "input_size": SHIPPED_INPUT_SIZE}
    card = ModelCard(
        name=f"random-{name_or_path if built else method}", method=method,
        architecture=dict(settings["architecture"]),
        findings=[f.name for f in CHESTXRAY14], input_size=settings["input_size"],
        normalization=dict(settings.get("normalization", {"mean": 0.5, "std": 0.5})),
        description="random weights (benchmarks only)",
    )
    network = build_network(method, card.architecture, len(card.findings))
    folder = save_model(workdir / card.name, card, network, overwrite=True)
    if built:
        return folder, (f"{name_or_path}: {method} on {card.architecture['backbone']['name']}, "
                        f"{card.input_size} px model input, random weights")
    return folder, f"{method}, shipped architecture, random weights ({name_or_path} not installed)"


def synthetic_pixels(size: int, seed: int = 0) -> np.ndarray:
    """A synthetic chest radiograph, float32 in [0, 1]."""
    return SyntheticChestGenerator(size, seed).generate(0).pixels


def write_dicom(path: Path, size: int) -> Path:
    """A CR DICOM of ``size`` x ``size`` 8-bit pixels: the SIIM fixture resized when
    present (its patient/study attributes kept), else a synthetic radiograph."""
    if SIIM_DICOM.is_file():
        dataset = pydicom.dcmread(SIIM_DICOM)
        pixels = np.asarray(Image.fromarray(dataset.pixel_array).resize(
            (size, size), Image.Resampling.BILINEAR))
        dataset.SOPInstanceUID = generate_uid()
    else:
        pixels = np.round(synthetic_pixels(size) * 255).astype(np.uint8)
        dataset = pydicom.Dataset()
        dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography
        dataset.SOPInstanceUID = generate_uid()
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
        dataset.PatientName, dataset.PatientID = "Synthetic^Benchmark", "BENCH"
        dataset.PatientBirthDate, dataset.PatientSex = "", "O"
        dataset.StudyDate, dataset.StudyTime = "20250101", "120000"
        dataset.AccessionNumber, dataset.ReferringPhysicianName, dataset.StudyID = "", "", "1"
        dataset.Modality, dataset.SeriesNumber, dataset.InstanceNumber = "CR", 1, 1
        dataset.Manufacturer, dataset.PatientOrientation = "", ["L", "F"]
        dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
        dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 8, 8, 7
        dataset.PixelRepresentation, dataset.PixelSpacing = 0, [0.14, 0.14]
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.Rows = dataset.Columns = size
    dataset.PixelData = pixels.astype(np.uint8).tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return path


def write_pngs(folder: Path, count: int, sizes: Sequence[int] = (256, 384, 512),
               templates: int = 6) -> list[Path]:
    """``count`` synthetic radiograph PNGs of the given sizes (a few generated images,
    each written shifted by its index, so that no two files are the same)."""
    folder.mkdir(parents=True, exist_ok=True)
    bases = [np.round(synthetic_pixels(sizes[i % len(sizes)], seed=i) * 255).astype(np.uint8)
             for i in range(templates)]
    paths = []
    for index in range(count):
        path = folder / f"synthetic-{index:05d}.png"
        Image.fromarray(np.roll(bases[index % templates], index, axis=1)).save(path)
        paths.append(path)
    return paths


def timed(function: Callable[[], object]) -> tuple[float, object]:
    """Seconds one call takes, and what it returned."""
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    return statistics.median(timed(function)[0] for _ in range(repeats))


def ratio(old: float, new: float) -> str:
    """``old / new`` as a speed-up, e.g. ``5.1x``."""
    return f"{old / new:.1f}x" if new > 0 else "-"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A Markdown table (pastes straight into RESULTS.md)."""
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
