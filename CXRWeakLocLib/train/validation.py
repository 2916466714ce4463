"""Validation of a trained classifier: its figures, and the operating thresholds a card holds."""

from __future__ import annotations

import numpy as np
import torch

from ..metrics import ClassificationReport

__all__ = ["classification_figures", "operating_thresholds", "predict"]


def predict(network, loader, device,
            channels_last: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(probabilities, labels, known)`` ``(N, C)`` of every batch of ``loader``."""
    network.eval()
    probs, labels, known = [], [], []
    with torch.inference_mode():
        for batch in loader:
            image = batch["image"].to(device)
            if channels_last:
                image = image.contiguous(memory_format=torch.channels_last)
            logits, _ = network(image)
            probs.append(torch.sigmoid(logits).float().cpu().numpy())
            labels.append(batch["label"].numpy())
            known.append(batch["known"].numpy())
    return np.concatenate(probs), np.concatenate(labels), np.concatenate(known)


def classification_figures(probs, labels, known, findings) -> dict:
    """ROC-AUC and PR-AUC per finding and their means (unknown labels left out)."""
    unknown_as_nan = np.where(known > 0, labels, np.nan)
    return ClassificationReport.from_arrays(findings, probs, unknown_as_nan).to_dict()


def operating_thresholds(
    probs: np.ndarray, labels: np.ndarray, known: np.ndarray, findings: list[str]
) -> dict[str, float]:
    """Per finding, the probability threshold with the best F1 on validation (0.5 if none)."""
    thresholds = {}
    for index, name in enumerate(findings):
        mask = known[:, index] > 0
        y, p = labels[mask, index], probs[mask, index]
        if y.sum() == 0 or y.sum() == len(y):
            thresholds[name] = 0.5
            continue
        best, best_f1 = 0.5, -1.0
        for cut in np.unique(p):
            predicted = p >= cut
            tp = float((predicted & (y > 0)).sum())
            f1 = 2 * tp / max(1.0, predicted.sum() + y.sum())
            if f1 > best_f1:
                best, best_f1 = float(cut), f1
        thresholds[name] = round(best, 4)
    return thresholds
