"""Paired comparisons and ensembles of sweep jobs that were tested on the same images.

Two jobs scored on the same images are compared image by image: image difficulty cancels out,
so a real difference shows up far sooner than by comparing two separate intervals, and a
difference smaller than the noise of the test set is not mistaken for progress.
"""

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skin_lightning.errors import UserError
from skin_lightning.results.scores import BOOTSTRAP
from skin_lightning.results.stats import mcnemar_exact, paired_bootstrap_difference

PREDICTIONS_FILE = "test_predictions.csv"


@dataclass(frozen=True)
class Predictions:
    paths: list[str]
    labels: np.ndarray
    predicted: np.ndarray
    probs: np.ndarray

    def reordered(self, order: np.ndarray) -> "Predictions":
        return Predictions([self.paths[i] for i in order], self.labels[order], self.predicted[order], self.probs[order])


def read_predictions(job_dir: Path, classes: list[str]) -> Predictions:
    """A job's test_predictions.csv as class indices in the order of `classes`."""
    path = Path(job_dir) / PREDICTIONS_FILE
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [f"prob_{cls}" for cls in classes]
        if reader.fieldnames is None or not set(["path", "true", "predicted", *columns]) <= set(reader.fieldnames):
            raise UserError(f"{path} lacks the columns path, true, predicted, {', '.join(columns)}: rerun the job")
        rows = list(reader)
    index = {cls: k for k, cls in enumerate(classes)}
    try:
        labels = np.array([index[row["true"]] for row in rows], dtype=np.int64)
        predicted = np.array([index[row["predicted"]] for row in rows], dtype=np.int64)
    except KeyError as error:
        raise UserError(f"{path} names class {error.args[0]}, which is not one of {', '.join(classes)}") from None
    probs = np.array([[float(row[column]) for column in columns] for row in rows]).reshape(len(rows), len(classes))
    return Predictions([row["path"] for row in rows], labels, predicted, probs)


def aligned(reference: Predictions, other: Predictions) -> Predictions | None:
    """`other` in the image order of `reference`, or None when they were not tested on the same images."""
    if sorted(reference.paths) != sorted(other.paths) or len(set(other.paths)) != len(other.paths):
        return None
    position = {path: i for i, path in enumerate(other.paths)}
    result = other.reordered(np.array([position[path] for path in reference.paths], dtype=np.int64))
    return result if np.array_equal(result.labels, reference.labels) else None


def paired_comparison(reference: Predictions, other: Predictions, num_classes: int) -> dict[str, float]:
    """Balanced accuracy of `other` minus the reference's, its paired bootstrap interval, and McNemar's p.

    McNemar's exact test looks at per-image correctness, so it tests accuracy; the interval is of
    balanced accuracy, the score the sweep ranks by. `other` must be aligned to `reference`.
    """
    diff, low, high = paired_bootstrap_difference(
        reference.labels, reference.predicted, other.predicted, num_classes,
        metric="balanced_accuracy", n_resamples=BOOTSTRAP["resamples"],
        confidence=BOOTSTRAP["confidence"], seed=BOOTSTRAP["seed"],
    )
    p_value = mcnemar_exact(reference.predicted == reference.labels, other.predicted == other.labels)
    return {"diff": diff, "diff_low": low, "diff_high": high, "mcnemar_p": p_value}


def ensemble(members: list[Predictions]) -> Predictions | None:
    """Averaged probabilities of models tested on the same images, or None when their images differ."""
    first, *others = members
    lined_up = [first, *(aligned(first, other) for other in others)]
    if any(member is None for member in lined_up):
        return None
    probs = np.mean([member.probs for member in lined_up], axis=0)
    return Predictions(first.paths, first.labels, probs.argmax(axis=1), probs)
