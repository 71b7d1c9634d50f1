"""Likely label errors in Train, ranked by cleanlab from the out-of-fold probabilities of a k-fold sweep.

Each fold job of `train -m data.fold=0,...,k-1` writes val_predictions.csv: the probabilities its tested
checkpoint gives the images it never trained on. Together they cover Train once per seed; with several
seeds an image's probabilities are averaged.
"""

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores

from skin_lightning.errors import UserError
from skin_lightning.results.tables import VALIDATION_PREDICTIONS


@dataclass(frozen=True)
class OutOfFold:
    paths: list[str]
    labels: np.ndarray
    probs: np.ndarray
    classes: list[str]
    files: int


def read_out_of_fold(sweep: Path) -> OutOfFold:
    """Every val_predictions.csv under `sweep`, one row per image (probabilities averaged over repeats)."""
    files = sorted(Path(sweep).rglob(VALIDATION_PREDICTIONS))
    if not files:
        raise UserError(
            f"labels_from={sweep}: no {VALIDATION_PREDICTIONS} under it. Point it at the folder of a k-fold sweep "
            "(python -m skin_lightning.train -m data.fold=0,1,2,3,4 ...), whose jobs write that file"
        )
    totals: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    given: dict[str, str] = {}
    classes: list[str] | None = None
    for file in files:
        with open(file, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            found = [name.removeprefix("prob_") for name in header[3:]]
            if classes is None:
                classes = found
            elif found != classes:
                raise UserError(f"{file} has the classes {found}, other files of labels_from={sweep} have {classes}")
            for row in reader:
                path, probs = row[0], np.asarray(row[3:], dtype=np.float64)
                totals[path] = totals.get(path, 0) + probs
                counts[path] = counts.get(path, 0) + 1
                given[path] = row[1]
    paths = sorted(totals)
    index = {name: k for k, name in enumerate(classes)}
    labels = np.asarray([index[given[p]] for p in paths])
    probs = np.stack([totals[p] / counts[p] for p in paths])
    return OutOfFold(paths, labels, probs / probs.sum(axis=1, keepdims=True), classes, len(files))


def rank_label_issues(found: OutOfFold) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the likely label errors, most doubtful first, and every image's label quality (0 to 1)."""
    quality = get_label_quality_scores(found.labels, found.probs, method="self_confidence")
    ranked = find_label_issues(found.labels, found.probs, return_indices_ranked_by="self_confidence")
    return np.asarray(ranked, dtype=np.int64), quality


def write_label_issues(path: Path, found: OutOfFold, ranked: np.ndarray, quality: np.ndarray) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "path", "given", "suggested", "label_quality", "prob_suggested"])
        for rank, i in enumerate(ranked, start=1):
            suggested = int(found.probs[i].argmax())
            writer.writerow(
                [
                    rank,
                    found.paths[i],
                    found.classes[found.labels[i]],
                    found.classes[suggested],
                    f"{quality[i]:.4f}",
                    f"{found.probs[i, suggested]:.4f}",
                ]
            )
