"""The synthetic radiograph generator: determinism, labels vs masks, anatomy, files."""

from __future__ import annotations

import numpy as np
import pytest

from CXRWeakLocLib.core.errors import ConfigError
from CXRWeakLocLib.core.findings import BOXED_FINDINGS, CHESTXRAY14
from CXRWeakLocLib.core.radiograph import read_radiograph
from CXRWeakLocLib.data.synthetic import (
    SyntheticChestGenerator,
    make_demo_radiograph,
    make_synthetic_dataset,
    read_synthetic,
    write_synthetic_dataset,
)

SIZE = 128


@pytest.fixture(scope="module")
def dataset():
    return make_synthetic_dataset(40, SIZE, seed=3)


def test_deterministic_by_seed_and_index(dataset):
    again = make_synthetic_dataset(5, SIZE, seed=3)
    for first, second in zip(dataset[:5], again, strict=True):
        assert first.id == second.id
        np.testing.assert_array_equal(first.pixels, second.pixels)
        assert first.labels == second.labels
        assert [a.box for a in first.annotations] == [a.box for a in second.annotations]
    other = make_synthetic_dataset(5, SIZE, seed=4)
    assert all(not np.array_equal(a.pixels, b.pixels) for a, b in zip(again, other, strict=True))


def test_labels_match_masks_and_boxes(dataset):
    unboxed = {f.name for f in CHESTXRAY14} - set(BOXED_FINDINGS)
    counts = []
    for record in dataset:
        assert record.image is None
        assert record.pixels.shape == (SIZE, SIZE) and record.pixels.dtype == np.float32
        assert record.pixels.min() >= 0.0 and record.pixels.max() <= 1.0
        assert set(record.labels) == {f.name for f in CHESTXRAY14}
        assert all(record.labels[name] == 0.0 for name in unboxed)
        present = {name for name, value in record.labels.items() if value == 1.0}
        assert present == {a.finding for a in record.annotations}
        counts.append(len(present))
        for annotation in record.annotations:
            mask = annotation.mask
            assert mask.shape == (SIZE, SIZE) and mask.dtype == bool and mask.any()
            x, y, w, h = map(int, annotation.box)
            inside = np.zeros_like(mask)
            inside[y:y + h, x:x + w] = True
            assert not (mask & ~inside).any()  # mask within its box ...
            assert mask[y, x:x + w].any() and mask[y + h - 1, x:x + w].any()  # ... tightly
            assert mask[y:y + h, x].any() and mask[y:y + h, x + w - 1].any()
    assert max(counts) <= 3 and 0 in counts and max(counts) >= 2
    assert len({name for r in dataset for name, v in r.labels.items() if v}) >= 6


def _centre(mask: np.ndarray) -> tuple[float, float]:
    rows, columns = np.nonzero(mask)
    return rows.mean() / mask.shape[0], columns.mean() / mask.shape[1]


@pytest.mark.parametrize("index", range(4))
def test_findings_sit_where_they_occur(index):
    generator = SyntheticChestGenerator(SIZE, seed=11)

    def mask_of(finding: str) -> np.ndarray:
        (annotation,) = generator.generate(index, findings=[finding]).annotations
        return annotation.mask

    row, column = _centre(mask_of("Cardiomegaly"))
    assert 0.5 < row < 0.8 and 0.4 < column < 0.7  # lower middle, towards the image right
    assert _centre(mask_of("Effusion"))[0] > 0.6  # lung base
    row, column = _centre(mask_of("Pneumothorax"))
    assert row < 0.55 and abs(column - 0.5) > 0.15  # apical / lateral
    assert _centre(mask_of("Atelectasis"))[0] > 0.55  # lower zone
    for finding in ("Infiltration", "Pneumonia", "Mass", "Nodule"):
        row, column = _centre(mask_of(finding))
        assert 0.1 < row < 0.85 and 0.05 < abs(column - 0.5) < 0.42  # in a lung field
    assert mask_of("Nodule").sum() * 4 < mask_of("Mass").sum()


def test_finding_changes_the_image():
    generator = SyntheticChestGenerator(SIZE, seed=5)
    normal = generator.generate(0, findings=[]).pixels
    for finding in ("Mass", "Effusion", "Pneumonia"):
        record = generator.generate(0, findings=[finding])
        mask = record.annotations[0].mask
        assert record.pixels[mask].mean() > normal[mask].mean() + 0.05  # an opacity
    record = generator.generate(0, findings=["Pneumothorax"])
    mask = record.annotations[0].mask
    assert record.pixels[mask].mean() < normal[mask].mean()  # a lucency


def test_prevalence():
    assert all(not r.annotations for r in make_synthetic_dataset(5, 64, seed=1, prevalence=0))
    crowded = make_synthetic_dataset(5, 64, seed=1, prevalence=1.0)
    assert all(len(r.annotations) == 3 for r in crowded)
    only = make_synthetic_dataset(6, 64, seed=1, prevalence={"pleural effusion": 1.0})
    assert all([a.finding for a in r.annotations] == ["Effusion"] for r in only)
    with pytest.raises(ConfigError, match="Hernia"):
        SyntheticChestGenerator(64, prevalence={"Hernia": 0.5})
    with pytest.raises(ConfigError, match="32 pixels"):
        SyntheticChestGenerator(16)


def test_write_and_read_back(tmp_path):
    written = make_synthetic_dataset(6, 96, seed=2)
    folder = write_synthetic_dataset(tmp_path / "synthetic", 6, 96, seed=2)
    assert (folder / "labels.csv").read_text().splitlines()[0].startswith(
        "Image Index,Atelectasis,Cardiomegaly")
    records = read_synthetic(folder)
    assert [r.id for r in records] == [r.id for r in written]
    for original, read in zip(written, records, strict=True):
        assert read.labels == original.labels
        assert read.image == folder / "images" / f"{original.id}.png"
        pixels = read_radiograph(read.image).pixels
        assert np.abs(pixels - original.pixels).max() <= 0.5 / 255 + 1e-6
        assert [(a.finding, a.box) for a in read.annotations] == [
            (a.finding, a.box) for a in original.annotations]
        for a, b in zip(read.annotations, original.annotations, strict=True):
            np.testing.assert_array_equal(a.mask, b.mask)
    with pytest.raises(ConfigError, match="labels.csv"):
        read_synthetic(tmp_path)


def test_demo_radiograph(tmp_path):
    record = make_demo_radiograph(tmp_path / "demo" / "synthetic_cxr.png", size=256)
    radiograph = read_radiograph(record.image)
    assert radiograph.size == (256, 256)
    assert [a.finding for a in record.annotations] == ["Mass"] and record.labels["Mass"] == 1.0
    mask = record.annotations[0].mask
    assert radiograph.pixels[mask].mean() > radiograph.pixels[~mask].mean()
