"""The splits held out from Train: validation, so the model is chosen without looking at Test, and a test split
where the data has none of its own. Both are drawn with data.split_seed, so the training seed moves neither.

With `groups` (one id per image; images of one cluster of copies share it) every split moves whole groups,
so no copy of a training image is held out; without copies each image is its own group and the split is
the image-by-image split of older runs.
"""

import csv
from pathlib import Path

import numpy as np

from skin_lightning.data.layouts import Samples
from skin_lightning.errors import UserError


def _group_units(labels: np.ndarray, groups) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """The units a split moves: each group's first image stands for it (its label stratifies the group).

    Returns the representative image of every unit, the images of every unit, and each unit's label.
    """
    ids = np.arange(len(labels)) if groups is None else np.asarray(groups)
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    unit_of = rank[inverse]
    members = [[] for _ in order]
    for image, unit in enumerate(unit_of):
        members[unit].append(image)
    representatives = first[order]
    return representatives, [np.asarray(m) for m in members], labels[representatives]


def stratified_split(labels, fraction: float, seed: int, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """Hold out `fraction` of every class (at least one image of any class with two or more).

    Whole groups move: a class's groups are shuffled and held out until the class's share is reached.
    """

    def share(label: int, total: int) -> int:
        count = int(round(fraction * total))
        return min(max(count, 1), total - 1) if fraction > 0 and total >= 2 else count

    return _hold_out(labels, share, seed, groups)


def _hold_out(labels, count_of, seed: int, groups) -> tuple[np.ndarray, np.ndarray]:
    """Hold out `count_of(label, images of the label)` images of every class, moving whole groups."""
    labels = np.asarray(labels)
    _, members, unit_labels = _group_units(labels, groups)
    rng = np.random.default_rng(seed)
    held_out = []
    for label in np.unique(unit_labels):
        units = rng.permutation(np.flatnonzero(unit_labels == label))
        sizes = np.array([len(members[u]) for u in units])
        total = int(sizes.sum())
        count = count_of(int(label), total)
        taken = int(np.searchsorted(np.cumsum(sizes), count)) + 1 if count else 0
        if len(units) >= 2:  # a class never goes wholly to one side while it has two groups
            taken = min(taken, len(units) - 1)
        elif total >= 2:  # one group of copies: it cannot be split
            taken = 0
        held_out.extend(members[u] for u in units[:taken])
    held = np.sort(np.concatenate(held_out)) if held_out else np.array([], dtype=int)
    kept = np.setdiff1d(np.arange(len(labels)), held)
    return kept, held


def carve_test_split(
    labels, classes: list[str], fraction: float, per_class: int | None, seed: int, groups=None
) -> tuple[np.ndarray, np.ndarray]:
    """The test split of data without one of its own: `per_class` images of every class (a balanced test split,
    like the course's 100 a class; whole groups of copies move, so a class may get a few more), else `fraction`.

    A class with no more than `per_class` images cannot give them and keep any to train on: that is an error
    naming the class, not a quietly unbalanced test split.
    """
    if per_class is None:
        return stratified_split(labels, fraction, seed, groups)
    counts = np.bincount(np.asarray(labels), minlength=len(classes))
    short = [f"{classes[k]} ({n})" for k, n in enumerate(counts) if n <= per_class]
    if short:
        raise UserError(
            f"data.test_per_class={per_class} needs more than {per_class} training images of every class, and "
            f"{', '.join(short)} has fewer: lower data.test_per_class or set data.test_fraction with "
            "data.test_per_class=null"
        )
    return _hold_out(labels, lambda label, total: per_class, seed, groups)


def stratified_folds(labels, n_folds: int, seed: int, groups=None) -> list[np.ndarray]:
    """Validation indices of each fold, with every class spread evenly.

    Per class the groups (single images where there are no copies) are shuffled and dealt round-robin;
    the dealer keeps its position from one class to the next, so the remainders of different classes
    land on different folds and, without copies, fold sizes differ by at most one.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a non-empty 1-D array of class indices, got {labels.dtype} {labels.shape}")
    if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or not 2 <= n_folds <= labels.size:
        raise ValueError(
            f"n_folds must be a whole number from 2 to the number of labels ({labels.size}), got {n_folds!r}"
        )
    _, members, unit_labels = _group_units(labels, groups)
    rng = np.random.default_rng(seed)
    fold_of = np.empty(labels.size, dtype=np.int64)
    start = 0
    for k in np.unique(unit_labels):
        units = rng.permutation(np.flatnonzero(unit_labels == k))
        for position, unit in enumerate(units):
            fold_of[members[unit]] = (start + position) % n_folds
        start = (start + units.size) % n_folds
    return [np.flatnonzero(fold_of == fold) for fold in range(n_folds)]


def fold_split(labels: list[int], folds: int, fold: int, seed: int, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """Hold out fold `fold` of `folds` stratified folds of Train.

    The partition depends only on the labels and the seed, so the k jobs of one seed hold out
    k disjoint validation sets that together cover Train exactly once.
    """
    if folds > len(labels):
        raise UserError(f"data.folds={folds} is more than the {len(labels)} training images: use fewer folds")
    held = stratified_folds(labels, folds, seed, groups)[fold]
    return np.setdiff1d(np.arange(len(labels)), held), held


def write_split_csv(path: Path, splits: dict[str, Samples], classes: list[str], split_seed: int) -> None:
    """One row per image and the split it went to, with the data.split_seed that drew it, so a run's data can be
    audited and reused."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split", "split_seed"])
        for split, samples in splits.items():
            for image, label in zip(samples.paths, samples.labels):
                writer.writerow([str(image), classes[label], split, split_seed])
