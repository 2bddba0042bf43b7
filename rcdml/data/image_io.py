"""Opening image files, with the path in every error. Imports neither torch nor DALI: DALI's
worker processes use it (through :mod:`rcdml.data.dali_source`)."""
from __future__ import annotations

import contextlib
import io
from typing import Iterator

import numpy as np
from PIL import Image


@contextlib.contextmanager
def _naming(path: str) -> Iterator[None]:
    """Any error decoding ``path`` as an OSError that names it."""
    try:
        yield
    except (OSError, ValueError, SyntaxError) as e:
        raise OSError(f"cannot read image {path}: {e}") from e


# 16-bit greyscale modes: PIL's convert("RGB") clips their values at 255 instead of scaling them.
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def load_rgb(path: str) -> Image.Image:
    """The decoded image at ``path``, as RGB (16-bit images scaled to 8 bits by value)."""
    with _naming(path), Image.open(path) as image:
        if image.mode in _SIXTEEN_BIT:
            # 0..65535 -> 0..255 (x / 257, rounded); mode "I" holds a 16-bit PNG's values too.
            values = np.asarray(image, dtype=np.float64)
            image = Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8))
        return image.convert("RGB")


def read_image_file(path: str) -> tuple[np.ndarray, int, int]:
    """File bytes (for a decoder elsewhere) and (width, height) from the header."""
    with _naming(path):
        with open(path, "rb") as f:
            raw = f.read()
        with Image.open(io.BytesIO(raw)) as image:
            width, height = image.size
    return np.frombuffer(raw, dtype=np.uint8), width, height
