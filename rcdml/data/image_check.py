"""Find unreadable image files when a dataset is read, not hours into a run.

Depth of the check (``data.check_images``), from cheapest to most thorough:

- ``exists``: the file is there and not empty (one ``stat``).
- ``header``: PIL identifies the format and the size from the first bytes (a few KiB read):
  catches missing, empty, non-image and wrong-format files, not truncated data.
- ``decode``: the whole file is decoded (JPEGs at 1/8 scale, which still reads every byte of the
  entropy-coded data): also catches truncated and corrupt files. About 1 ms per 500x375 JPEG on
  one core, spread over threads and over the ranks.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from PIL import Image

from rcdml.distributed.launch import local_world_size
from rcdml.errors import UserError

CHECK_LEVELS = ("exists", "header", "decode")
# PIL format names of the files both loaders decode (PIL and DALI's decoders.image).
DECODABLE_FORMATS = ("BMP", "JPEG", "JPEG2000", "PNG", "PPM", "TIFF", "WEBP")
_PIL_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def image_problem(path: str, level: str) -> str | None:
    """Why ``path`` cannot be used as an image at check ``level``, or None if it can."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"cannot stat ({e.strerror})"
    if size == 0:
        return "empty file"
    if level == "exists":
        return None
    try:
        with Image.open(path) as image:
            if image.format not in DECODABLE_FORMATS:
                return (f"{image.format} images are not supported; allowed formats: "
                        + ", ".join(DECODABLE_FORMATS))
            if level == "decode":
                if image.format == "JPEG":
                    image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
                image.load()
    except _PIL_ERRORS as e:
        return f"not a readable image ({e})"
    return None


def check_threads() -> int:
    """Threads per process: the CPUs shared by the processes torchrun started on this node
    (decoding in PIL releases the GIL; stat and header reads wait on storage)."""
    local = local_world_size()
    return max(2, (os.cpu_count() or 1) // local)


def find_unreadable(paths: Sequence[str], level: str, threads: int | None = None) -> dict[str, str]:
    """``{path: problem}`` for every path of ``paths`` that fails the check."""
    if level not in CHECK_LEVELS:
        raise ValueError(f"unknown image check {level!r}; allowed: {', '.join(CHECK_LEVELS)}")
    if not paths:
        return {}
    with ThreadPoolExecutor(threads or check_threads()) as pool:
        problems = pool.map(image_problem, paths, [level] * len(paths))
        return {p: why for p, why in zip(paths, problems) if why is not None}


class UnreadableImagesError(UserError):
    """Some images of the dataset cannot be read; the message lists them, on one line (every rank
    raises it; the CLI prints it once, on rank 0)."""

    kind = "data error"

    def __init__(self, problems: dict[str, str], total: int, level: str, shown: int = 20) -> None:
        self.problems = dict(problems)
        listing = [line.strip() for line in describe_problems(problems, total, level, shown).splitlines()]
        super().__init__(f"{listing[0]} {'; '.join(listing[1:])}. Fix or remove these "
                         "files, or set data.bad_images=skip to leave them out of the run.")


def describe_problems(problems: dict[str, str], total: int, level: str, shown: int = 20) -> str:
    lines = [f"{len(problems)} of {total} images cannot be read (data.check_images={level}):"]
    for path in sorted(problems)[:shown]:
        lines.append(f"  {path}: {problems[path]}")
    if len(problems) > shown:
        lines.append(f"  ... and {len(problems) - shown} more")
    return "\n".join(lines)
