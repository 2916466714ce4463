"""Figures of the dm recipe: the anchor, alignment before/after, the disease masks (Fig. 3)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402


def _gray(image: torch.Tensor) -> np.ndarray:
    array = image.detach().float().reshape(image.shape[-2:]).numpy()
    return (array - array.min()) / max(float(array.max() - array.min()), 1e-12)


def save_anchor(anchor: torch.Tensor, path: Path) -> Path:
    """The anchor image as an 8-bit grayscale PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((_gray(anchor) * 255).round().astype(np.uint8)).save(path)
    return path


def save_alignment_examples(originals: torch.Tensor, aligned: torch.Tensor,
                            anchor: torch.Tensor, params: torch.Tensor, path: Path) -> Path:
    """Rows: original, aligned, aligned with the anchor's lung outline; one column per image."""
    count = originals.shape[0]
    figure, axes = plt.subplots(3, count, figsize=(2.2 * count, 6.9), dpi=100)
    anchor_gray = _gray(torch.nn.functional.interpolate(
        anchor[None], size=aligned.shape[-2:], mode="bilinear", align_corners=False)[0])
    for column in range(count):
        s_x, s_y, t_x, t_y, theta = params[column].tolist()
        axes[0, column].imshow(_gray(originals[column]), cmap="gray")
        axes[0, column].set_title(f"s {s_x:.2f},{s_y:.2f}\nt {t_x:+.2f},{t_y:+.2f} "
                                  f"r {np.degrees(theta):+.1f}", fontsize=7)
        axes[1, column].imshow(_gray(aligned[column]), cmap="gray")
        axes[2, column].imshow(_gray(aligned[column]), cmap="gray")
        axes[2, column].contour(anchor_gray, levels=[0.35, 0.6], colors=["cyan", "yellow"],
                                linewidths=0.7)
        for row in range(3):
            axes[row, column].axis("off")
    for row, label in enumerate(("original", "aligned", "aligned + anchor contours")):
        axes[row, 0].text(-0.08, 0.5, label, transform=axes[row, 0].transAxes, rotation=90,
                          va="center", ha="right", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def save_masks(masks: torch.Tensor, findings: Sequence[str], anchor: torch.Tensor,
               path: Path, title: str, counts: dict[str, int] | None = None) -> Path:
    """Disease masks over the anchor image, one panel per finding (the paper's Fig. 3)."""
    columns = 7
    rows = int(np.ceil(len(findings) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.1 * columns, 2.3 * rows + 0.4),
                                dpi=100, squeeze=False)
    size = anchor.shape[-2:]
    background = _gray(anchor)
    for index, axis in enumerate(axes.ravel()):
        axis.axis("off")
        if index >= len(findings):
            continue
        mask = torch.nn.functional.interpolate(masks[index][None, None].float(), size=size,
                                               mode="bilinear", align_corners=False)[0, 0]
        axis.imshow(background, cmap="gray")
        axis.imshow(np.ma.masked_less_equal(mask.numpy(), 0.0), cmap="jet", alpha=0.5,
                    vmin=0.0, vmax=1.0)
        label = findings[index] + (f" (n={counts[findings[index]]})" if counts else "")
        axis.set_title(label, fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
