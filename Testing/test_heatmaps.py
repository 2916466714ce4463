"""Heatmaps on the model's grid: the one resampling every reader uses, the grid each result
carries, and the heatmap NRRD's geometry as pynrrd and Slicer read it."""

from __future__ import annotations

import nrrd
import numpy as np
import pytest
import slicerio
import torch
from conftest import mirrored_copy_of_the_real_dicom, shared_path
from test_export import LPS_TO_RAS, finding, synthetic_radiograph
from test_masks import reference_mask_and_boxes

from CXRWeakLocLib.core.heatmaps import grid_matrix, resample_heatmap
from CXRWeakLocLib.core.masks import MaskRule, apply_mask_rule
from CXRWeakLocLib.core.radiograph import read_radiograph
from CXRWeakLocLib.core.results import LocalizationResult
from CXRWeakLocLib.export import export_all
from CXRWeakLocLib.export.geometry import ijk_to_lps
from CXRWeakLocLib.export.heatmap_nrrd import RAW_LIMIT_BYTES
from CXRWeakLocLib.localize import Localizer


@pytest.mark.parametrize("shape, size", [
    ((16, 16), (1024, 1024)), ((16, 16), (700, 555)), ((13, 17), (301, 299)),
    ((64, 64), (250, 260)), ((16, 16), (16, 16)), ((16, 16), (8, 9)), ((1, 1), (5, 7)),
])
def test_resample_heatmap_is_torch_bilinear(shape, size):
    grids = np.random.default_rng(sum(size)).normal(size=(3, *shape)).astype(np.float32)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(grids)[None], size=size, mode="bilinear", align_corners=False)[0]
    resampled = resample_heatmap(grids, size)
    assert resampled.shape == (3, *size) and resampled.dtype == np.float32
    np.testing.assert_allclose(resampled, expected.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(resample_heatmap(grids[0], size), resampled[0])


def test_grid_matrix_puts_the_cells_over_the_pixels():
    radiograph = synthetic_radiograph()  # 96 x 128, rotated and flipped, 0.7 x 0.5 mm
    image_to_lps = ijk_to_lps(radiograph)
    matrix = grid_matrix(image_to_lps, radiograph.size, (6, 8))  # 16 x 16 pixel cells
    np.testing.assert_allclose(matrix @ [-0.5, -0.5, 0, 1], image_to_lps @ [-0.5, -0.5, 0, 1])
    np.testing.assert_allclose(matrix @ [7.5, 5.5, 0, 1], image_to_lps @ [127.5, 95.5, 0, 1])
    np.testing.assert_allclose(matrix @ [2, 3, 0, 1], image_to_lps @ [39.5, 55.5, 0, 1])
    np.testing.assert_allclose(grid_matrix(image_to_lps, radiograph.size, radiograph.size),
                               image_to_lps)


@pytest.fixture(scope="module")
def cam() -> Localizer:
    return Localizer.from_name("cam", "cpu")


@pytest.mark.parametrize("mirrored", [False, True])
def test_each_grid_resamples_to_its_heatmap(cam, tmp_path, mirrored):
    """The shipped cam on the real radiograph (and on a mirrored copy tagged R\\F): every
    finding's grid is the model's 16 x 16 feature grid, and resampled to the input it is
    the full-resolution heatmap, so the mask rule on it (the Slicer module's
    re-threshold) gives the engine's masks but for pixels within rounding of the
    rule's threshold."""
    path = (mirrored_copy_of_the_real_dicom(tmp_path, ["R", "F"]) if mirrored
            else shared_path("fixtures/dicom/siim_cxr.dcm"))
    radiograph = read_radiograph(path)
    result = cam.localize([radiograph], "all")[0]
    assert len(result.localized) == 14
    rule = result.mask_rule
    assert rule.name == "mean_plus_k_std"  # the card's rule: a cut at mean + k std
    for item in result.localized:
        assert item.heatmap_grid.shape == (16, 16) and item.heatmap.shape == radiograph.size
        resampled = resample_heatmap(item.heatmap_grid, radiograph.size)
        np.testing.assert_allclose(resampled, item.heatmap, rtol=0, atol=1e-5)
        differ = apply_mask_rule(resampled, rule) != item.mask
        cut = resampled.mean() + rule.value * resampled.std()
        assert differ.sum() <= 2 and np.all(np.abs(resampled[differ] - cut) < 1e-5)


def grid_result(radiograph, shape=(6, 8), peak=(2, 5)) -> LocalizationResult:
    """One finding whose grid peaks inside, its heatmap that grid on the pixels."""
    rows, columns = np.mgrid[0:shape[0], 0:shape[1]]
    grid = np.exp(-((rows - peak[0]) ** 2 + (columns - peak[1]) ** 2) / 3.0).astype(np.float32)
    item = finding("Effusion", 0.9)
    item.heatmap_grid = grid
    item.heatmap = resample_heatmap(grid, radiograph.size)
    item.mask = apply_mask_rule(item.heatmap, MaskRule())
    return LocalizationResult("tiny-test", "1", "cam", MaskRule(), [item])


def test_heatmap_nrrd_holds_the_grid_over_the_radiograph(tmp_path):
    radiograph = synthetic_radiograph()
    result = grid_result(radiograph)
    layout = export_all(result, radiograph, tmp_path)
    path = layout.heatmap("Effusion")
    data, header = nrrd.read(str(path), index_order="C")
    assert data.shape == (1, 6, 8) and header["encoding"] == "raw"
    assert path.stat().st_size < 1024 and RAW_LIMIT_BYTES >= 6 * 8 * 4
    np.testing.assert_array_equal(data[0], result.findings[0].heatmap_grid)
    matrix = grid_matrix(ijk_to_lps(radiograph), radiograph.size, (6, 8))
    np.testing.assert_allclose(header["space directions"].T, matrix[:3, :3])
    np.testing.assert_allclose(header["space origin"], matrix[:3, 3])
    np.testing.assert_allclose(resample_heatmap(data[0], radiograph.size),
                               result.findings[0].heatmap, atol=1e-6)


def test_large_grids_are_gzipped(tmp_path):
    radiograph = synthetic_radiograph(rows=300, columns=260)
    result = grid_result(radiograph, shape=(150, 130), peak=(70, 60))
    layout = export_all(result, radiograph, tmp_path)
    header = nrrd.read_header(str(layout.heatmap("Effusion")))
    assert header["encoding"] == "gzip" and RAW_LIMIT_BYTES < 150 * 130 * 4


def test_slicer_puts_the_grid_maximum_on_the_heatmaps_patient_point(tmp_path):
    """Read by Slicer's own volume storage node, on a rotated, flipped, anisotropic
    radiograph: the grid's maximal voxel is, in RAS, where the full-resolution
    heatmap has its maximum (within half a pixel: cell centres fall between pixels)."""
    from slicer_scene import slicer_scene

    radiograph = synthetic_radiograph()
    result = grid_result(radiograph)
    layout = export_all(result, radiograph, tmp_path)
    with slicer_scene() as context:
        slicer = context.slicer
        node = context.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "heatmap")
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storage.SetFileName(str(layout.heatmap("Effusion")))
        assert storage.ReadData(node)
        ijk_to_ras = _ijk_to_ras(node)
        grid = slicer.util.arrayFromVolume(node)[0]
    expected = LPS_TO_RAS @ grid_matrix(ijk_to_lps(radiograph), radiograph.size, (6, 8))
    in_plane = [0, 1, 3]  # Slicer may turn a single slice's third axis (right-handed)
    np.testing.assert_allclose(ijk_to_ras[:, in_plane], expected[:, in_plane], atol=1e-6)
    j, i = np.unravel_index(np.argmax(grid), grid.shape)
    assert (j, i) == (2, 5)
    heatmap = result.findings[0].heatmap
    r, c = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    pixel_to_ras = LPS_TO_RAS @ ijk_to_lps(radiograph)
    offset = np.linalg.inv(pixel_to_ras) @ (ijk_to_ras @ [i, j, 0, 1]) - [c, r, 0, 1]
    np.testing.assert_allclose(np.abs(offset[:2]), [0.5, 0.5])  # 16 px cells: centres at x.5


def _ijk_to_ras(node) -> np.ndarray:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def test_written_masks_are_the_reference_rule_and_heatmaps_resample_within_tolerance(
        cam, tmp_path):
    """The whole faster path on the real radiograph, every export: the .seg.nrrd's masks
    are byte for byte the mask rule as first written applied to the full-resolution
    heatmaps, and each heatmap file, resampled to the input, is that heatmap within 1e-3."""
    radiograph = read_radiograph(shared_path("fixtures/dicom/siim_cxr.dcm"))
    result = cam.localize([radiograph], "all")[0]
    layout = export_all(result, radiograph, tmp_path)
    segmentation = slicerio.read_segmentation(str(layout.segmentation))
    for item in result.localized:
        expected, boxes = reference_mask_and_boxes(item.heatmap, result.mask_rule)
        segment = slicerio.segment_from_name(segmentation, item.name)
        written = slicerio.segment_mask(segmentation, segment)[:, :, 0].T.astype(bool)
        assert written.tobytes() == expected.tobytes() and item.boxes == boxes
        grid = nrrd.read(str(layout.heatmap(item.name)), index_order="C")[0][0]
        assert np.abs(resample_heatmap(grid, radiograph.size) - item.heatmap).max() <= 1e-3
