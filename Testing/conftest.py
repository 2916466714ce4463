"""Shared pytest fixtures: real-data paths (skipped when absent) and a tiny model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from CXRWeakLocLib.checkpoint import save_model
from CXRWeakLocLib.core.card import ModelCard
from CXRWeakLocLib.core.findings import CHESTXRAY14
from CXRWeakLocLib.methods import build_network

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_path(relative: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent")
    return path


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory) -> Path:
    """Models exported for ONNX Runtime go to this session's folder (the CLI runs of the
    tests inherit it), not the user's cache."""
    from CXRWeakLocLib.runtime import CACHE_ENV

    folder = tmp_path_factory.mktemp("onnx-cache")
    os.environ[CACHE_ENV] = str(folder)
    return folder


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return shared_path("fixtures")


@pytest.fixture(scope="session")
def nih_mini() -> Path:
    return shared_path("nih-mini")


def make_tiny_model(folder: Path, method: str = "cam", seed: int = 0,
                    options: dict | None = None) -> Path:
    """A randomly initialised, tiny, valid model folder (fast on CPU)."""
    import torch

    torch.manual_seed(seed)
    card = ModelCard(
        name=folder.name,
        method=method,
        architecture={"backbone": {"name": "resnet10", "width": 0.125},
                      **({"options": options} if options else {})},
        findings=[f.name for f in CHESTXRAY14],
        input_size=64,
        operating_thresholds={f.name: 0.5 for f in CHESTXRAY14},
        description="random tiny model for tests",
    )
    network = build_network(method, card.architecture, len(card.findings))
    return save_model(folder, card, network, overwrite=True)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-cam")


def mirrored_copy_of_the_real_dicom(tmp_path: Path, orientation: list[str]) -> Path:
    """The SIIM radiograph stored mirrored (uncompressed) and tagged as such."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian

    ds = pydicom.dcmread(shared_path("fixtures/dicom/siim_cxr.dcm"))
    pixels = ds.pixel_array[:, ::-1].copy()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.set_pixel_data(pixels, "MONOCHROME2", 8)
    ds.PatientOrientation = orientation
    path = tmp_path / "mirrored.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path
