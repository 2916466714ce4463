"""The ``dm`` recipe's non-gradient stages: anchor image, disease masks, pseudo masks, seeds.

The stages between trainer runs (``training/dm/recipe.py`` chains them):

1. :func:`mean_normal_image` - the anchor: mean network input of the training
   images labelled "No Finding" (every finding 0).
2. :func:`collect_aligned_cams` + :func:`disease_masks` - Eq. 3 of the paper:
   per finding, the aligned-frame CAMs ``S_c`` of confidently positive training
   images (labelled positive and ``P_c >= min_probability``; when fewer than
   ``min_images`` qualify, the ``min_images`` most confident labelled positives),
   each min-max normalised, plus its horizontal flip for symmetric findings
   (``Finding.symmetric``; not for Cardiomegaly or Hernia), averaged, the average
   min-max normalised again (averages of broad CAMs have a high floor), and
   thresholded: ``T(m) = m where m >= threshold else 0`` (the highly activated
   area keeps its graded values).
3. :func:`pseudo_disease_masks` - the paper's PDM ablation, drawn from the anchor
   (see the function for the rule).
4. :func:`write_seed` - merges weights and buffers into one ``.safetensors`` that
   the next stage's ``[model] init_from`` loads.
5. :func:`write_ensemble` - a seed ensemble: runs of the attention stage that differ
   only in their seed, as one model folder (``members=N``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.nn import functional
from torch.utils.data import DataLoader

from ...checkpoint import load_model, save_model
from ...core.anatomy import heart_region, lung_fields
from ...core.card import WEIGHTS_FILE, ModelCard
from ...core.errors import ConfigError
from ...core.findings import finding_by_name
from ...data.dataset import records_dataset
from ...data.records import ImageRecord
from ...train.lineage import LINEAGE_METADATA_KEY, training_lineage
from .. import build_network
from .network import DiseaseMaskCAM, ensemble_state

__all__ = [
    "AlignedCAMs",
    "DiseaseMasks",
    "collect_aligned_cams",
    "disease_masks",
    "mean_normal_image",
    "pseudo_disease_masks",
    "write_ensemble",
    "write_seed",
]

logger = logging.getLogger(__name__)


def _loader(records: Sequence[ImageRecord], card: ModelCard, batch_size: int) -> DataLoader:
    return DataLoader(records_dataset(records, card), batch_size=batch_size)


def mean_normal_image(records: Sequence[ImageRecord], card: ModelCard, size: int,
                      batch_size: int = 32) -> torch.Tensor:
    """``(1, size, size)`` mean network input of the records with every label 0."""
    normals = [r for r in records
               if r.labels and all(v == 0 for v in r.labels.values())]
    if not normals:
        raise ConfigError("no normal ('No Finding') training image to build the anchor from")
    total, count = None, 0
    for batch in _loader(normals, card, batch_size):
        images = functional.interpolate(batch["image"], size=(size, size), mode="bilinear",
                                        align_corners=False, antialias=True)
        total = images.sum(0) if total is None else total + images.sum(0)
        count += images.shape[0]
    logger.info("anchor: mean of %d normal images", count)
    return total / count


@dataclass
class AlignedCAMs:
    """Probabilities, labels and aligned-frame CAMs of a set of images."""

    probabilities: np.ndarray  # (N, C)
    targets: np.ndarray  # (N, C)
    known: np.ndarray  # (N, C)
    cams: torch.Tensor  # (N, C, h, w), aligned frame


def collect_aligned_cams(network: DiseaseMaskCAM, records: Sequence[ImageRecord],
                         card: ModelCard, batch_size: int = 32) -> AlignedCAMs:
    """Run a dm network over ``records`` and keep its maps in the aligned frame."""
    network.eval()
    probs, targets, known, cams = [], [], [], []
    with torch.inference_mode():
        for batch in _loader(records, card, batch_size):
            aligned, _ = network.align(batch["image"])
            logits, maps = network.classify_aligned(aligned)
            probs.append(torch.sigmoid(logits).numpy())
            cams.append(maps)
            targets.append(batch["label"].numpy())
            known.append(batch["known"].numpy())
    return AlignedCAMs(np.concatenate(probs), np.concatenate(targets), np.concatenate(known),
                       torch.cat(cams))


@dataclass
class DiseaseMasks:
    """Masks ``(C, size, size)`` in [0, 1] and, per finding, how many CAMs built each."""

    masks: torch.Tensor
    counts: dict[str, int]
    fallback: dict[str, bool]


def _min_max(maps: torch.Tensor) -> torch.Tensor:
    low = maps.amin(dim=(-2, -1), keepdim=True)
    high = maps.amax(dim=(-2, -1), keepdim=True)
    return (maps - low) / (high - low).clamp(min=1e-12)


def disease_masks(
    cams: AlignedCAMs,
    findings: Sequence[str],
    size: int,
    min_probability: float = 0.8,
    min_images: int = 5,
    threshold: float = 0.5,
) -> DiseaseMasks:
    """Eq. 3 of the paper over labelled-positive, confidently predicted training images."""
    masks, counts, fallback = [], {}, {}
    for index, name in enumerate(findings):
        positive = (cams.targets[:, index] > 0) & (cams.known[:, index] > 0)
        probability = cams.probabilities[:, index]
        chosen = np.flatnonzero(positive & (probability >= min_probability))
        fallback[name] = len(chosen) < min_images
        if fallback[name]:
            candidates = np.flatnonzero(positive)
            order = np.argsort(-probability[candidates], kind="stable")
            chosen = candidates[order[:min_images]]
        counts[name] = int(len(chosen))
        if not len(chosen):
            masks.append(torch.zeros(size, size))
            continue
        maps = functional.interpolate(cams.cams[chosen, index][:, None].float(),
                                      size=(size, size), mode="bilinear",
                                      align_corners=False)[:, 0]
        maps = _min_max(maps)
        if finding_by_name(name).symmetric:
            maps = maps + torch.flip(maps, dims=(-1,))
        mean = _min_max(maps.mean(0))
        masks.append(torch.where(mean >= threshold, mean, torch.zeros_like(mean)))
    return DiseaseMasks(torch.stack(masks), counts, fallback)


def pseudo_disease_masks(anchor: torch.Tensor, findings: Sequence[str],
                         size: int) -> torch.Tensor:
    """Pseudo disease masks (PDM, the paper's Fig. 7 ablation) drawn from the anchor.

    The lung fields and the heart of the anchor (min-max normalised to [0, 1]), as
    :mod:`~CXRWeakLocLib.core.anatomy` estimates them on any radiograph. The heart is
    the mask of the asymmetric findings (Cardiomegaly; Hernia, which also sits in the
    lower mediastinum), the lungs that of every other.
    Returns ``(C, size, size)`` binary float masks.
    """
    image = anchor.detach().float().reshape(anchor.shape[-2:]).numpy()
    image = (image - image.min()) / max(float(image.max() - image.min()), 1e-12)
    lungs = lung_fields(image)
    if lungs is None:
        raise ConfigError("pseudo masks: the anchor shows no two lung fields inside the thorax")
    heart = heart_region(image, lungs)
    masks = []
    for name in findings:
        region = lungs if finding_by_name(name).symmetric else heart
        tensor = torch.from_numpy(region.astype(np.float32))[None, None]
        masks.append(functional.interpolate(tensor, size=(size, size), mode="bilinear",
                                            align_corners=False)[0, 0].round())
    return torch.stack(masks)


def _weights_file(path: Path) -> Path:
    path = Path(path)
    return path / WEIGHTS_FILE if path.is_dir() else path


def write_seed(out: Path, sources: Sequence[Path | dict[str, torch.Tensor]]) -> Path:
    """Merge model folders / ``.safetensors`` files / tensor dicts (later ones win).

    The sources' training lineages (:func:`training_lineage`) travel in the file's
    metadata, so a run initialised from the seed records what it was built on.
    """
    merged: dict[str, torch.Tensor] = {}
    lineage: list[dict] = []
    for source in sources:
        if not isinstance(source, dict):
            lineage += [s for s in training_lineage(Path(source)) if s not in lineage]
        tensors = source if isinstance(source, dict) else load_file(str(_weights_file(source)))
        merged.update({k: v.detach().float().contiguous() if v.is_floating_point() else v
                       for k, v in tensors.items()})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(merged, str(out),
              metadata={"format": "pt", LINEAGE_METADATA_KEY: json.dumps(lineage)})
    return out


def _mean_threshold(thresholds: Sequence[float]) -> float:
    """The probability whose logit is the mean of the thresholds' logits."""
    logits = torch.logit(torch.tensor(thresholds, dtype=torch.float64), eps=1e-6)
    return round(float(torch.sigmoid(logits.mean())), 4)


def write_ensemble(out: Path, members: Sequence[Path], name: str | None = None) -> Path:
    """Write a seed-ensemble model folder from one-member ``dm`` model folders.

    The members must be runs of one recipe that differ only in their seed: the same
    card architecture and findings, and the same aligner, anchor and disease masks
    (:func:`~CXRWeakLocLib.models.dm.ensemble_state`). The card is the first member's
    with ``options.members = N``; each finding's operating threshold is the mean of
    the members' in logit space (the ensemble averages logits); ``training
    ["ensemble_of"]`` names every member (folder, seed, weights hash) and
    ``metrics["members_validation"]`` keeps their validation figures. The mask rule is
    the first member's until the ensemble's own is chosen.

    Raises:
        ConfigError: fewer than two members, a member that is not a one-member ``dm``
            model, or members that differ in findings, architecture or shared parts.
    """
    if len(members) < 2:
        raise ConfigError(f"an ensemble needs at least two member models (got {len(members)})")
    loaded = [load_model(folder) for folder in members]
    first = loaded[0].card
    for folder, model in zip(members, loaded, strict=True):
        card = model.card
        if card.method != "dm" or card.architecture.get("options", {}).get("members", 1) != 1:
            raise ConfigError(f"{folder}: not a one-member dm model")
        if (card.findings, card.architecture, card.input_size, card.normalization) != (
                first.findings, first.architecture, first.input_size, first.normalization):
            raise ConfigError(f"{folder}: findings, architecture or input differ from "
                              f"{members[0]}'s")
    try:
        state = ensemble_state([model.network.state_dict() for model in loaded])
    except ValueError as error:
        raise ConfigError(f"{out}: {error}") from None
    options = {**first.architecture.get("options", {}), "members": len(loaded)}
    card = replace(
        first, name=name or first.name,
        architecture={**first.architecture, "options": options},
        operating_thresholds={
            finding: _mean_threshold([m.card.threshold(finding) for m in loaded])
            for finding in first.findings},
        description=f"Seed ensemble of {len(loaded)} runs (mean logits and maps). "
                    + first.description,
        training={**first.training, "ensemble_of": [
            {"folder": str(folder), "seed": m.card.training.get("seed"),
             "weights_sha256": m.card.weights_sha256}
            for folder, m in zip(members, loaded, strict=True)]},
        metrics={"members_validation": [m.card.metrics.get("validation") for m in loaded]},
    )
    network = build_network(card.method, card.architecture, len(card.findings))
    network.load_state_dict(state, strict=True)
    logger.info("ensemble of %d dm runs -> %s", len(loaded), out)
    return save_model(Path(out), card, network, overwrite=True)
