"""Post-hoc logit adjustment (Menon et al. 2021): re-balance a trained model's predictions without retraining.

argmax(logits - tau * log prior) trades the training split's class shares out of the decision; tau 1 is
the Bayes rule for a balanced test set when the model's probabilities are calibrated. Probabilities do
as well as logits: log p = logits - a constant per image, and softmax forgets that constant.
"""

from collections.abc import Callable

import numpy as np

from skin_lightning.errors import UserError
from skin_lightning.results.stats import point_metrics

TAU_GRID = tuple(round(0.1 * k, 1) for k in range(21))  # what logit_adjustment=auto tries: 0, 0.1, ..., 2


def adjust(probs: np.ndarray, class_counts: list[int], tau: float) -> np.ndarray:
    """Probabilities of the adjusted logits, log p - tau * log prior."""
    counts = np.asarray(class_counts, dtype=np.float64)
    logits = np.log(np.maximum(probs, np.finfo(np.float64).tiny)) - tau * np.log(counts / counts.sum())
    logits -= logits.max(axis=1, keepdims=True)
    adjusted = np.exp(logits)
    return (adjusted / adjusted.sum(axis=1, keepdims=True)).astype(probs.dtype)


def choose_tau(probs: np.ndarray, labels: np.ndarray, class_counts: list[int]) -> float:
    """The tau of TAU_GRID with the best balanced accuracy on these (validation) predictions; the smallest on ties."""
    scores = [
        point_metrics(labels, adjust(probs, class_counts, tau).argmax(axis=1), len(class_counts))["balanced_accuracy"]
        for tau in TAU_GRID
    ]
    return TAU_GRID[int(np.argmax(scores))]


def check_logit_adjustment(setting) -> None:
    """Before any work: a bad value should not cost a training run."""
    if setting in (None, "auto"):
        return
    if isinstance(setting, bool) or not isinstance(setting, int | float) or setting < 0:
        raise UserError(f"logit_adjustment={setting} is invalid: expected null, auto or a number tau >= 0")


def resolve_tau(
    setting: float | str, class_counts: list[int], validation: Callable[[], tuple[np.ndarray, np.ndarray]]
) -> tuple[float, str]:
    """tau from `logit_adjustment=tau|auto` and how it was chosen; `validation` gives (probs, labels) when needed."""
    if setting == "auto":
        probs, labels = validation()
        if len(labels) == 0:
            raise UserError("logit_adjustment=auto needs a validation split: set data.val_fraction > 0, or give tau")
        tau = choose_tau(probs, labels, class_counts)
        return tau, f"tau={tau}, chosen from {TAU_GRID[0]}..{TAU_GRID[-1]} on {len(labels)} validation images"
    check_logit_adjustment(setting)
    return float(setting), f"tau={float(setting)}, given"
