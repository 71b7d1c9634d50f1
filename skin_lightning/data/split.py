"""The validation split held out from Train, so the model is chosen without looking at Test."""

import csv
from pathlib import Path

import numpy as np

from skin_lightning.data.layouts import Samples
from skin_lightning.errors import UserError


def stratified_split(labels: list[int], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out `fraction` of every class (at least one image of any class with two or more)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held_out = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = int(round(fraction * len(members)))
        if fraction > 0 and len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        held_out.append(members[:count])
    held = np.sort(np.concatenate(held_out)) if held_out else np.array([], dtype=int)
    kept = np.setdiff1d(np.arange(len(labels)), held)
    return kept, held


def stratified_folds(labels, n_folds: int, seed: int) -> list[np.ndarray]:
    """Validation indices of each fold, with every class spread evenly.

    Per class the indices are shuffled and dealt round-robin; the dealer keeps its position from
    one class to the next, so the remainders of different classes land on different folds and
    fold sizes differ by at most one.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a non-empty 1-D array of class indices, got {labels.dtype} {labels.shape}")
    if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or not 2 <= n_folds <= labels.size:
        raise ValueError(
            f"n_folds must be a whole number from 2 to the number of labels ({labels.size}), got {n_folds!r}"
        )
    rng = np.random.default_rng(seed)
    fold_of = np.empty(labels.size, dtype=np.int64)
    start = 0
    for k in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == k))
        fold_of[members] = (start + np.arange(members.size)) % n_folds
        start = (start + members.size) % n_folds
    return [np.flatnonzero(fold_of == fold) for fold in range(n_folds)]


def fold_split(labels: list[int], folds: int, fold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out fold `fold` of `folds` stratified folds of Train.

    The partition depends only on the labels and the seed, so the k jobs of one seed hold out
    k disjoint validation sets that together cover Train exactly once.
    """
    if folds > len(labels):
        raise UserError(f"data.folds={folds} is more than the {len(labels)} training images: use fewer folds")
    held = stratified_folds(labels, folds, seed)[fold]
    return np.setdiff1d(np.arange(len(labels)), held), held


def write_split_csv(path: Path, splits: dict[str, Samples], classes: list[str]) -> None:
    """One row per image and the split it went to, so a run's data can be audited and reused."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        for split, samples in splits.items():
            for image, label in zip(samples.paths, samples.labels):
                writer.writerow([str(image), classes[label], split])
