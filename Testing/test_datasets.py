"""Readers of CheXpert/CheXlocalize, TBX11K and the COVID-19 collection on real files."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from PIL import Image, ImageDraw

from CXRWeakLocLib.core.errors import ConfigError
from CXRWeakLocLib.core.radiograph import read_radiograph
from CXRWeakLocLib.data.chexpert import (
    attach_annotations,
    decode_rle,
    read_chexlocalize,
    read_chexpert,
)
from CXRWeakLocLib.data.covid19 import read_covid19
from CXRWeakLocLib.data.tbx11k import read_tbx11k

CHEXPERT_VOCABULARY = {
    "Cardiomegaly", "Mass", "Edema", "Consolidation", "Pneumonia", "Atelectasis",
    "Pneumothorax", "Effusion", "Pleural_Thickening",
}


# --- CheXpert -----------------------------------------------------------------------

def test_chexpert_valid_fixture():
    root = shared_path("fixtures/chexpert")
    records = read_chexpert(root)
    assert [r.id for r in records] == [
        "patient64541_study1_view1_frontal", "patient64542_study1_view1_frontal"]
    first, second = records
    assert first.image == root / "valid/patient64541/study1/view1_frontal.jpg"
    assert set(first.labels) == CHEXPERT_VOCABULARY
    assert {k for k, v in first.labels.items() if v == 1.0} == {"Cardiomegaly"}
    assert all(v == 0.0 for v in second.labels.values())
    assert first.meta == {"patient": "patient64541", "view": "AP", "sex": "Male", "age": "73"}
    assert read_radiograph(second.image).size == (2022, 2021)


def test_chexlocalize_masks_match_polygons():
    root = shared_path("fixtures/chexpert")
    annotations = read_chexlocalize(root / "gt_segmentations_val.json")
    # Only non-empty masks of vocabulary findings: one image has Cardiomegaly; the
    # other only Support Devices, which is not in the vocabulary.
    assert {k: [a.finding for a in v] for k, v in annotations.items()} == {
        "patient64541_study1_view1_frontal": ["Cardiomegaly"],
        "patient64542_study1_view1_frontal": [],
    }
    mask = annotations["patient64541_study1_view1_frontal"][0].mask
    assert mask.shape == (2320, 2828) and mask.dtype == bool
    outline = json.loads((root / "gt_annotations_val.json").read_text())
    canvas = Image.new("1", (mask.shape[1], mask.shape[0]))
    for part in outline["patient64541_study1_view1_frontal"]["Cardiomegaly"]:
        ImageDraw.Draw(canvas).polygon([tuple(xy) for xy in part], fill=1)
    drawn = np.asarray(canvas)
    assert (mask & drawn).sum() / (mask | drawn).sum() > 0.99
    rows, columns = np.nonzero(mask)
    assert mask.shape[0] * 0.5 < rows.mean() < mask.shape[0] * 0.8  # heart: lower middle

    records = attach_annotations(read_chexpert(root), annotations)
    assert [len(r.annotations) for r in records] == [1, 0]
    assert records[0].annotations[0].mask is mask


def test_decode_rle_hand_made():
    # Runs 1, 2, 3, 3 (the 4th coded as 3 - 2) over 3 x 3, by column: 0 1 1 | 0 0 0 | 1 1 1.
    assert decode_rle({"size": [3, 3], "counts": "1231"}).tolist() == [
        [False, False, True], [True, False, True], [True, False, True]]
    # Runs 2, 40, 3, 10 (the 4th coded as 10 - 40 = -30, "RO"; 40 takes two groups, "X1").
    mask = decode_rle({"size": [5, 11], "counts": "2X13RO"})
    flat = mask.T.ravel()
    assert flat.tolist() == [False] * 2 + [True] * 40 + [False] * 3 + [True] * 10
    assert decode_rle({"size": [5, 11], "counts": [2, 40, 3, 10]}).tolist() == mask.tolist()
    with pytest.raises(ValueError, match="55"):
        decode_rle({"size": [5, 11], "counts": [2, 40]})


def _write_chexpert_train(root: Path) -> None:
    image = root / "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg"
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding",
              "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
              "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax",
              "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices"]
    rows = [
        [image.relative_to(root).as_posix(), "Female", "68", "Frontal", "AP", "", "", "-1.0",
         "1.0", "", "", "-1.0", "", "1.0", "0.0", "1.0", "", "", "1.0"],
        ["CheXpert-v1.0-small/train/patient00001/study1/view2_lateral.jpg", "Female", "68",
         "Lateral", "", "", "", "-1.0", "", "", "", "", "", "", "", "", "", "", ""],
    ]
    with (root / "train.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])


@pytest.mark.parametrize("policy, uncertain", [("ones", 1.0), ("zeros", 0.0),
                                                ("ignore", math.nan)])
def test_chexpert_uncertainty_and_blanks(tmp_path, policy, uncertain):
    _write_chexpert_train(tmp_path)
    (record,) = read_chexpert(tmp_path, csv="train.csv", uncertainty=policy)
    assert record.id == "patient00001_study1_view1_frontal"
    assert record.image == tmp_path / "train/patient00001/study1/view1_frontal.jpg"
    labels = record.labels
    for name in ("Cardiomegaly", "Consolidation"):
        assert labels[name] == uncertain or (math.isnan(uncertain) and math.isnan(labels[name]))
    assert labels["Atelectasis"] == 1.0 and labels["Effusion"] == 1.0
    assert labels["Pneumothorax"] == 0.0
    assert all(math.isnan(labels[name]) for name in ("Mass", "Edema", "Pneumonia"))


def test_chexpert_lateral_views_and_dataset_folder_as_root(tmp_path):
    _write_chexpert_train(tmp_path)
    (tmp_path / "CheXpert-v1.0-small").mkdir()  # root is the dataset folder's parent
    records = read_chexpert(tmp_path, csv="train.csv", frontal_only=False)
    assert [r.id for r in records] == [
        "patient00001_study1_view1_frontal", "patient00001_study1_view2_lateral"]
    assert records[0].image == (
        tmp_path / "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg")
    with pytest.raises(ConfigError, match="uncertainty policy"):
        read_chexpert(tmp_path, csv="train.csv", uncertainty="maybe")
    with pytest.raises(ConfigError, match="valid.csv"):
        read_chexpert(tmp_path)


# --- TBX11K -------------------------------------------------------------------------

def test_tbx11k_fixture():
    root = shared_path("fixtures/tbx11k")
    records = read_tbx11k(root, Path("annotations/json/TBX11K_train.json"))
    assert [(r.id, r.labels) for r in records] == [
        ("tb0005", {"Tuberculosis": 1.0}),
        ("tb0007", {"Tuberculosis": 1.0}),
        ("h0001", {"Tuberculosis": 0.0}),
    ]
    tb5, tb7, healthy = records
    assert tb5.image == root / "imgs/tb/tb0005.png" and tb5.image.is_file()
    assert [a.finding for a in tb7.annotations] == ["Tuberculosis", "Tuberculosis"]
    np.testing.assert_allclose(
        tb5.annotations[0].box, (381.8337097167969, 126.8733901977539,
                                 40.236907958984375, 44.565773010253906))
    np.testing.assert_allclose(tb7.annotations[1].box[:2], (144.12008666992188, 52.93471908569336))
    assert tb5.meta["tb_categories"] == ["ActiveTuberculosis"]
    assert tb7.meta["tb_categories"] == ["ObsoletePulmonaryTuberculosis"] * 2
    assert healthy.annotations == [] and healthy.meta["size"] == (512, 512)
    assert read_radiograph(healthy.image).size == (512, 512)


def test_tbx11k_unlabelled_folder(tmp_path):
    coco = {"categories": [], "annotations": [],
            "images": [{"id": 1, "file_name": "test/t1.png", "width": 64, "height": 64}]}
    (tmp_path / "test.json").write_text(json.dumps(coco))
    (record,) = read_tbx11k(tmp_path, tmp_path / "test.json")
    assert record.labels == {} and record.annotations == []
    with pytest.raises(ConfigError, match="not found"):
        read_tbx11k(tmp_path, "missing.json")


# --- COVID-19 image data collection -------------------------------------------------

COVID_COLUMNS = [
    "patientid", "offset", "sex", "age", "finding", "RT_PCR_positive", "survival",
    "intubated", "intubation_present", "went_icu", "in_icu", "needed_supplemental_O2",
    "extubated", "temperature", "pO2_saturation", "leukocyte_count", "neutrophil_count",
    "lymphocyte_count", "view", "modality", "date", "location", "folder", "filename", "doi",
    "url", "license", "clinical_notes", "other_notes",
]


def test_covid19_metadata(tmp_path):
    fixtures = shared_path("fixtures/covid19")
    (tmp_path / "images").mkdir()
    for image in fixtures.glob("*.jpg"):
        shutil.copy(image, tmp_path / "images" / image.name)
    rows = [
        ("58", "Pneumonia/Viral/COVID-19", "PA", "X-ray", "covid-19-pneumonia-58-prior.jpg"),
        ("327", "Pneumonia/Bacterial/Streptococcus", "AP Supine", "X-ray", "16747_3_1.jpg"),
        ("58", "Pneumonia/Viral/COVID-19", "L", "X-ray", "lateral.jpg"),
        ("59", "Pneumonia/Viral/COVID-19", "Axial", "CT", "ct.jpg"),
        ("60", "todo", "PA", "X-ray", "unread.jpg"),
        ("61", "No Finding", "AP", "X-ray", "normal.jpg"),
        ("62", "Tuberculosis", "PA", "X-ray", "tb.jpg"),
    ]
    with (tmp_path / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COVID_COLUMNS)
        writer.writeheader()
        for patient, finding, view, modality, filename in rows:
            writer.writerow({"patientid": patient, "finding": finding, "view": view,
                             "modality": modality, "folder": "images", "filename": filename})
    records = read_covid19(tmp_path)
    assert [(r.id, r.labels) for r in records] == [
        ("covid-19-pneumonia-58-prior", {"COVID-19": 1.0, "Pneumonia": 1.0, "Tuberculosis": 0.0}),
        ("16747_3_1", {"COVID-19": 0.0, "Pneumonia": 1.0, "Tuberculosis": 0.0}),
        ("normal", {"COVID-19": 0.0, "Pneumonia": 0.0, "Tuberculosis": 0.0}),
        ("tb", {"COVID-19": 0.0, "Pneumonia": 0.0, "Tuberculosis": 1.0}),
    ]
    assert records[1].meta["view"] == "AP Supine" and records[1].meta["patient"] == "327"
    assert read_radiograph(records[0].image).size == (2373, 2373)
    assert read_radiograph(records[1].image).size == (885, 1036)


def test_covid19_without_metadata():
    with pytest.raises(ConfigError, match="metadata.csv"):
        read_covid19(shared_path("fixtures/covid19"))


def test_a_relative_images_list_is_found_in_the_dataset_folder(nih_mini, tmp_path, monkeypatch):
    """``--root nih-mini --images-list dev_bbox_list.txt`` from any folder."""
    from CXRWeakLocLib.data.sources import read_dataset

    monkeypatch.chdir(tmp_path)
    records = read_dataset("chestxray14", nih_mini, Path("dev_bbox_list.txt"))
    assert len(records) == 446
    (tmp_path / "dev_bbox_list.txt").write_text("00000032_037.png\n")  # the current folder wins
    assert [r.id for r in read_dataset("chestxray14", nih_mini, Path("dev_bbox_list.txt"))] == [
        "00000032_037.png"]
