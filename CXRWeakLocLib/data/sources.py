"""One entry point from a dataset name and folder to records.

``train`` and ``evaluate`` both call :func:`read_dataset`; the format readers stay
in their own modules. (Training keeps only the image-level labels:
:func:`~CXRWeakLocLib.train.run.training_records`.)
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import ConfigError
from .records import ImageRecord

__all__ = ["DATASETS", "read_dataset"]

DATASETS = ("chestxray14", "chexpert", "tbx11k", "covid19", "synthetic")


def read_dataset(
    name: str,
    root: Path,
    images_list: Path | None = None,
    annotations: bool = False,
    uncertainty: str = "ignore",
) -> list[ImageRecord]:
    """Records of a dataset in its own layout.

    Args:
        name: one of :data:`DATASETS`.
        root: the dataset folder.
        images_list: restrict to the images named in this file (ChestX-ray14 splits); a
            relative path that is not in the current folder is looked up in ``root``
            (``--root nih-mini --images-list dev_bbox_list.txt``).
        annotations: attach boxes/masks (evaluation only; training never asks).
        uncertainty: CheXpert's policy for uncertain labels (ones / zeros / ignore).
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: dataset folder not found")
    if images_list is not None and not Path(images_list).exists() \
            and not Path(images_list).is_absolute() and (root / images_list).is_file():
        images_list = root / images_list
    if name == "chestxray14":
        from .chestxray14 import read_chestxray14

        return read_chestxray14(root, images_list, with_boxes=annotations)
    if images_list is not None:
        raise ConfigError(f"--images-list is only supported for chestxray14, not {name}")
    if name == "chexpert":
        from .chexpert import read_chexpert_with_localize

        return read_chexpert_with_localize(root, uncertainty=uncertainty, masks=annotations)
    if name == "tbx11k":
        from .tbx11k import read_tbx11k

        return read_tbx11k(root)
    if name == "covid19":
        from .covid19 import read_covid19

        return read_covid19(root)
    if name == "synthetic":
        from .synthetic import read_synthetic

        return read_synthetic(root)
    raise ConfigError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
