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


def load_rgb(path: str) -> Image.Image:
    """The decoded image at ``path``, as RGB."""
    with _naming(path), Image.open(path) as image:
        return image.convert("RGB")


def read_image_file(path: str) -> tuple[np.ndarray, int, int]:
    """File bytes (for a decoder elsewhere) and (width, height) from the header."""
    with _naming(path):
        with open(path, "rb") as f:
            raw = f.read()
        with Image.open(io.BytesIO(raw)) as image:
            width, height = image.size
    return np.frombuffer(raw, dtype=np.uint8), width, height
