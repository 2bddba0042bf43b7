"""Decoding image files: 16-bit images are scaled to 8 bits by value, not clipped."""
from __future__ import annotations

import numpy as np
from PIL import Image

from rcdml.data.image_io import load_rgb


def test_16_bit_png_reads_as_its_8_bit_twin(tmp_path):
    values = np.random.default_rng(0).integers(0, 256, (12, 10), dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "eight.png")
    Image.fromarray(values.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    with Image.open(tmp_path / "sixteen.png") as image:
        assert image.mode.startswith("I")  # what PIL decodes a 16-bit greyscale PNG to
    sixteen = np.asarray(load_rgb(str(tmp_path / "sixteen.png")))
    assert sixteen.shape == (12, 10, 3)
    np.testing.assert_array_equal(sixteen, np.asarray(load_rgb(str(tmp_path / "eight.png"))))
