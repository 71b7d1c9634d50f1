"""The audit of a data set: clusters of copies across all its images, and the image issues, computed once.

It is cached under the decode cache's key (file list, sizes, modification times, image size): in memory for
the jobs of a sweep, which run in one process, and beside the decoded images with `data.cache=disk`.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skin_lightning.data.cache import cache_key
from skin_lightning.data.copies import audit_pixels, find_copies, image_issues, perceptual_hashes
from skin_lightning.data.layouts import Samples

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Audit:
    """Per path (sorted, as the decoded store): cluster id (-1: no copy), smallest residual to a copy, issues."""

    paths: list[Path]
    cluster: np.ndarray
    residual: np.ndarray
    issues: list[str]
    seconds: float

    def clusters_of(self, paths: list[Path]) -> np.ndarray:
        """Cluster id of each of `paths` (-1: no copy)."""
        row = {path: i for i, path in enumerate(self.paths)}
        return self.cluster[np.asarray([row[path] for path in paths], dtype=np.int64)]

    def groups(self, paths: list[Path]) -> np.ndarray:
        """Split units: copies share their cluster's id, every other image has an id of its own."""
        cluster = self.clusters_of(paths)
        return np.where(cluster >= 0, cluster, -1 - np.arange(len(cluster)))

    def conflicts(self, paths: list[Path], labels: list[int]) -> np.ndarray:
        """Ids of the clusters whose copies among `paths` carry more than one label."""
        cluster, labels = self.clusters_of(paths), np.asarray(labels)
        ids = np.unique(cluster[cluster >= 0])
        return np.asarray([c for c in ids if len(np.unique(labels[cluster == c])) > 1], dtype=np.int64)

    def without_conflicts(self, train: Samples, paths: list[Path], labels: list[int]) -> tuple[Samples, Samples]:
        """`train` split into the images outside and inside clusters whose copies among `paths` (with `labels`)
        carry more than one label."""
        conflicting = np.isin(self.clusters_of(train.paths), self.conflicts(paths, labels))
        return train.subset(np.flatnonzero(~conflicting)), train.subset(np.flatnonzero(conflicting))

    def twins(self, paths: list[Path], others: list[Path]) -> list[str]:
        """For each of `paths`, a copy of it among `others` (the first in their order), or "" where it has none:
        the name a report gives, so every image counted as a copy can be looked at beside its twin."""
        first: dict[int, Path] = {}
        for cluster, other in zip(self.clusters_of(others), others):
            if cluster >= 0:
                first.setdefault(int(cluster), other)
        return [str(first.get(int(cluster), "")) for cluster in self.clusters_of(paths)]

    def training_twins(self, test: list[Path], training: list[Path], left_out: list[Path]) -> tuple[list[str], int]:
        """Each test image's copy among `training` (or ""), and how many other test images have copies only among
        `left_out` (label conflicts): the audit counts those as Train-Test copies, a run scores them as unseen."""
        twins = self.twins(test, training)
        dropped = self.twins(test, left_out)
        return twins, sum(1 for twin, other in zip(twins, dropped) if other and not twin)


def run_audit(paths: list[Path], images: np.ndarray) -> Audit:
    """Audit decoded `images` (uint8 NHWC, row i is paths[i])."""
    started = time.perf_counter()
    pixels = audit_pixels(images)
    copies = find_copies(pixels, perceptual_hashes(pixels))
    seconds = time.perf_counter() - started
    clustered = int((copies.cluster >= 0).sum())
    log.info(
        "audit: %d of %d images are in %d clusters of copies (%.1f s)",
        clustered,
        len(paths),
        int(copies.cluster.max()) + 1,
        seconds,
    )
    return Audit(list(paths), copies.cluster, copies.residual, image_issues(pixels), seconds)


_last_audit: dict[str, Audit] = {}


def _audit_file(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / f"audit-{key}.npz"


def cached_audit(
    paths: list[Path], images: Callable[[], np.ndarray], size: int, cache_dir: Path | None
) -> Audit:
    """The audit of `paths`, from memory, from `cache_dir` when given and written there before, or computed.

    `images()` gives the pixels (`size` px) and is called only when the audit is computed: a sweep whose
    store is smaller than the audit's size decodes the images again once, not once a job."""
    key = cache_key(paths, size)
    if key in _last_audit:
        return _last_audit[key]
    stored = _audit_file(cache_dir, key) if cache_dir is not None else None
    if stored is not None and stored.exists():
        with np.load(stored) as saved:
            audit = Audit(list(paths), saved["cluster"], saved["residual"], saved["issues"].tolist(), 0.0)
        log.info("audit read from %s", stored)
    else:
        audit = run_audit(paths, images())
        if stored is not None:
            temporary = stored.with_name(f".{stored.name}.tmp.npz")
            np.savez(temporary, cluster=audit.cluster, residual=audit.residual, issues=np.asarray(audit.issues))
            temporary.replace(stored)
    _last_audit.clear()
    _last_audit[key] = audit
    return audit
