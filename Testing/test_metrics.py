"""Metrics on hand-computed cases (every expected value is worked out in the comment)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from CXRWeakLocLib.core.masks import Box, MaskRule
from CXRWeakLocLib.data.records import Annotation
from CXRWeakLocLib.evaluation.report import localization_table
from CXRWeakLocLib.metrics import (
    ClassificationReport,
    LocalizationReport,
    LocalizationScore,
    annotation_mask,
    average_precision,
    box_iou,
    box_to_mask,
    floor_heatmap,
    iou_accuracy,
    mask_bounding_box,
    mean_iou_accuracy_interval,
    roc_auc,
    score_localization,
    xywh_to_xyxy,
    xyxy_to_xywh,
)

#: Keep every pixel of the normalised map >= 0.5 and every region, however small.
RULE = MaskRule("fraction_of_max", 0.5, min_region_fraction=0.0)


def _score(iou_pixel: float, iou_box: float = 0.0, hit: bool = False) -> LocalizationScore:
    return LocalizationScore(iou_pixel, iou_box, 0.5, 0.5, 0.25, hit, 0.1)


# ------------------------------------------------------------------ boxes and masks


def test_box_to_mask_integer_box_covers_w_by_h_pixels():
    mask = box_to_mask((1, 2, 3, 2), (5, 6))
    expected = np.zeros((5, 6), dtype=bool)
    expected[2:4, 1:4] = True
    np.testing.assert_array_equal(mask, expected)


def test_box_to_mask_float_box_takes_pixels_whose_centre_is_inside():
    # columns: centres 1.5, 2.5 lie in [1.4, 3.4); rows: only centre 1.5 lies in [0.6, 1.6)
    mask = box_to_mask((1.4, 0.6, 2.0, 1.0), (3, 5))
    assert sorted(zip(*np.nonzero(mask), strict=True)) == [(1, 1), (1, 2)]
    # half-open: centre 0.5 on the left edge is in, centre 1.5 on the right edge is out
    assert box_to_mask((0.5, 0, 1.0, 1), (1, 3)).tolist() == [[True, False, False]]


def test_box_to_mask_clips_to_the_image_and_rejects_negative_sizes():
    assert box_to_mask((-2, -2, 4, 4), (3, 3)).sum() == 4  # rows 0-1, columns 0-1
    with pytest.raises(ValueError, match="negative"):
        box_to_mask((0, 0, -1, 2), (3, 3))


def test_xyxy_xywh_conversions():
    assert xyxy_to_xywh([10, 20, 40, 60]) == (10.0, 20.0, 30.0, 40.0)
    assert xywh_to_xyxy((10, 20, 30, 40)) == (10.0, 20.0, 40.0, 60.0)


def test_annotation_mask_prefers_the_mask_and_falls_back_to_the_box():
    own = np.zeros((4, 4), dtype=bool)
    own[0, 0] = True
    np.testing.assert_array_equal(
        annotation_mask(Annotation("Mass", (1, 1, 2, 2), own), (4, 4)), own
    )
    assert annotation_mask(Annotation("Mass", (1, 1, 2, 2)), (4, 4)).sum() == 4
    with pytest.raises(ValueError, match="neither"):
        annotation_mask(Annotation("Mass"), (4, 4))
    with pytest.raises(ValueError, match="shape"):
        annotation_mask(Annotation("Mass", mask=own), (5, 4))


def test_box_iou_of_two_known_boxes():
    # 4x4 boxes shifted by (2, 2): intersection 2x2 = 4, union 16 + 16 - 4 = 28
    assert box_iou(Box(0, 0, 4, 4), Box(2, 2, 6, 6)) == pytest.approx(4 / 28)
    assert box_iou(Box(0, 0, 2, 2), Box(3, 3, 5, 5)) == 0.0


def test_mask_bounding_box_spans_all_components():
    mask = np.zeros((6, 6), dtype=bool)
    mask[1, 1] = mask[4, 3] = True
    assert mask_bounding_box(mask) == Box(1, 1, 4, 5)
    with pytest.raises(ValueError, match="empty"):
        mask_bounding_box(np.zeros((3, 3), dtype=bool))


def test_floor_heatmap_is_the_mean_box():
    # mean of (0, 0, 2, 2) and (2, 2, 4, 4) is (1, 1, 3, 3): rows 1-3, columns 1-3
    floor = floor_heatmap([(0, 0, 2, 2), (2, 2, 4, 4)], (6, 6))
    expected = np.zeros((6, 6), dtype=np.float32)
    expected[1:4, 1:4] = 1.0
    assert floor.dtype == np.float32
    np.testing.assert_array_equal(floor, expected)
    with pytest.raises(ValueError, match="at least one box"):
        floor_heatmap([], (6, 6))


# --------------------------------------------------------------- per-image scores


def test_l_shaped_prediction_differs_between_pixel_and_box_modes():
    gt = box_to_mask((0, 0, 4, 4), (6, 6))  # 16 pixels, rows/columns 0-3
    heatmap = np.zeros((6, 6))
    heatmap[0:4, 0] = 1.0  # left column of the box
    heatmap[3, 0:4] = 1.0  # bottom row: an L of 4 + 4 - 1 = 7 pixels
    score = score_localization(heatmap, gt, RULE)
    assert score.iou_pixel == pytest.approx(7 / 16)
    assert score.iou_box == 1.0  # the L's bounding box is the ground-truth box
    assert score.ior == score.poi_precision == 1.0  # every predicted pixel is inside
    assert score.poi_coverage == pytest.approx(7 / 16)


def test_box_mode_takes_the_best_component_not_the_largest():
    gt = box_to_mask((0, 0, 2, 2), (8, 8))  # 4 pixels
    heatmap = np.zeros((8, 8))
    heatmap[0:2, 0:2] = 1.0  # 4 pixels, exactly the ground truth
    heatmap[4:7, 4:7] = 1.0  # 9 pixels, far away (the largest component)
    score = score_localization(heatmap, gt, RULE)
    assert score.iou_box == 1.0
    assert score.iou_pixel == pytest.approx(4 / 13)
    assert score.ior == pytest.approx(4 / 13)
    assert score.poi_coverage == 1.0


def test_poi_both_forms_on_a_known_overlap():
    gt = box_to_mask((0, 0, 4, 2), (6, 6))  # rows 0-1, columns 0-3: 8 pixels
    heatmap = np.zeros((6, 6))
    heatmap[1:3, 2:5] = 1.0  # rows 1-2, columns 2-4: 6 pixels, 2 of them in G
    score = score_localization(heatmap, gt, RULE)
    assert score.poi_precision == pytest.approx(2 / 6)
    assert score.poi_coverage == pytest.approx(2 / 8)
    assert score.iou_pixel == pytest.approx(2 / 12)
    # boxes (2,1)-(5,3) and (0,0)-(4,2): intersection 2x1 = 2, union 6 + 8 - 2
    assert score.iou_box == pytest.approx(2 / 12)


def test_empty_prediction_scores_zero():
    gt = box_to_mask((1, 1, 2, 2), (5, 5))
    score = score_localization(np.full((5, 5), 0.3), gt, RULE)  # constant map: empty mask
    assert (score.iou_pixel, score.iou_box, score.ior, score.poi_coverage) == (0, 0, 0, 0)
    assert score.ncc == 0.0


def test_pointing_game_in_and_out():
    gt = box_to_mask((1, 1, 2, 2), (5, 5))
    heatmap = np.zeros((5, 5))
    heatmap[2, 2] = 1.0
    assert score_localization(heatmap, gt, RULE).pointing_hit == 1.0
    heatmap[4, 4] = 2.0
    assert score_localization(heatmap, gt, RULE).pointing_hit == 0.0


def test_pointing_game_counts_a_plateau_of_maxima_fairly():
    """Tied maxima score the fraction inside the region, whatever their order."""
    gt = box_to_mask((1, 1, 2, 2), (5, 5))  # rows 1-2, columns 1-2
    heatmap = np.zeros((5, 5))
    heatmap[0, 0] = heatmap[0, 1] = 1.0  # first in row-major order: outside
    heatmap[1, 1] = heatmap[2, 2] = 1.0  # inside
    assert score_localization(heatmap, gt, RULE).pointing_hit == pytest.approx(0.5)
    constant = np.full((5, 5), 0.3)  # every pixel ties: the region's share of the image
    assert score_localization(constant, gt, RULE).pointing_hit == pytest.approx(4 / 25)


def test_ncc_is_one_for_the_mask_and_minus_one_for_its_inverse():
    gt = box_to_mask((1, 1, 2, 3), (5, 5))
    assert score_localization(gt.astype(float), gt, RULE).ncc == pytest.approx(1.0)
    assert score_localization(3.0 * gt + 2.0, gt, RULE).ncc == pytest.approx(1.0)
    assert score_localization(1.0 - gt, gt, RULE).ncc == pytest.approx(-1.0)


def test_score_localization_rejects_bad_inputs():
    with pytest.raises(ValueError, match="empty"):
        score_localization(np.ones((3, 3)), np.zeros((3, 3), dtype=bool), RULE)
    with pytest.raises(ValueError, match="equal 2-D"):
        score_localization(np.ones((3, 4)), np.ones((3, 3), dtype=bool), RULE)


# -------------------------------------------------------------------- aggregation


def test_iou_accuracy_counts_iou_equal_to_the_threshold():
    accuracy = iou_accuracy([0.3, 0.29, 0.7, 0.05], thresholds=(0.1, 0.3, 0.7))
    assert accuracy == {0.1: 0.75, 0.3: 0.5, 0.7: 0.25}
    assert all(math.isnan(v) for v in iou_accuracy([], (0.3,)).values())


def test_iou_of_exactly_three_tenths_from_pixels_reaches_t_03():
    gt = box_to_mask((0, 0, 10, 1), (2, 10))  # 10 pixels
    heatmap = np.zeros((2, 10))
    heatmap[0, 0:3] = 1.0  # 3 of them: IoU 3 / 10
    iou = score_localization(heatmap, gt, RULE).iou_pixel
    assert iou_accuracy([iou], (0.3, 0.4)) == {0.3: 1.0, 0.4: 0.0}


def _report() -> LocalizationReport:
    # Cardiomegaly given first: the report still lists NIH's order
    return LocalizationReport.from_scores(
        [
            ("Cardiomegaly", _score(0.75, 0.75, hit=True)),
            ("Atelectasis", _score(0.35, 0.65, hit=True)),
            ("Atelectasis", _score(0.05, 0.15, hit=False)),
        ]
    )


def test_report_per_finding_and_mean_over_the_findings_present():
    report = _report()
    assert list(report.findings) == ["Atelectasis", "Cardiomegaly"]
    atelectasis = report.findings["Atelectasis"]
    assert atelectasis.count == 2
    # pixel: 0.35 reaches 0.1-0.3, 0.05 none -> 0.5 at three thresholds, 0 at four
    assert atelectasis.accuracy_pixel[0.3] == 0.5
    assert atelectasis.accuracy_pixel[0.4] == 0.0
    assert atelectasis.mtiou_pixel == pytest.approx(1.5 / 7)
    # box: 0.65 reaches 0.1-0.6, 0.15 only 0.1 -> 1 at 0.1, 0.5 at 0.2-0.6, 0 at 0.7
    assert atelectasis.accuracy_box[0.1] == 1.0
    assert atelectasis.accuracy_box[0.6] == 0.5
    assert atelectasis.mtiou_box == pytest.approx((1.0 + 5 * 0.5 + 0.0) / 7)
    assert atelectasis.pointing == 0.5
    # mean over the 2 findings present, not over 8 or 14
    # Cardiomegaly's 0.75 reaches all 7 thresholds: mTIoU 1
    assert report.mean.mtiou_pixel == pytest.approx((1.5 / 7 + 1.0) / 2)
    assert report.mean.accuracy_pixel[0.3] == pytest.approx((0.5 + 1.0) / 2)
    assert report.mean.pointing == pytest.approx(0.75)
    assert report.mean.count == 3
    assert report.mean.ior == 0.5 and report.mean.poi_coverage == 0.25
    assert report.mean.ncc == pytest.approx(0.1)


def test_report_to_dict_is_strict_json():
    data = json.loads(json.dumps(_report().to_dict(), allow_nan=False))
    assert data["thresholds"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert data["findings"]["Cardiomegaly"]["accuracy_pixel"]["0.7"] == 1.0
    assert data["findings"]["Cardiomegaly"]["accuracy_pixel"]["0.1"] == 1.0
    assert data["mean"]["count"] == 3
    assert data["mean"]["accuracy_box"]["0.7"] == pytest.approx(0.5)


def test_report_markdown_table():
    report = LocalizationReport.from_scores(
        [("Effusion", _score(0.35)), ("Effusion", _score(0.05)), ("Mass", _score(0.55))],
        thresholds=(0.3, 0.5),
    )
    assert localization_table(report, "pixel") == (
        "| Finding | T(IoU)=0.3 | T(IoU)=0.5 | n |\n"
        "|---|---:|---:|---:|\n"
        "| Effusion | 0.50 | 0.00 | 2 |\n"
        "| Mass | 1.00 | 1.00 | 1 |\n"
        "| Mean | 0.75 | 0.50 | 3 |\n"
    )
    assert "| Mean | 0.00 | 0.00 | 3 |" in localization_table(report, "box")
    with pytest.raises(ValueError, match="unknown mode"):
        localization_table(report, "voxel")


def test_empty_report_has_nan_means_and_null_json():
    report = LocalizationReport.from_scores([])
    assert report.findings == {} and report.mean.count == 0
    assert math.isnan(report.mean.mtiou_pixel)
    assert report.to_dict()["mean"]["mtiou_pixel"] is None


# ----------------------------------------------------------------- classification


def test_roc_auc_with_mann_whitney_ranks():
    # positive 0.35 beats 0.1 only, 0.8 beats both negatives: 3 of 4 pairs
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)


def test_roc_auc_counts_ties_as_one_half():
    # pairs (pos 0.7, neg 0.7) = 1/2 and (pos 0.3, neg 0.7) = 0 -> 0.5 / 2
    assert roc_auc([0.7, 0.7, 0.3], [0, 1, 1]) == pytest.approx(0.25)
    assert roc_auc([0.7, 0.7, 0.3], [1, 0, 1]) == pytest.approx(0.25)


def test_average_precision_step_wise():
    # thresholds 0.8: P 1 R 1/2; 0.4: P 1/2 R 1/2; 0.35: P 2/3 R 1 -> 1/2 + 1/2 * 2/3
    assert average_precision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(5 / 6)


def test_average_precision_treats_tied_scores_as_one_threshold():
    # 0.7 (one pos, one neg): P 1/2 R 1/2; 0.3: P 2/3 R 1 -> 1/4 + 1/3, in either order
    assert average_precision([0.7, 0.7, 0.3], [1, 0, 1]) == pytest.approx(7 / 12)
    assert average_precision([0.7, 0.7, 0.3], [0, 1, 1]) == pytest.approx(7 / 12)


def test_nan_labels_are_excluded_and_one_class_gives_nan():
    nan = math.nan
    # the unknown image has the top score; counted as a negative it would lower both
    assert roc_auc([0.1, 0.4, 0.35, 0.8, 0.99], [0, 0, 1, 1, nan]) == pytest.approx(0.75)
    assert average_precision([0.1, 0.4, 0.35, 0.8, 0.99], [0, 0, 1, 1, nan]) == pytest.approx(5 / 6)
    assert math.isnan(roc_auc([0.2, 0.9, 0.5], [1, 1, nan]))
    assert math.isnan(average_precision([0.2, 0.9], [0, 0]))
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        roc_auc([0.2, 0.9], [0, 2])


def test_classification_report_means_skip_nan_findings():
    nan = math.nan
    scores = np.array([[0.1, 0.5], [0.4, 0.6], [0.35, 0.7], [0.8, 0.2]])
    labels = np.array([[0, 1], [0, 1], [1, nan], [1, 1]])
    report = ClassificationReport.from_arrays(["Mass", "Nodule"], scores, labels)
    assert report.findings["Mass"].roc_auc == pytest.approx(0.75)
    assert report.findings["Mass"].pr_auc == pytest.approx(5 / 6)
    assert (report.findings["Nodule"].n_positive, report.findings["Nodule"].n_negative) == (3, 0)
    assert math.isnan(report.findings["Nodule"].roc_auc)
    assert report.mean_roc_auc == pytest.approx(0.75)
    assert report.mean_pr_auc == pytest.approx(5 / 6)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["findings"]["Nodule"]["roc_auc"] is None
    assert data["mean_roc_auc"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="must be"):
        ClassificationReport.from_arrays(["Mass"], scores, labels)


# ------------------------------------------------------------------ confidence intervals


def test_interval_of_certain_outcomes_has_no_width():
    scores = [("Mass", 0.9)] * 5 + [("Nodule", 0.0)] * 7
    interval = mean_iou_accuracy_interval(scores, threshold=0.3)
    assert (interval.estimate, interval.low, interval.high) == (0.5, 0.5, 0.5)


def test_interval_is_the_macro_mean_and_narrows_with_more_boxes():
    # Mass: 1 of 4 hits (0.25); Nodule: 3 of 4 (0.75): macro mean 0.5
    few = [("Mass", 0.5), ("Mass", 0.1), ("Mass", 0.1), ("Mass", 0.1),
           ("Nodule", 0.4), ("Nodule", 0.3), ("Nodule", 0.31), ("Nodule", 0.0)]
    small = mean_iou_accuracy_interval(few, threshold=0.3, seed=1)
    large = mean_iou_accuracy_interval(few * 25, threshold=0.3, seed=1)
    assert small.estimate == large.estimate == 0.5
    assert small.low < 0.5 < small.high
    assert large.high - large.low < (small.high - small.low) / 2
    assert mean_iou_accuracy_interval(few, 0.3, seed=1) == small  # seeded


def test_interval_refuses_no_scores():
    with pytest.raises(ValueError, match="no scores"):
        mean_iou_accuracy_interval([])


def test_paired_difference_on_hand_built_regions():
    from CXRWeakLocLib.metrics import paired_iou_accuracy_difference

    # finding A: model hits 2 of 3 boxes, baseline 1 of 3; finding B: both hit 1 of 2
    pairs = [("A", 0.5, 0.5), ("A", 0.4, 0.1), ("A", 0.0, 0.0), ("B", 0.9, 0.8), ("B", 0.0, 0.0)]
    interval = paired_iou_accuracy_difference(pairs)
    assert interval.estimate == pytest.approx((1 / 3 + 0) / 2)
    assert interval.low <= interval.estimate <= interval.high
    same = paired_iou_accuracy_difference([(f, a, a) for f, a, _ in pairs])
    assert (same.estimate, same.low, same.high) == (0, 0, 0)  # identical models never differ
    better = paired_iou_accuracy_difference([("A", 0.5, 0.1)] * 20 + [("A", 0.1, 0.1)] * 20)
    assert better.low > 0 and better.estimate == pytest.approx(0.5)


def test_paired_difference_of_several_runs_scores_their_hit_fraction():
    from CXRWeakLocLib.metrics import paired_iou_accuracy_difference

    # three runs of A: the first box reached by 2 of 3 runs, the second by none;
    # B reaches the first box only
    runs = paired_iou_accuracy_difference([("A", [0.5, 0.31, 0.2], 0.4), ("A", [0.1] * 3, 0.0)])
    assert runs.estimate == pytest.approx(((2 / 3 - 1) + 0) / 2)
    one_run = paired_iou_accuracy_difference([("A", [0.5], 0.4), ("A", [0.1], 0.0)])
    assert one_run.estimate == paired_iou_accuracy_difference(
        [("A", 0.5, 0.4), ("A", 0.1, 0.0)]).estimate == 0
