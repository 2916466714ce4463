"""Synthetic chest radiographs with known findings, masks and boxes.

Not real anatomy: a fast, deterministic stand-in for tests, demos and smoke runs.
A frontal (PA) chest is drawn from a density model in normalised coordinates
(``u`` across columns, ``v`` down rows, both 0-1, patient's right on the image's
left): soft-tissue torso with falloff, two dark lung fields, bright mediastinum,
spine and heart shadow, curved ribs, clavicles, vessel-like lung markings and
smooth noise. Findings of the 8 boxed ChestX-ray14 kinds are drawn where they
occur (an enlarged heart; a basal meniscus; an apical/lateral lucent rim without
markings and with a pleural line; a lower-zone band; patchy or lobar opacities; a
large or a small round opacity). Every image has 0-3 findings, labels for all 14
findings (the 6 unboxed ones always 0) and, per finding, an :class:`Annotation`
with its mask and the mask's box ``(x, y, w, h)``.

Image ``index`` of seed ``seed`` depends on ``(seed, index)`` only, so a dataset's
first images do not change with its length.

Folder layout of :func:`write_synthetic_dataset` (read by :func:`read_synthetic`)::

    images/<id>.png          8-bit grayscale radiograph
    masks/<id>_<Finding>.png 8-bit mask (255 inside) of each labelled finding
    labels.csv               Image Index, then one 0/1 column per ChestX-ray14 finding
    boxes.csv                Image Index, Finding Label, x, y, w, h (pixels)
"""

from __future__ import annotations

import csv
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from ..core.errors import ConfigError
from ..core.findings import BOXED_FINDINGS, CHESTXRAY14, finding_by_name
from .records import Annotation, ImageRecord

__all__ = [
    "SyntheticChestGenerator",
    "make_demo_radiograph",
    "make_synthetic_dataset",
    "read_synthetic",
    "write_synthetic_dataset",
]

logger = logging.getLogger(__name__)

#: Default probability of each boxed finding in an image (before the cap of 3).
DEFAULT_PREVALENCE = 0.12
MAX_FINDINGS = 3
LABELS_FILE = "labels.csv"
BOXES_FILE = "boxes.csv"
_NAMES = tuple(f.name for f in CHESTXRAY14)


#: Diaphragm level at the costophrenic angles, in the canonical chest.
DOME = 0.82
#: Distance from the lung's edge within which round opacities are not centred.
_MARGIN = 0.075


@dataclass(frozen=True)
class _Anatomy:
    """The canonical normal chest of one image size (computed once, never modified)."""

    size: int
    u: np.ndarray
    v: np.ndarray
    tissue: np.ndarray  # soft-tissue density
    air: np.ndarray  # soft lung-air weight
    lungs: dict[int, np.ndarray]  # side (-1 image left, +1 image right) -> bool mask
    inner: dict[int, np.ndarray]  # lung at least _MARGIN from its edge
    hilum: np.ndarray  # weight of the lung markings (densest at the hila)
    bones: np.ndarray  # ribs, clavicles and spine
    mediastinum: np.ndarray


