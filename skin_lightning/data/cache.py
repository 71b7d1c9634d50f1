"""The decoded uint8 store of a data set: built once, then reused from memory or a memory-mapped file.

The disk file is named by a key over the file list, sizes, modification times and image size, so a
changed data set gets a new file instead of stale pixels. It is written under a temporary name and
renamed into place, so a concurrent sweep job or an interrupted run never reads half a file.
"""

import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skin_lightning.data.images import BadImageError, decode_into, shared_store
from skin_lightning.errors import UserError

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # bump when decode_image changes its pixels, so old caches are not reused


@dataclass(frozen=True)
class Store:
    """One (size, size, 3) uint8 row per path, in sorted path order; rows of unreadable files are zero."""

    paths: list[Path]
    images: np.ndarray
    bad: list[BadImageError]

    def rows(self, paths: list[Path]) -> np.ndarray:
        row = {path: i for i, path in enumerate(self.paths)}
        return np.asarray([row[path] for path in paths], dtype=np.int64)


def cache_key(paths: list[Path], size: int) -> str:
    """Changes whenever a file is added, removed, renamed, rewritten or touched, or the size changes."""
    digest = hashlib.sha256(f"v{FORMAT_VERSION} size={size}\n".encode())
    for path in sorted(paths):
        stat = os.stat(path)
        digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def cache_file(paths: list[Path], size: int, cache_dir: Path) -> Path:
    return Path(cache_dir) / f"images-{size}px-{cache_key(paths, size)}.npy"


def _replace_atomically(target: Path, write) -> None:
    """write(temporary path), then rename it onto target: readers see no file or a whole file."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _build(paths: list[Path], size: int, target: Path) -> None:
    started = time.perf_counter()

    def write_pixels(temporary: Path) -> None:
        store = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))
        bad = decode_into(paths, size, store, desc=f"decoding into {target.name}")
        store.flush()
        del store
        # the list of unreadable files is committed first: the pixel file's rename is what makes the cache exist
        _replace_atomically(
            _bad_listing(target),
            lambda listing: listing.write_text(json.dumps({str(e.path): e.reason for e in bad}, indent=0)),
        )

    _replace_atomically(target, write_pixels)
    seconds = time.perf_counter() - started
    log.info("decoded %d images in %.1f s (%.0f images/s) into %s", len(paths), seconds, len(paths) / seconds, target)


def _bad_listing(target: Path) -> Path:
    return target.with_suffix(".bad.json")


def _disk_store(paths: list[Path], size: int, cache_dir: Path) -> Store:
    target = cache_file(paths, size, cache_dir)
    if target.exists() and _bad_listing(target).exists():
        log.info("reading decoded images from %s", target)
    else:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _build(paths, size, target)
        except OSError as error:
            raise UserError(
                f"could not write the image cache in data.cache_dir={cache_dir} ({error.strerror or error}): pass "
                "data.cache_dir=/a/writable/folder with space, or data.cache=memory to decode into memory at every run"
            ) from error
    reasons = json.loads(_bad_listing(target).read_text())
    bad = [BadImageError(Path(path), reason) for path, reason in reasons.items()]
    return Store(paths, np.load(target, mmap_mode="r"), bad)


_last_memory_store: dict[str, Store] = {}


def _memory_store(paths: list[Path], size: int) -> Store:
    """The jobs of a sweep run in one process: the last store is kept so they decode once, not once each."""
    key = cache_key(paths, size)
    if key not in _last_memory_store:
        _last_memory_store.clear()
        started = time.perf_counter()
        store = shared_store(len(paths), size)
        bad = decode_into(paths, size, store)
        seconds = time.perf_counter() - started
        log.info("decoded %d images in %.1f s (%.0f images/s) into memory", len(paths), seconds, len(paths) / seconds)
        _last_memory_store[key] = Store(paths, store, bad)
    return _last_memory_store[key]


def decoded_store(paths: list[Path], size: int, cache: str, cache_dir: Path) -> Store:
    """`cache` is "memory" (decode into RAM) or "disk" (build or reuse a memory-mapped file in cache_dir)."""
    paths = sorted(set(paths))
    if cache == "disk":
        return _disk_store(paths, size, Path(cache_dir))
    return _memory_store(paths, size)
