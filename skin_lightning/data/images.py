"""Decoding image files into uint8 RGB arrays of one size: the only place files are read."""

import logging
import math
import mmap
import multiprocessing
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from skin_lightning.errors import UserError

log = logging.getLogger(__name__)


class BadImageError(Exception):
    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self):
        """Rebuilt from path and reason when a decoding process hands it back."""
        return BadImageError, (self.path, self.reason)


# Smaller images cannot show a lesion; stretching them would feed the model flat colour.
MIN_SIDE = 8
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Pillow's convert("RGB") is wrong for two kinds of file, so they are converted here.

    16-bit grayscale would be clipped to 255 (a white image): it is scaled to 8 bits instead.
    Transparent pixels hold arbitrary colour: they are composited onto black, the colour of
    the corners that rotation augmentation fills, instead of showing whatever was stored.
    """
    if image.mode in SIXTEEN_BIT_MODES:
        levels = np.clip(np.asarray(image, dtype=np.float64), 0, 65535)
        return Image.fromarray(np.round(levels / 257).astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _reason(path: Path, error: Exception) -> str:
    if isinstance(error, UnidentifiedImageError):
        return (
            "empty file (0 bytes)"
            if path.stat().st_size == 0
            else "cannot identify image file: not an image Pillow can read"
        )
    return str(error) or type(error).__name__


def decode_image(path: Path, size: int) -> np.ndarray:
    """An RGB (size, size, 3) uint8 array, upright as the camera's EXIF orientation says."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
                raise BadImageError(
                    path, f"{width}x{height} pixels, over Pillow's decompression-bomb limit of {Image.MAX_IMAGE_PIXELS}"
                )
            if min(width, height) < MIN_SIDE:
                raise BadImageError(
                    path, f"{width}x{height} pixels, too small to show a lesion (at least {MIN_SIDE}x{MIN_SIDE})"
                )
            # a JPEG much larger than `size` decodes at 1/2, 1/4 or 1/8 scale (still >= size): several times faster
            image.draft("RGB", (size, size))
            image = _to_rgb(ImageOps.exif_transpose(image))
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise BadImageError(path, _reason(path, error)) from error


def available_cores() -> int:
    """The cores this process may run on (a cluster job's allocation, not the whole node)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers() -> int:
    return min(8, available_cores())


def shared_store(count: int, size: int) -> np.ndarray:
    """An uint8 (count, size, size, 3) array in anonymous shared memory: decoding processes forked from this
    one write their rows straight into it, so no pixels are ever pickled between processes."""
    shape = (count, size, size, 3)
    return np.frombuffer(mmap.mmap(-1, max(1, math.prod(shape))), dtype=np.uint8)[: math.prod(shape)].reshape(shape)


def _is_shared(store: np.ndarray | None) -> bool:
    """Whether a forked process's writes to `store` reach this process (a file map or shared_store)."""
    base = store
    while base is not None and not isinstance(base, (np.memmap, mmap.mmap)):
        base = getattr(base, "base", None) if isinstance(base, np.ndarray) else getattr(base, "obj", None)
    return store is None or base is not None


# what the forked decoding processes work on: inherited at fork, so each task is only a range of rows
_job: tuple[list[Path], int, np.ndarray | None] | None = None


def _default_sigterm() -> None:
    """A forked worker dies on SIGTERM even where the launcher's handler ignores it (submitit's does): the
    pool's terminate() on an error path would otherwise wait for the worker for ever."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _decode_rows(rows: range) -> tuple[list[BadImageError], int]:
    paths, size, store = _job
    bad = []
    for index in rows:
        try:
            pixels = decode_image(paths[index], size)
        except BadImageError as error:
            bad.append(error)
            continue
        if store is not None:
            store[index] = pixels
    return bad, len(rows)


def decode_into(
    paths: list[Path], size: int, store: np.ndarray | None, workers: int | None = None, desc: str = "decoding"
) -> list[BadImageError]:
    """Decode every file once into row i of `store`, on every core.

    `store` may be a memory-mapped file, so a large cache never has to fit in memory twice, or None
    to only check that every file decodes. Returns the errors of the files that did not decode;
    their rows stay untouched. Decoding a small JPEG is mostly Python work that holds the GIL, so
    threads do not scale: where the platform can fork and the store is shared memory (a file map or
    `shared_store`), forked processes decode blocks of rows in parallel; otherwise threads do.
    """
    global _job
    workers = workers or available_cores()
    blocks = [range(start, min(start + 256, len(paths))) for start in range(0, len(paths), 256)]
    forking = (
        "fork" in multiprocessing.get_all_start_methods() and _is_shared(store) and workers > 1 and len(blocks) > 1
    )
    _job = (paths, size, store)
    try:
        if forking:
            pool = multiprocessing.get_context("fork").Pool(min(workers, len(blocks)), initializer=_default_sigterm)
            results = pool.imap_unordered(_decode_rows, blocks)
        else:
            pool = ThreadPoolExecutor(max_workers=workers)
            results = pool.map(_decode_rows, blocks)
        bad: list[BadImageError] = []
        with pool, tqdm(total=len(paths), desc=desc, unit="img", mininterval=2.0) as progress:
            for errors, count in results:
                bad += errors
                progress.update(count)
            if forking:  # every worker takes its end-of-work marker and exits; terminate() is for errors
                pool.close()
                pool.join()
    finally:
        _job = None
    return bad


def decode_all(
    paths: list[Path], size: int, workers: int | None = None, desc: str = "decoding"
) -> tuple[np.ndarray, np.ndarray, list[BadImageError]]:
    """Decode every file once into memory.

    Returns the images of the files that decoded, a mask of which files those were, and the
    errors of the others, so callers drop exactly the same entries from their labels.
    """
    store = shared_store(len(paths), size)
    bad = decode_into(paths, size, store, workers, desc)
    failed = {error.path for error in bad}
    good = np.asarray([path not in failed for path in paths], dtype=bool)
    return (store if good.all() else store[good]), good, bad


def report_bad_images(bad: list[BadImageError], policy: str, listing: Path | None) -> None:
    """Stop with the whole list (policy "error") or record it and go on without them ("skip").

    `listing` is None on the ranks of a multi-process run that must not write the same file.
    """
    if not bad:
        return
    lines = sorted(f"{error.path}\t{error.reason}" for error in bad)
    if policy == "skip":
        if listing is not None:
            listing.write_text("path\treason\n" + "\n".join(lines) + "\n")
        log.warning("skipped %d unreadable images, listed in %s", len(bad), listing or "the first rank's run directory")
        return
    shown = "\n  ".join(lines[:20]) + (f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else "")
    raise UserError(
        f"{len(bad)} images could not be read:\n  {shown}\n"
        "Fix or remove them, or pass data.on_bad_image=skip to train without them "
        "(they are then listed in the run directory)."
    )
