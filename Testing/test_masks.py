"""Heatmap-to-mask rules and boxes from connected regions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from CXRWeakLocLib.core.masks import (
    Box,
    MaskRule,
    apply_mask_rule,
    mask_and_boxes,
    mask_boxes,
    normalize_heatmap,
    otsu_threshold,
)


def two_blobs() -> np.ndarray:
    heatmap = np.zeros((40, 60), np.float32)
    heatmap[5:15, 5:20] = 1.0    # strong, 150 px
    heatmap[25:35, 40:50] = 0.6  # weaker, 100 px
    return heatmap


def test_fraction_of_max():
    heatmap = two_blobs()
    assert apply_mask_rule(heatmap, MaskRule("fraction_of_max", 0.5)).sum() == 250
    assert apply_mask_rule(heatmap, MaskRule("fraction_of_max", 0.7)).sum() == 150


def test_mean_plus_k_std_and_top_fraction():
    heatmap = np.arange(100, dtype=np.float32).reshape(10, 10)
    mask = apply_mask_rule(heatmap, MaskRule("mean_plus_k_std", 1.0, 0.0))
    assert mask.sum() == int((heatmap > heatmap.mean() + heatmap.std()).sum())
    assert apply_mask_rule(heatmap, MaskRule("top_fraction", 0.2, 0.0)).sum() == 20


def test_otsu_splits_a_bimodal_map():
    heatmap = np.zeros((20, 20), np.float32)
    heatmap[:, 10:] = 1.0
    heatmap += np.random.default_rng(0).normal(0, 0.05, heatmap.shape).astype(np.float32)
    assert apply_mask_rule(heatmap, MaskRule("otsu", 0.0, 0.0)).sum() == 200


def test_small_regions_are_dropped():
    heatmap = two_blobs()
    heatmap[0, 59] = 1.0  # one-pixel speck
    mask = apply_mask_rule(heatmap, MaskRule("fraction_of_max", 0.5, min_region_fraction=0.1))
    assert not mask[0, 59] and mask.sum() == 250


def test_constant_map_gives_empty_mask():
    for name in ("fraction_of_max", "otsu", "top_fraction"):
        assert not apply_mask_rule(np.ones((8, 8)), MaskRule(name, 0.5)).any()


def test_boxes_largest_first_in_pixel_coordinates():
    boxes = mask_boxes(apply_mask_rule(two_blobs(), MaskRule("fraction_of_max", 0.5)))
    assert boxes == [Box(5, 5, 20, 15), Box(40, 25, 50, 35)]
    assert boxes[0].to_xywh() == [5, 5, 15, 10] and boxes[0].area == 150


def test_normalize_and_rule_validation():
    assert normalize_heatmap(np.array([[2.0, 4.0]])).tolist() == [[0.0, 1.0]]
    with pytest.raises(ValueError, match="unknown mask rule"):
        MaskRule("guess", 1.0)
    for speck_filter in (-0.1, 1.5):  # a card or a command line out of range
        with pytest.raises(ValueError, match="min_region_fraction must be in 0-1"):
            MaskRule("otsu", 0.0, speck_filter)
    assert MaskRule().with_value(0.3) == MaskRule("fraction_of_max", 0.3)


@pytest.mark.parametrize("rule", [MaskRule("fraction_of_max", 0.5), MaskRule("otsu"),
                                  MaskRule("mean_plus_k_std", 0.8, 0.3),
                                  MaskRule("top_fraction", 0.2, 0.0)])
def test_mask_and_boxes_is_the_rule_then_the_boxes(rule):
    """One labelling for both (the Localizer's path) gives what the two steps give."""
    rng = np.random.default_rng(7)
    for _ in range(20):
        heatmap = ndimage.zoom(rng.normal(size=(9, 11)), (23, 19), order=1)
        mask, boxes = mask_and_boxes(heatmap, rule)
        np.testing.assert_array_equal(mask, apply_mask_rule(heatmap, rule))
        assert boxes == mask_boxes(mask)


def test_a_constant_heatmap_has_an_empty_mask_and_no_boxes():
    mask, boxes = mask_and_boxes(np.full((40, 30), 0.3, dtype=np.float32), MaskRule())
    assert mask.shape == (40, 30) and not mask.any() and boxes == []
    assert mask_boxes(np.zeros((40, 30), dtype=bool)) == []


def reference_mask_and_boxes(heatmap: np.ndarray, rule: MaskRule):
    """The rule as first written (before issue 24): the whole image labelled for the mask,
    small regions dropped with ``np.isin``, the mask labelled again for its boxes."""
    cut = _thresholded_reference(np.asarray(heatmap, dtype=np.float32), rule)
    eight = np.ones((3, 3), dtype=bool)
    labels, count = ndimage.label(cut, structure=eight)
    if count > 1 and rule.min_region_fraction > 0:
        sizes = np.bincount(labels.ravel())[1:]
        cut = np.isin(labels, np.flatnonzero(sizes >= rule.min_region_fraction * sizes.max()) + 1)
    labels, count = ndimage.label(cut, structure=eight)
    if count == 0:
        return cut, []
    sizes, slices = np.bincount(labels.ravel())[1:], ndimage.find_objects(labels)
    return cut, [Box(slices[i][1].start, slices[i][0].start, slices[i][1].stop, slices[i][0].stop)
                 for i in np.argsort(-sizes, kind="stable")]


def _thresholded_reference(heatmap: np.ndarray, rule: MaskRule) -> np.ndarray:
    if rule.name == "mean_plus_k_std":
        return heatmap > heatmap.mean() + rule.value * heatmap.std()
    normalized = normalize_heatmap(heatmap)
    if rule.name == "fraction_of_max":
        return normalized >= rule.value
    if rule.name == "otsu":
        return normalized > otsu_threshold(normalized)
    return normalized >= np.quantile(normalized, 1.0 - rule.value)


@pytest.mark.parametrize("rule", [MaskRule("fraction_of_max", 0.5), MaskRule("otsu"),
                                  MaskRule("mean_plus_k_std", 1.0),
                                  MaskRule("top_fraction", 0.15, 0.0)])
def test_masks_and_boxes_are_byte_identical_to_the_reference(rule):
    """On speckled maps with many regions, near the image edges too."""
    rng = np.random.default_rng(11)
    for _ in range(25):
        heatmap = ndimage.zoom(rng.normal(size=(12, 10)), (17, 23), order=1)
        mask, boxes = mask_and_boxes(heatmap, rule)
        expected_mask, expected_boxes = reference_mask_and_boxes(heatmap, rule)
        assert mask.dtype == bool and mask.tobytes() == expected_mask.tobytes()
        assert boxes == expected_boxes
