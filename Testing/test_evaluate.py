"""``evaluate``: report files, the same mask rule as ``localize``, floor and rule sweep."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import shared_path

from CXRWeakLocLib.checkpoint import load_model
from CXRWeakLocLib.core.errors import CXRWeakLocError
from CXRWeakLocLib.core.findings import CHESTXRAY14
from CXRWeakLocLib.core.masks import MaskRule, parse_mask_rule
from CXRWeakLocLib.core.radiograph import read_radiograph
from CXRWeakLocLib.data.synthetic import read_synthetic, write_synthetic_dataset
from CXRWeakLocLib.evaluation import (
    CHOOSE_MODE,
    HEADLINE_PREFIX,
    best_sweep_rule,
    compare_evaluations,
    cross_validate_choice,
    evaluate_model,
)
from CXRWeakLocLib.localize import Localizer
from CXRWeakLocLib.metrics import MODES, LocalizationReport, LocalizationScore, annotation_mask


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), 12, size=96, seed=5)


@pytest.fixture(scope="module")
def report(synthetic_set, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    result = evaluate_model("synthetic", synthetic_set, str(tiny_model), out, device="cpu",
                            sweep=True, progress=False)
    return result, out


def test_report_files(report, synthetic_set):
    result, out = report
    for name in ("metrics.json", "metrics.md", "per_image.csv", "iou_accuracy.png"):
        assert (out / name).is_file(), name
    data = json.loads((out / "metrics.json").read_text())
    records = read_synthetic(synthetic_set)
    regions = sum(len(r.annotations) for r in records)
    assert data["images"] == len(records) and data["boxes"] == regions
    assert "0.3" in data["localization"]["mean"]["accuracy_pixel"]
    assert data["no_model_floor"] is not None
    assert "T(IoU)=0.3" in (out / "metrics.md").read_text()
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert len(rows) == regions
    for mode, prefix in (("pixel", ""), ("box", "box_")):
        floor_at_03 = data["no_model_floor"]["mean"][f"accuracy_{mode}"]["0.3"]
        interval = data["iou_accuracy_0.3_interval"][mode]
        mean_at_03 = data["localization"]["mean"][f"accuracy_{mode}"]["0.3"]
        assert interval["estimate"] == pytest.approx(mean_at_03)
        assert interval["low"] <= interval["estimate"] <= interval["high"]
        assert result.headline()[f"{prefix}iou_accuracy_0.3_ci95"] == [interval["low"],
                                                                        interval["high"]]
        # every synthetic region has a box: the model is compared with the floor region by
        # region
        above = data["iou_accuracy_0.3_minus_floor"][mode]
        assert above["estimate"] == pytest.approx(mean_at_03 - floor_at_03)
        assert above["low"] <= above["estimate"] <= above["high"]
        floor_hits = {}
        for row in rows:
            floor_hits.setdefault(row["finding"], []).append(float(row[f"floor_iou_{mode}"]) >= 0.3)
        assert np.mean([np.mean(v) for v in floor_hits.values()]) == pytest.approx(floor_at_03)


def test_evaluate_scores_the_masks_localize_exports(report, synthetic_set, tiny_model):
    _, out = report
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    row = rows[0]
    record = next(r for r in read_synthetic(synthetic_set) if r.id == row["image"])
    annotation = next(a for a in record.annotations if a.finding == row["finding"])
    radiograph = read_radiograph(record.image)
    result = Localizer(load_model(tiny_model)).localize([radiograph], [row["finding"]])[0]
    predicted = result.get(row["finding"]).mask
    truth = annotation_mask(annotation, radiograph.size)
    iou = (predicted & truth).sum() / (predicted | truth).sum()
    assert float(row["iou_pixel"]) == pytest.approx(iou, abs=1e-4)
    assert float(row["probability"]) == pytest.approx(result.get(row["finding"]).probability,
                                                      abs=1e-4)


@pytest.mark.parametrize("mode", MODES)
def test_sweep_and_best_rule(report, mode):
    result, _ = report
    prefix = HEADLINE_PREFIX[mode]
    assert len(result.sweep) > 5
    best = best_sweep_rule(result, mode)
    top = max(s[f"{prefix}iou_accuracy_0.3"] for s in result.sweep)
    assert any(s["name"] == best.name and s["value"] == best.value
               and s[f"{prefix}iou_accuracy_0.3"] == top for s in result.sweep)
    for row in result.sweep:  # the headline mean is the mean of the per-finding figures
        per_finding = row[f"{prefix}per_finding_iou_accuracy_0.3"]
        assert per_finding and set(per_finding) <= {f.name for f in CHESTXRAY14}
        assert np.mean(list(per_finding.values())) == pytest.approx(
            row[f"{prefix}iou_accuracy_0.3"])


def test_sweep_row_of_the_report_rule_matches_its_headline(report):
    """Scoring a rule in the sweep gives the figures a run under that rule reports."""
    result, _ = report
    row = next(s for s in result.sweep if s["rule"] == str(result.mask_rule))
    head = result.headline()
    for prefix in HEADLINE_PREFIX.values():
        assert row[f"{prefix}iou_accuracy_0.3"] == pytest.approx(head[f"{prefix}iou_accuracy_0.3"])
        assert row[f"{prefix}mtiou"] == pytest.approx(head[f"{prefix}mtiou"])


@pytest.mark.parametrize("mode", MODES)
def test_chosen_rule_report_equals_a_run_under_that_rule(report, synthetic_set, tiny_model,
                                                          tmp_path, mode):
    swept, _ = report
    chosen = evaluate_model("synthetic", synthetic_set, str(tiny_model), tmp_path / "chosen",
                            device="cpu", choose_rule=True, choose_in=mode, progress=False)
    best = best_sweep_rule(swept, mode)
    assert chosen.mask_rule == best and chosen.rule_chosen_in == mode
    assert (f"chosen on this set: the sweep's best {mode}-mode"
            in (tmp_path / "chosen" / "metrics.md").read_text())
    assert json.loads((tmp_path / "chosen" / "metrics.json").read_text())[
        "mask_rule_chosen_in_mode"] == mode
    given = evaluate_model("synthetic", synthetic_set, str(tiny_model), tmp_path / "given",
                           device="cpu", mask_rule=best, progress=False)
    assert chosen.localization.to_dict() == given.localization.to_dict()
    assert chosen.rows == given.rows and chosen.intervals == given.intervals


def test_rules_are_chosen_in_box_mode_by_default_and_unknown_modes_refused(
        synthetic_set, tiny_model, tmp_path):
    assert CHOOSE_MODE == "box"
    with pytest.raises(CXRWeakLocError, match="unknown mode 'boxes'"):
        evaluate_model("synthetic", synthetic_set, str(tiny_model), tmp_path / "x",
                       device="cpu", choose_rule=True, choose_in="boxes", progress=False)
    assert not (tmp_path / "x").exists()


def test_floor_is_the_mean_box_scored_region_by_region():
    from CXRWeakLocLib.evaluation.loop import _floor_scores

    left, right = np.zeros((50, 50), bool), np.zeros((50, 50), bool)
    left[10:20, 10:20], right[10:20, 14:24] = True, True
    inputs = [("Mass", (10.0, 10.0, 10.0, 10.0), left), ("Mass", (14.0, 10.0, 10.0, 10.0), right)]
    scores = _floor_scores(inputs)
    # both regions get the mean box x 12-22: 8 of 10 columns shared with each
    assert [score.iou_pixel for _, score in scores] == pytest.approx([80 / 120, 80 / 120])


def test_parse_mask_rule():
    assert parse_mask_rule("fraction_of_max:0.4") == MaskRule("fraction_of_max", 0.4)
    assert parse_mask_rule("otsu").name == "otsu"
    with pytest.raises(CXRWeakLocError, match="unknown mask rule"):
        parse_mask_rule("magic:1")
    with pytest.raises(CXRWeakLocError, match="must be numbers"):
        parse_mask_rule("otsu:x")
    every_region = parse_mask_rule("fraction_of_max:0.706:0")
    assert every_region == MaskRule("fraction_of_max", 0.706, min_region_fraction=0.0)
    assert parse_mask_rule("top_fraction::0.2") == MaskRule("top_fraction", 0.5, 0.2)
    with pytest.raises(CXRWeakLocError, match="min_region_fraction must be in 0-1"):
        parse_mask_rule("otsu:0:2")
    with pytest.raises(CXRWeakLocError, match="expected name"):
        parse_mask_rule("otsu:0:0:0")


def test_cli_evaluate_and_bad_root(synthetic_set, tiny_model, tmp_path):
    run = [sys.executable, "-m", "CXRWeakLocLib", "evaluate", "--dataset", "synthetic",
           "--model", str(tiny_model), "--device", "cpu"]
    good = subprocess.run([*run, "--root", str(synthetic_set), "--out", str(tmp_path / "e"),
                           "--mask-rule", "fraction_of_max:0.706:0"],
                          capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    assert "IoU-accuracy@0.3" in good.stdout
    rule = json.loads((tmp_path / "e" / "metrics.json").read_text())["mask_rule"]
    assert rule == {"name": "fraction_of_max", "value": 0.706, "min_region_fraction": 0.0}
    bad = subprocess.run([*run, "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "f")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not found" in bad.stderr


def test_cli_evaluate_covid19_collection_scores_classification_only(tiny_model, tmp_path):
    """The COVID-19 collection has labels, no regions: evaluate reports ROC-AUC, no IoU."""
    fixtures = shared_path("fixtures/covid19")
    root = tmp_path / "covid-chestxray-dataset"
    (root / "images").mkdir(parents=True)
    for image in fixtures.glob("*.jpg"):
        shutil.copy(image, root / "images" / image.name)
    subprocess.run([sys.executable, "-m", "CXRWeakLocLib", "sample",
                    str(root / "images" / "normal.png")], check=True, capture_output=True)
    rows = [("58", "Pneumonia/Viral/COVID-19", "covid-19-pneumonia-58-prior.jpg"),
            ("327", "Pneumonia/Bacterial/Streptococcus", "16747_3_1.jpg"),
            ("61", "No Finding", "normal.png")]
    with (root / "metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patientid", "finding", "view", "modality", "folder", "filename"])
        writer.writerows([(patient, finding, "PA", "X-ray", "images", name)
                          for patient, finding, name in rows])
    run = subprocess.run([sys.executable, "-m", "CXRWeakLocLib", "evaluate", "--dataset",
                          "covid19", "--root", str(root), "--model", str(tiny_model),
                          "--device", "cpu", "--out", str(tmp_path / "e")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "3 images, 0 regions" in run.stdout
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    pneumonia = metrics["classification"]["findings"]["Pneumonia"]
    assert (pneumonia["n_positive"], pneumonia["n_negative"]) == (2, 1)
    assert 0.0 <= pneumonia["roc_auc"] <= 1.0
    effusion = metrics["classification"]["findings"]["Effusion"]  # the collection is silent
    assert (effusion["n_positive"], effusion["n_negative"], effusion["roc_auc"]) == (0, 0, None)
    assert "| Pneumonia |" in (tmp_path / "e" / "metrics.md").read_text()


def test_compare_two_evaluations_region_by_region(report, synthetic_set, tiny_model, tmp_path):
    _, first = report
    second = tmp_path / "otsu"
    evaluate_model("synthetic", synthetic_set, str(tiny_model), second, device="cpu",
                   mask_rule="otsu", progress=False)
    comparison = compare_evaluations(first, second)
    at_03 = [json.loads((f / "metrics.json").read_text())["localization"]["mean"]
             ["accuracy_pixel"]["0.3"] for f in (first, second)]
    assert comparison.difference.estimate == pytest.approx(at_03[0] - at_03[1])
    assert comparison.regions == len(list(csv.DictReader((first / "per_image.csv").open())))
    box = compare_evaluations(first, second, mode="box")
    box_at_03 = [json.loads((f / "metrics.json").read_text())["localization"]["mean"]
                 ["accuracy_box"]["0.3"] for f in (first, second)]
    assert box.difference.estimate == pytest.approx(box_at_03[0] - box_at_03[1])
    itself = compare_evaluations(first, first)
    assert itself.difference.estimate == 0 and itself.verdict == "no clear difference"
    two_runs = compare_evaluations([first, second], second, mode="box")  # runs of one recipe
    assert two_runs.difference.estimate == pytest.approx(box.difference.estimate / 2)
    assert two_runs.first.endswith("(2 runs)") and two_runs.regions == box.regions
    same_run_twice = compare_evaluations([first, first], second, mode="box")
    assert same_run_twice.difference.estimate == pytest.approx(box.difference.estimate)

    cli = [sys.executable, "-m", "CXRWeakLocLib", "compare"]
    done = subprocess.run([*cli, str(first), str(second)], capture_output=True, text=True)
    assert done.returncode == 0 and comparison.summary_line() in done.stdout, done.stderr
    runs = subprocess.run([*cli, str(first), str(second), "--against", str(second),
                           "--mode", "box"], capture_output=True, text=True)
    assert runs.returncode == 0 and two_runs.summary_line() in runs.stdout, runs.stderr
    fewer = tmp_path / "fewer"  # one region short: not the same ground truth
    fewer.mkdir()
    (fewer / "metrics.json").write_text((second / "metrics.json").read_text())
    lines = (second / "per_image.csv").read_text().splitlines()
    (fewer / "per_image.csv").write_text("\n".join(lines[:-1]) + "\n")
    for bad in ([str(first), str(fewer)], [str(first), str(tmp_path / "nowhere")],
                [str(first), str(second), str(first)]):
        refused = subprocess.run([*cli, *bad], capture_output=True, text=True)
        assert refused.returncode != 0 and refused.stderr.count("\n") == 1, refused.stderr
        assert "Traceback" not in refused.stderr
    with pytest.raises(CXRWeakLocError, match="same regions"):
        compare_evaluations([first, fewer], second)


def test_chestxray14_dev_boxes_are_read(nih_mini):
    from CXRWeakLocLib.data.sources import read_dataset

    records = read_dataset("chestxray14", nih_mini, nih_mini / "dev_bbox_list.txt",
                           annotations=True)
    assert len(records) == 446
    assert sum(len(r.annotations) for r in records) == 514
    findings = {a.finding for r in records for a in r.annotations}
    assert "Infiltration" in findings and "Infiltrate" not in findings
    training = read_dataset("chestxray14", nih_mini, nih_mini / "train_val_list.txt")
    assert len(training) == 1043 and all(not r.annotations for r in training)


def test_cli_evaluates_chexlocalize_masks(tiny_model, tmp_path):
    root = shared_path("fixtures/chexpert")
    out = tmp_path / "chexlocalize"
    done = subprocess.run([sys.executable, "-m", "CXRWeakLocLib", "evaluate", "--dataset",
                           "chexpert", "--root", str(root), "--model", str(tiny_model),
                           "--device", "cpu", "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    data = json.loads((out / "metrics.json").read_text())
    assert (data["images"], data["boxes"]) == (2, 1)  # one Cardiomegaly mask, one image without
    with (out / "per_image.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["image"], r["finding"]) for r in rows] == [
        ("patient64541_study1_view1_frontal", "Cardiomegaly")]
    # a mask is not a box: no floor to compare with, so no paired difference either
    assert data["iou_accuracy_0.3_minus_floor"] == {} and "floor_iou_pixel" not in rows[0]


def test_chexpert_without_chexlocalize_gives_labels_only(tmp_path, caplog):
    from CXRWeakLocLib.data.sources import read_dataset

    root = shared_path("fixtures/chexpert")
    (tmp_path / "valid.csv").write_text((root / "valid.csv").read_text())
    records = read_dataset("chexpert", tmp_path, annotations=True)
    assert len(records) == 2 and not any(r.annotations for r in records)
    assert "gt_segmentations_val.json" in caplog.text


def _score(iou: float) -> LocalizationScore:
    return LocalizationScore(iou_pixel=iou, iou_box=iou, ior=iou, poi_precision=iou,
                             poi_coverage=iou, pointing_hit=1.0, ncc=0.0)


def _patients_in_two_folds(folds: int = 5) -> tuple[str, str]:
    from CXRWeakLocLib.evaluation.rules import _fold

    names = [f"patient-{i}" for i in range(50)]
    first = names[0]
    return first, next(n for n in names if _fold(n, folds) != _fold(first, folds))


def test_cross_validated_choice_exposes_a_rule_that_only_fits_its_own_patients():
    """Rule A hits patient 1's boxes only, rule B patient 2's: chosen on the other
    patient, each fold gets the wrong rule, so the held-out figure is 0 while the best
    rule on all of them scores 0.5."""
    one, two = _patients_in_two_folds()
    patients = [one, one, two, two]
    rules = [MaskRule("fraction_of_max", 0.5), MaskRule("otsu", 0.0)]
    scores = [[("Mass", _score(v)) for v in (0.9, 0.9, 0.0, 0.0)],
              [("Mass", _score(v)) for v in (0.0, 0.0, 0.9, 0.9)]]
    for mode in MODES:
        cv = cross_validate_choice(rules, scores, patients, mode)
        assert cv.folds == 2 and sorted(cv.rules) == sorted(map(str, rules))
        assert cv.localization.mean.accuracy(mode)[0.3] == 0.0
    assert cross_validate_choice(rules, scores, [one] * 4, "box") is None  # one fold


def test_cross_validated_choice_of_a_rule_that_fits_everyone_is_that_rule():
    patients = [f"patient-{i}" for i in range(20)]
    rules = [MaskRule("fraction_of_max", 0.5), MaskRule("otsu", 0.0)]
    good = [0.6 if i % 3 else 0.1 for i in range(20)]
    scores = [[("Mass", _score(v)) for v in good], [("Mass", _score(v / 2)) for v in good]]
    cv = cross_validate_choice(rules, scores, patients, "box")
    assert set(cv.rules) == {str(rules[0])}
    expected = LocalizationReport.from_scores(scores[0]).mean.accuracy("box")[0.3]
    assert cv.localization.mean.accuracy("box")[0.3] == pytest.approx(expected)


def test_choosing_a_rule_reports_the_cross_validated_figure(report, synthetic_set, tiny_model,
                                                             tmp_path):
    swept, _ = report
    assert swept.cross_validated is None and "cv_box_iou_accuracy_0.3" not in swept.headline()
    chosen = evaluate_model("synthetic", synthetic_set, str(tiny_model), tmp_path / "c",
                            device="cpu", choose_rule=True, progress=False)
    cv = chosen.cross_validated
    assert cv is not None and cv.folds >= 2 and cv.mode == CHOOSE_MODE
    assert cv.localization.mean.count == chosen.boxes
    head = chosen.headline()
    assert head["cv_box_iou_accuracy_0.3"] == cv.localization.mean.accuracy("box")[0.3]
    saved = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert saved["mask_rule_cross_validated"]["rules"] == cv.rules
    assert "chosen on other patients" in (tmp_path / "c" / "metrics.md").read_text()
