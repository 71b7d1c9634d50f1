"""Decoding image files into uint8 RGB arrays of one size: the only place files are read."""

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from skin_lightning.errors import UserError

log = logging.getLogger(__name__)


class BadImageError(Exception):
    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def decode_image(path: Path, size: int) -> np.ndarray:
    """An RGB (size, size, 3) uint8 array, upright as the camera's EXIF orientation says."""
    try:
        with Image.open(path) as image:
            # a JPEG much larger than `size` decodes at 1/2, 1/4 or 1/8 scale (still >= size): several times faster
            image.draft("RGB", (size, size))
            image = ImageOps.exif_transpose(image).convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise BadImageError(path, str(error) or type(error).__name__) from error


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)


def decode_into(
    paths: list[Path], size: int, store: np.ndarray, workers: int | None = None, desc: str = "decoding"
) -> list[BadImageError]:
    """Decode every file once into row i of `store`, in parallel threads (Pillow releases the GIL).

    `store` may be a memory-mapped file, so a large cache never has to fit in memory twice.
    Returns the errors of the files that did not decode; their rows stay untouched.
    """
    bad: list[BadImageError] = []

    def decode_one(index: int) -> None:
        try:
            store[index] = decode_image(paths[index], size)
        except BadImageError as error:
            bad.append(error)

    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        for _ in tqdm(pool.map(decode_one, range(len(paths))), total=len(paths), desc=desc, unit="img", mininterval=2.0):
            pass
    return bad


def decode_all(
    paths: list[Path], size: int, workers: int | None = None, desc: str = "decoding"
) -> tuple[np.ndarray, np.ndarray, list[BadImageError]]:
    """Decode every file once into memory.

    Returns the images of the files that decoded, a mask of which files those were, and the
    errors of the others, so callers drop exactly the same entries from their labels.
    """
    store = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    bad = decode_into(paths, size, store, workers, desc)
    failed = {error.path for error in bad}
    good = np.asarray([path not in failed for path in paths], dtype=bool)
    return (store if good.all() else store[good]), good, bad


def report_bad_images(bad: list[BadImageError], policy: str, listing: Path) -> None:
    """Stop with the whole list (policy "error") or record it and go on without them ("skip")."""
    if not bad:
        return
    lines = sorted(f"{error.path}\t{error.reason}" for error in bad)
    if policy == "skip":
        listing.write_text("path\treason\n" + "\n".join(lines) + "\n")
        log.warning("skipped %d unreadable images, listed in %s", len(bad), listing)
        return
    shown = "\n  ".join(lines[:20]) + (f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else "")
    raise UserError(
        f"{len(bad)} images could not be read:\n  {shown}\n"
        "Fix or remove them, or pass data.on_bad_image=skip to train without them (they are then listed in the run directory)."
    )