@dataclass
class _Chest:
    """One image being drawn: its heart, lungs, markings and density."""

    anatomy: _Anatomy
    heart: np.ndarray
    lungs: dict[int, np.ndarray]
    inner: dict[int, np.ndarray]
    markings: np.ndarray  # density of the lung markings (a pneumothorax removes them)
    density: np.ndarray

    @property
    def size(self) -> int:
        return self.anatomy.size

    @property
    def u(self) -> np.ndarray:
        return self.anatomy.u

    @property
    def v(self) -> np.ndarray:
        return self.anatomy.v

    def side_distance(self, side: int) -> np.ndarray:
        """Distance from the midline towards ``side``'s chest wall (negative across)."""
        return side * (self.u - 0.5)

    def pixels(self, fraction: float) -> float:
        """A length given as a fraction of the image side, in pixels."""
        return fraction * self.size


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-scale noise smooth over ``size / cells`` pixels."""
    grid = rng.standard_normal((cells + 3, cells + 3)).astype(np.float32)
    centers = np.arange(cells + 3, dtype=np.float32) - 1
    positions = np.linspace(0, cells, size, dtype=np.float32)
    weights = np.exp(-0.5 * ((positions[:, None] - centers[None, :]) / 0.7) ** 2)
    weights /= weights.sum(axis=1, keepdims=True)
    # einsum, not matmul: BLAS threads cost more than they save on these small products
    noise = np.einsum("ik,jk->ij", np.einsum("ik,kj->ij", weights, grid), weights)
    return noise / (noise.std() + 1e-6)


def _ellipse(u, v, center, axes, angle=0.0) -> np.ndarray:
    """Squared normalised radius of an ellipse (< 1 inside)."""
    cos, sin = float(np.cos(angle)), float(np.sin(angle))
    du, dv = u - center[0], v - center[1]
    a = (du * cos + dv * sin) / axes[0]
    b = (-du * sin + dv * cos) / axes[1]
    return a * a + b * b


def _lung(u, v, side: int) -> np.ndarray:
    """One lung field: an ellipse above its domed hemidiaphragm (the image left's higher)."""
    d = side * (u - 0.5)
    diaphragm = DOME + 0.01 * side - 0.07 * np.clip(1 - ((d - 0.2) / 0.2) ** 2, 0, 1)
    return (_ellipse(d, v, (0.215, 0.57), (0.175, 0.44)) < 1) & (d > 0.05) & (v < diaphragm)


def _soft(mask: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(mask.astype(np.float32), sigma)


@functools.lru_cache(maxsize=4)
def _anatomy(size: int) -> _Anatomy:
    """Torso, lungs, mediastinum, ribs, clavicles and spine on a ``size`` grid."""
    v, u = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size
    d = np.abs(u - 0.5)
    half_width = 0.14 + 0.33 * np.clip(v / 0.18, 0, 1) ** 0.5
    body = _soft(d < half_width, size / 100)
    tissue = body * (0.52 - 0.12 * np.clip(d / half_width, 0, 1) ** 3 + 0.12 * v)
    lungs = {side: _lung(u, v, side) for side in (-1, 1)}
    inner = {side: ndimage.distance_transform_edt(lung) > _MARGIN * size
             for side, lung in lungs.items()}
    air = _soft(lungs[-1] | lungs[1], size / 80)
    air *= 0.5 + 0.12 * np.clip((d - 0.1) / 0.3, 0, 1) - 0.1 * np.clip((v - 0.55) / 0.3, 0, 1)
    hilum = 0.2 + np.exp(-np.hypot(d - 0.1, v - 0.47) / 0.12)

    rib_phase = (v - 0.11 - 1.1 * (d - 0.1) ** 2) / 0.064
    ribs = np.maximum(np.cos(2 * np.pi * rib_phase), 0) ** 3
    ribs *= (rib_phase > -0.3) & (rib_phase < 9.3) & (d > 0.045) & (d < half_width - 0.02)
    anterior = np.maximum(np.cos(2 * np.pi * (v - 0.13 + 0.45 * d) / 0.085), 0) ** 3
    anterior *= (d > 0.06) & (d < 0.3) & (v < 0.6)
    clavicle_v = 0.16 - 0.25 * d + 0.9 * (d - 0.12) ** 2
    clavicles = np.exp(-(((v - clavicle_v) / 0.014) ** 2)) * (d > 0.03) * (d < 0.3)
    spine = (d < 0.035) * (0.85 + 0.15 * np.cos(2 * np.pi * v / 0.055)) * (v > 0.05)
    bones = body * (0.06 * ribs + 0.03 * anterior + 0.08 * spine) + 0.12 * clavicles
    aortic_knob = 0.04 * (u > 0.5) * np.exp(-(((v - 0.33) / 0.04) ** 2))
    mediastinum = 0.04 * _soft((d < 0.07 + aortic_knob) & (v < 0.55), size / 60)
    return _Anatomy(size, u, v, tissue, air, lungs, inner, hilum, bones, mediastinum)


def _draw_chest(rng: np.random.Generator, size: int, enlarged_heart: bool) -> _Chest:
    """The normal chest of one image: its heart, textures and exposure."""
    anatomy = _anatomy(size)
    axes = (rng.uniform(0.2, 0.22) if enlarged_heart else rng.uniform(0.13, 0.15), 0.12)
    radius = _ellipse(anatomy.u, anatomy.v, (0.55, DOME - 0.15), axes, -0.35)
    heart = radius < 1
    heart_soft = np.clip((1.15 - radius) / 0.3, 0, 1)
    air = anatomy.air * (1 - heart_soft)
    noise = _smooth_noise(rng, size, 26)
    markings = rng.uniform(0.05, 0.08) * np.exp(-((noise / 0.3) ** 2)) * anatomy.hilum * air
    density = 0.02 + anatomy.tissue * (1 - rng.uniform(0.9, 1.1) * air) + markings
    density += rng.uniform(0.03, 0.05) * heart_soft + anatomy.mediastinum
    density += rng.uniform(0.8, 1.2) * anatomy.bones
    return _Chest(
        anatomy, heart,
        lungs={side: lung & ~heart for side, lung in anatomy.lungs.items()},
        inner={side: inner & ~heart for side, inner in anatomy.inner.items()},
        markings=markings, density=density,
    )


def _pick(rng: np.random.Generator, chest: _Chest, where: np.ndarray) -> tuple[float, float]:
    """A random pixel of ``where`` as anatomy coordinates (u, v)."""
    rows, columns = np.nonzero(where)
    index = rng.integers(len(rows))
    return float(chest.u[rows[index], columns[index]]), float(chest.v[rows[index], columns[index]])


def _side_and_lung(rng: np.random.Generator, chest: _Chest) -> tuple[int, np.ndarray]:
    side = int(rng.choice((-1, 1)))
    return side, chest.lungs[side]


def _add(chest: _Chest, mask: np.ndarray, amount: float | np.ndarray, sigma: float = 1.0) -> None:
    chest.density += amount * _soft(mask, chest.pixels(sigma / 256))


def _pose(rng: np.random.Generator, size: int) -> np.ndarray:
    """Canonical (row, column) of every output pixel, shape (2, size, size): tilt, scale, shift."""
    angle = rng.uniform(-0.05, 0.05)
    cos, sin = np.cos(angle), np.sin(angle)
    matrix = np.array([[cos, -sin], [sin, cos]]) @ np.diag(rng.uniform(0.94, 1.06, 2))
    center = (size - 1) / 2
    offset = center + rng.uniform(-0.03, 0.03, 2) * size - matrix @ np.full(2, center)
    grid = np.mgrid[0:size, 0:size].astype(np.float32).reshape(2, -1)
    return (matrix.astype(np.float32) @ grid + offset[:, None]).reshape(2, size, size)


def _warp_mask(mask: np.ndarray, source: np.ndarray) -> np.ndarray:
    """``mask`` resampled (nearest pixel) at the canonical positions ``source``."""
    rows, columns = np.rint(source).astype(np.intp)
    inside = (rows >= 0) & (rows < mask.shape[0]) & (columns >= 0) & (columns < mask.shape[1])
    warped = np.zeros(mask.shape, dtype=bool)
    warped[inside] = mask[rows[inside], columns[inside]]
    return warped


# --- findings: each draws itself into chest.density and returns its mask --------------

def _cardiomegaly(rng, chest: _Chest) -> np.ndarray:
    # The heart is drawn enlarged by _draw_chest; here only the visible part is masked.
    return chest.heart & (chest.v < DOME + 0.02)


def _effusion(rng, chest: _Chest) -> np.ndarray:
    side, lung = _side_and_lung(rng, chest)
    d = chest.side_distance(side)
    level = DOME - rng.uniform(0.1, 0.17)
    lateral = np.clip((d - 0.08) / 0.3, 0, 1)
    meniscus = level - rng.uniform(0.06, 0.12) * lateral**2
    mask = lung & (chest.v > meniscus)
    depth = np.clip((chest.v - meniscus) / 0.05, 0, 1)
    _add(chest, mask, 0.3 * (0.6 + 0.4 * depth), sigma=2.5)
    return mask


def _pneumothorax(rng, chest: _Chest) -> np.ndarray:
    side, lung = _side_and_lung(rng, chest)
    shrink = rng.uniform(0.78, 0.88)
    hilum_d, hilum_v = 0.12, 0.5
    d = chest.side_distance(side)
    collapsed = _lung(0.5 + side * (hilum_d + (d - hilum_d) / shrink),
                      hilum_v + (chest.v - hilum_v) / shrink, side)
    mask = lung & ~collapsed & (chest.v < DOME - 0.1)
    chest.density -= 0.07 * _soft(mask, chest.pixels(1 / 256)) + chest.markings * mask
    edge = collapsed & ~ndimage.binary_erosion(collapsed, iterations=max(1, chest.size // 256))
    _add(chest, edge & lung, 0.12, sigma=0.6)
    return mask


def _atelectasis(rng, chest: _Chest) -> np.ndarray:
    side, lung = _side_and_lung(rng, chest)
    zone = lung & (chest.v > DOME - 0.22) & (chest.v < DOME - 0.1)
    center = _pick(rng, chest, zone)
    axes = (rng.uniform(0.07, 0.11), rng.uniform(0.015, 0.03))
    angle = side * rng.uniform(-0.15, 0.45)
    mask = lung & (_ellipse(chest.u, chest.v, center, axes, angle) < 1)
    _add(chest, mask, 0.2, sigma=1.5)
    return mask


def _patches(rng, chest: _Chest, radius: float, cover: float, amount: float) -> np.ndarray:
    side, lung = _side_and_lung(rng, chest)
    center = _pick(rng, chest, chest.inner[side])
    region = lung & (_ellipse(chest.u, chest.v, center, (radius, radius * 1.2)) < 1)
    texture = _smooth_noise(rng, chest.size, 14)
    mask = region & (texture >= np.quantile(texture[region], 1 - cover))
    _add(chest, mask, amount * (1 + 0.3 * texture), sigma=2.0)
    return mask


def _infiltration(rng, chest: _Chest) -> np.ndarray:
    return _patches(rng, chest, radius=rng.uniform(0.09, 0.13), cover=0.45, amount=0.11)


def _pneumonia(rng, chest: _Chest) -> np.ndarray:
    return _patches(rng, chest, radius=rng.uniform(0.11, 0.15), cover=0.85, amount=0.22)


def _round_opacity(rng, chest: _Chest, radius: float, amount: float) -> np.ndarray:
    side = int(rng.choice((-1, 1)))
    radius = max(radius, 2.5 / chest.size)
    center = _pick(rng, chest, chest.inner[side])
    angle = np.arctan2(chest.v - center[1], chest.u - center[0])
    lobes = 1 + 0.12 * np.sin(3 * angle + rng.uniform(0, 6.3))
    mask = _ellipse(chest.u, chest.v, center, (radius, radius)) < lobes**2
    _add(chest, mask, amount, sigma=0.8)
    return mask


def _mass(rng, chest: _Chest) -> np.ndarray:
    return _round_opacity(rng, chest, rng.uniform(0.045, 0.07), 0.26)


def _nodule(rng, chest: _Chest) -> np.ndarray:
    return _round_opacity(rng, chest, rng.uniform(0.012, 0.02), 0.3)


_DRAW: dict[str, Callable[[np.random.Generator, _Chest], np.ndarray]] = {
    "Atelectasis": _atelectasis,
    "Cardiomegaly": _cardiomegaly,
    "Effusion": _effusion,
    "Infiltration": _infiltration,
    "Mass": _mass,
    "Nodule": _nodule,
    "Pneumonia": _pneumonia,
    "Pneumothorax": _pneumothorax,
}


class SyntheticChestGenerator:
    """Deterministic generator of synthetic chest radiographs with findings.

    Args:
        size: image side in pixels.
        seed: the dataset seed; image ``index`` depends on ``(seed, index)`` only.
        prevalence: probability of each boxed finding per image (a number for all,
            or a mapping by finding name; unnamed findings get 0). When more than
            3 are drawn, 3 of them are kept at random.
    """

    def __init__(
        self, size: int = 256, seed: int = 0, prevalence: float | Mapping[str, float] | None = None
    ) -> None:
        if size < 32:
            raise ConfigError(f"synthetic images need at least 32 pixels a side, not {size}")
        self.size, self.seed = size, seed
        if prevalence is None:
            prevalence = DEFAULT_PREVALENCE
        if isinstance(prevalence, Mapping):
            named = {finding_by_name(name).name: float(p) for name, p in prevalence.items()}
            unboxed = sorted(set(named) - set(BOXED_FINDINGS))
            if unboxed:
                raise ConfigError(f"synthetic images have no {', '.join(unboxed)}")
            self.prevalence = {name: named.get(name, 0.0) for name in BOXED_FINDINGS}
        else:
            self.prevalence = dict.fromkeys(BOXED_FINDINGS, float(prevalence))

    def record_id(self, index: int) -> str:
        return f"synth-{self.seed}-{index:05d}"

    def generate(self, index: int, findings: list[str] | None = None) -> ImageRecord:
        """Image ``index``, with its random findings or exactly ``findings``."""
        rng = np.random.default_rng([self.seed, index])
        if findings is None:
            drawn = [name for name in BOXED_FINDINGS if rng.random() < self.prevalence[name]]
            if len(drawn) > MAX_FINDINGS:
                drawn = list(rng.choice(drawn, MAX_FINDINGS, replace=False))
        else:
            drawn = [finding_by_name(name).name for name in findings]
        chest = _draw_chest(rng, self.size, "Cardiomegaly" in drawn)
        masks = {name: _DRAW[name](rng, chest) for name in sorted(drawn, key=BOXED_FINDINGS.index)}
        source = _pose(rng, self.size)
        pixels = ndimage.map_coordinates(chest.density, source, order=1, mode="nearest")
        annotations = []
        for name, mask in masks.items():
            mask = _warp_mask(mask, source)
            annotations.append(Annotation(name, box=_box(mask), mask=mask))
        pixels += 0.015 * _smooth_noise(rng, self.size, 8)
        pixels += 0.012 * rng.standard_normal(pixels.shape)
        pixels = ndimage.gaussian_filter(pixels, self.size / 400)
        pixels = np.clip(pixels, 0, 1) ** rng.uniform(0.85, 1.15)
        return ImageRecord(
            id=self.record_id(index),
            image=None,
            labels={name: float(name in drawn) for name in _NAMES},
            annotations=annotations,
            pixels=pixels.astype(np.float32),
            meta={"synthetic": True, "seed": self.seed, "index": index},
        )


def _box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """``(x, y, w, h)`` of the mask's extent, in pixels."""
    rows, columns = np.nonzero(mask)
    x, y = columns.min(), rows.min()
    return float(x), float(y), float(columns.max() - x + 1), float(rows.max() - y + 1)


def make_synthetic_dataset(
    n: int, size: int = 256, seed: int = 0, prevalence: float | Mapping[str, float] | None = None
) -> list[ImageRecord]:
    """``n`` synthetic records (pixels in memory, ``image`` None)."""
    generator = SyntheticChestGenerator(size, seed, prevalence)
    return [generator.generate(index) for index in range(n)]


def _to_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(np.round(np.asarray(array, np.float32) * 255).astype(np.uint8)).save(path)


def write_synthetic_dataset(folder: Path, n: int, size: int = 256, seed: int = 0) -> Path:
    """Write ``n`` synthetic images in the layout of the module docstring; returns ``folder``."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    with (folder / LABELS_FILE).open("w", newline="") as labels_file, \
            (folder / BOXES_FILE).open("w", newline="") as boxes_file:
        labels, boxes = csv.writer(labels_file), csv.writer(boxes_file)
        labels.writerow(["Image Index", *_NAMES])
        boxes.writerow(["Image Index", "Finding Label", "x", "y", "w", "h"])
        for record in make_synthetic_dataset(n, size, seed):
            _to_png(folder / "images" / f"{record.id}.png", record.pixels)
            labels.writerow([record.id, *(int(record.labels[name]) for name in _NAMES)])
            for annotation in record.annotations:
                boxes.writerow([record.id, annotation.finding, *(int(c) for c in annotation.box)])
                _to_png(folder / "masks" / f"{record.id}_{annotation.finding}.png",
                        annotation.mask)
    logger.info("wrote %d synthetic images to %s", n, folder)
    return folder


def read_synthetic(folder: Path) -> list[ImageRecord]:
    """Records of a folder written by :func:`write_synthetic_dataset`, with boxes and masks."""
    folder = Path(folder)
    if not (folder / LABELS_FILE).is_file():
        raise ConfigError(f"{folder}: no {LABELS_FILE} (not a synthetic dataset folder)")
    records: dict[str, ImageRecord] = {}
    with (folder / LABELS_FILE).open(newline="") as handle:
        for row in csv.DictReader(handle):
            image_id = row["Image Index"]
            records[image_id] = ImageRecord(
                id=image_id,
                image=folder / "images" / f"{image_id}.png",
                labels={name: float(row[name]) for name in _NAMES},
                meta={"synthetic": True},
            )
    boxes_path = folder / BOXES_FILE
    with boxes_path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Image Index"] not in records:
                raise ConfigError(f"{boxes_path}: box of unknown image {row['Image Index']}")
            mask_path = folder / "masks" / f"{row['Image Index']}_{row['Finding Label']}.png"
            mask = np.asarray(Image.open(mask_path)) > 127 if mask_path.is_file() else None
            records[row["Image Index"]].annotations.append(Annotation(
                row["Finding Label"],
                box=tuple(float(row[key]) for key in ("x", "y", "w", "h")),
                mask=mask,
            ))
    return list(records.values())


def make_demo_radiograph(path: Path, size: int = 512, seed: int = 7,
                         finding: str = "Mass") -> ImageRecord:
    """Write one SYNTHETIC radiograph PNG with a clearly visible ``finding`` (for demos).

    The image is generated, not a patient's; returns its record (``image`` = ``path``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = SyntheticChestGenerator(size, seed).generate(0, findings=[finding])
    _to_png(path, record.pixels)
    record.image = path
    return record
