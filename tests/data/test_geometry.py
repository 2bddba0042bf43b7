"""Crop and resize geometry shared by the torchvision and DALI loaders, against torchvision."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from rcdml.data.geometry import CROP_RATIO, eval_geometry, random_resized_crop, train_geometry


@pytest.mark.parametrize("width, height", [(100, 80), (37, 211), (500, 375), (9, 9)])
def test_random_resized_crop_boxes_follow_the_scale_and_ratio(width, height):
    rng = np.random.default_rng(0)
    for _ in range(300):
        box = random_resized_crop(width, height, rng, (0.16, 1.0))
        assert 0 <= box.top and box.top + box.height <= height
        assert 0 <= box.left and box.left + box.width <= width
        assert box.height > 0 and box.width > 0
        # Rounding w and h to whole pixels moves area and ratio by at most about one pixel.
        area = box.width * box.height / (width * height)
        assert 0.16 * 0.8 - 2 / min(width, height) <= area <= 1.0
        ratio = box.width / box.height
        slack = 1 / box.height + 1 / box.width
        assert CROP_RATIO[0] * (1 - slack) - 1e-9 <= ratio <= CROP_RATIO[1] * (1 + slack) + 1e-9


def test_crop_falls_back_to_the_clamped_centre_like_torchvision():
    # A 200x10 strip never fits a 3/4..4/3 box of 50-100% of its area, so torchvision falls back
    # to a deterministic centre crop at the nearest allowed ratio.
    box = random_resized_crop(200, 10, np.random.default_rng(0), (0.5, 1.0))
    top, left, h, w = T.RandomResizedCrop.get_params(torch.zeros(3, 10, 200), [0.5, 1.0],
                                                     list(CROP_RATIO))
    assert (box.top, box.left, box.height, box.width) == (top, left, h, w)
    box = random_resized_crop(10, 200, np.random.default_rng(0), (0.5, 1.0))
    top, left, h, w = T.RandomResizedCrop.get_params(torch.zeros(3, 200, 10), [0.5, 1.0],
                                                     list(CROP_RATIO))
    assert (box.top, box.left, box.height, box.width) == (top, left, h, w)


def test_train_geometry_is_a_function_of_the_seed():
    a = train_geometry(300, 200, 1234, (0.2, 1.0), flip=True)
    assert a == train_geometry(300, 200, 1234, (0.2, 1.0), flip=True)
    draws = [train_geometry(300, 200, s, (0.2, 1.0), flip=True) for s in range(400)]
    assert len({d.box for d in draws}) > 350
    flips = sum(d.flip for d in draws) / len(draws)
    assert 0.4 < flips < 0.6
    assert not any(train_geometry(300, 200, s, (0.2, 1.0), flip=False).flip for s in range(50))


def test_full_scale_square_crop_is_the_whole_square_image():
    geo = train_geometry(64, 64, 5, (1.0, 1.0), flip=False)
    assert (geo.box.top, geo.box.left, geo.box.height, geo.box.width) == (0, 0, 64, 64)


@pytest.mark.parametrize("width, height", [(300, 200), (200, 300), (137, 251), (105, 105),
                                           (401, 400), (255, 257), (33, 1000)])
@pytest.mark.parametrize("resize, crop", [(256, 224), (40, 32), (37, 36)])
def test_eval_geometry_matches_torchvision_resize_and_centre_crop(width, height, resize, crop):
    geo = eval_geometry(width, height, resize, crop)
    resized = T.Resize(resize)(Image.new("RGB", (width, height)))
    assert (geo.width, geo.height) == resized.size
    # Pixel values that encode their coordinates show where torchvision's centre crop starts.
    coords = np.arange(geo.height * geo.width, dtype=np.int32).reshape(geo.height, geo.width)
    top_left = int(np.asarray(T.CenterCrop(crop)(Image.fromarray(coords, mode="I")))[0, 0])
    assert (geo.crop.top, geo.crop.left) == divmod(top_left, geo.width)
    assert (geo.crop.height, geo.crop.width) == (crop, crop)
    assert math.isclose(geo.width / geo.height, width / height,
                        rel_tol=2 / min(geo.width, geo.height))
