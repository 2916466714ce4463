"""Training augmentation: random resized crops, Hide-and-Seek, and their config."""

from __future__ import annotations

import pytest
import torch

from CXRWeakLocLib.core.errors import ConfigError
from CXRWeakLocLib.data.dataset import Augmentation, RandHidePatchesd, RandResizedCropd
from CXRWeakLocLib.train.config import load_config


def test_hide_patches_blanks_whole_grid_cells():
    transform = RandHidePatchesd("image", prob=0.5, grid=8)
    transform.set_random_state(seed=1)
    image = torch.ones(1, 64, 64)
    hidden = transform({"image": image})["image"][0]
    cells = hidden.reshape(8, 8, 8, 8).permute(0, 2, 1, 3).reshape(64, 64)
    assert set(cells.min(dim=1).values.tolist()) <= {0.0, 1.0}
    assert torch.equal(cells.min(dim=1).values, cells.max(dim=1).values)
    assert 0.2 < (cells[:, 0] == 0).float().mean() < 0.8
    assert torch.all(image == 1), "the input must not be modified in place"


def test_hide_patches_follow_the_seed():
    def hide(seed: int) -> torch.Tensor:
        transform = RandHidePatchesd("image", prob=0.3, grid=4)
        transform.set_random_state(seed=seed)
        return transform({"image": torch.ones(1, 32, 32)})["image"]

    assert torch.equal(hide(5), hide(5))
    assert not torch.equal(hide(5), hide(6))


def test_resized_crop_zooms_into_part_of_the_image():
    ramp = torch.linspace(0, 1, 64).expand(1, 64, 64).clone()
    transform = RandResizedCropd("image", area=(0.25, 0.25))
    transform.set_random_state(seed=0)
    crop = transform({"image": ramp})["image"]
    assert crop.shape == ramp.shape
    span = float(crop[0, 0].max() - crop[0, 0].min())
    assert 0.3 < span < 0.7, "a quarter of the area spans about half of the ramp"
    assert torch.all(crop[0, 0, 1:] >= crop[0, 0, :-1]), "the crop keeps orientation"


def test_default_augmentation_has_no_crop_and_no_hiding():
    names = [type(step).__name__ for step in Augmentation().transforms()]
    assert names == ["RandAffined", "RandAdjustContrastd"]
    names = [type(step).__name__ for step in
             Augmentation(crop_area=(0.5, 1.0), hide_probability=0.2).transforms()]
    assert names == ["RandResizedCropd", "RandAffined", "RandAdjustContrastd",
                     "RandHidePatchesd"]


@pytest.mark.parametrize(("table", "message"), [
    ("{ crop_area = [0.9, 0.5] }", "crop_area"),
    ("{ hide_probability = 1.5 }", "hide_probability"),
    ("{ flip = true }", "unknown setting(s) flip"),
])
def test_config_refuses_bad_augmentation(tmp_path, table, message):
    path = tmp_path / "run.toml"
    path.write_text(f'[data]\ndataset = "synthetic"\naugmentation = {table}\n')
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config(path)


def test_config_reads_augmentation(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[data]\naugmentation = { crop_area = [0.4, 1.0], hide_grid = 4 }\n')
    augmentation = load_config(path).data.augmentation
    assert augmentation.crop_area == (0.4, 1.0)
    assert augmentation.hide_grid == 4
    assert augmentation.hide_probability == 0.0
