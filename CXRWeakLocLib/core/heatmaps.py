"""Heatmaps on their own grid, and back on the input's pixel grid: one function for every reader.

A network's map has the resolution of its feature grid (16 x 16 for the shipped
``cam``), far below the radiograph's. Results keep it there: an ``h x w`` grid whose
cells tile the radiograph, cell (r, c) centred on input pixel ``((r + 0.5) * rows / h
- 0.5, (c + 0.5) * columns / w - 0.5)``. :func:`grid_matrix` is that placement as an
IJK-to-world matrix (the heatmap NRRD's geometry, so Slicer and every other reader
put the grid exactly over the radiograph), and :func:`resample_heatmap` brings a grid
back to the input's pixel grid by bilinear interpolation of those centres, edges
held: the arithmetic of torch's ``interpolate(mode="bilinear", align_corners=False)``
on the CPU, in numpy (this module imports no torch).

Whatever thresholds a stored heatmap (the Slicer module's re-threshold, the web
review app) calls :func:`resample_heatmap` first, so masks are always drawn at the
input's resolution, as the engine draws them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bilinear_taps", "grid_matrix", "resample_heatmap"]

_F32, _F64 = np.float32, np.float64


def bilinear_taps(size_in: int, size_out: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Along one axis of ``size_out`` samples from ``size_in``: each sample's first and
    second source index and their weights (float32), torch's rule for
    ``align_corners=False``."""
    if size_in == size_out:  # the same grid: a copy, as torch makes it
        index = np.arange(size_out)
        return index, index, np.ones(size_out, _F32), np.zeros(size_out, _F32)
    scale = _F64(_F32(size_in) / _F32(size_out))
    # scale * (dst + 0.5) - 0.5 with one rounding (a fused multiply-add), then >= 0
    source = np.maximum((scale * (np.arange(size_out, dtype=_F64) + 0.5) - 0.5).astype(_F32),
                        _F32(0))
    first = np.minimum(np.floor(source).astype(np.int64), size_in - 1)
    second = np.minimum(first + 1, size_in - 1)
    weight = np.clip(source - first.astype(_F32), _F32(0), _F32(1)).astype(_F32)
    return first, second, _F32(1) - weight, weight


def _lerp(low: np.ndarray, high: np.ndarray, w_low: np.ndarray, w_high: np.ndarray) -> np.ndarray:
    """``low * w_low + high * w_high`` in float32, the first product fused into the sum."""
    return (low.astype(_F64) * w_low + (high * w_high).astype(_F64)).astype(_F32)


def resample_heatmap(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A heatmap grid (``h x w``, or ``... x h x w``) on a ``rows x columns`` pixel grid.

    Bilinear between cell centres, edges held (half-pixel centres, as
    ``align_corners=False``); a grid already of ``size`` comes back unchanged.
    Separable: columns first on the small grid, then rows.
    """
    grid = np.asarray(grid, dtype=_F32)
    rows, columns = int(size[0]), int(size[1])
    first, second, w_first, w_second = bilinear_taps(grid.shape[-1], columns)
    across = _lerp(grid[..., first], grid[..., second], w_first, w_second)
    first, second, w_first, w_second = bilinear_taps(grid.shape[-2], rows)
    return _lerp(across[..., first, :], across[..., second, :], w_first[:, np.newaxis],
                 w_second[:, np.newaxis])


def grid_matrix(image_to_world: np.ndarray, size: tuple[int, int],
                shape: tuple[int, int]) -> np.ndarray:
    """The 4x4 IJK-to-world matrix of an ``h x w`` grid (``shape``) over an image.

    Args:
        image_to_world: the image's IJK-to-world matrix (i = column, j = row; LPS or
            RAS alike).
        size: the image's (rows, columns).
        shape: the grid's (rows, columns).
    """
    rows, columns = size
    step_j, step_i = rows / shape[0], columns / shape[1]
    grid_to_image = np.array([[step_i, 0.0, 0.0, (step_i - 1.0) / 2.0],
                              [0.0, step_j, 0.0, (step_j - 1.0) / 2.0],
                              [0.0, 0.0, 1.0, 0.0],
                              [0.0, 0.0, 0.0, 1.0]])
    return np.asarray(image_to_world, dtype=float) @ grid_to_image
