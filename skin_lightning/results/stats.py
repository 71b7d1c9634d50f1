"""Uncertainty and comparison statistics for test-set results.

A single test-set number hides how much it would move on another draw of
images, and two jobs scored on the same images are correlated, so comparing
their separate intervals is too conservative. Everything here is pure
numpy/scipy so it runs on the saved predictions, without a model or a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import binomtest

from skin_lightning.model.metrics import headline_scores

__all__ = [
    "bootstrap_intervals",
    "holm",
    "mcnemar_exact",
    "mean_sd",
    "paired_bootstrap_difference",
    "point_metrics",
    "proportion_interval",
]


def _as_labels(name: str, values: ArrayLike, num_classes: int | None = None) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    if num_classes is not None and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(
            f"{name} has labels outside [0, {num_classes}): "
            f"min {arr.min()}, max {arr.max()}"
        )
    return arr.astype(np.int64, copy=False)


def _as_flags(name: str, values: ArrayLike) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype != np.bool_:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must be boolean (per-image correctness)")
        arr = arr.astype(bool)
    return arr


def _check_same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise ValueError(f"length mismatch: {detail}")


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_bootstrap_args(n_resamples: int, confidence: float) -> None:
    _check_int("n_resamples", n_resamples, 1)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(1, num_classes, num_classes)


def _resampled_confusions(
    y_true: np.ndarray,
    preds: Sequence[np.ndarray],
    num_classes: int,
    n_resamples: int,
    seed: int,
) -> list[np.ndarray]:
    """Confusion matrices of stratified bootstrap resamples, one stack per model.

    Resampling inside each true class keeps the class mix of the test set
    fixed, so per-class recall is always defined and the interval reflects
    sampling of images, not of class proportions. All models in `preds` see
    the same resampled images, which is what makes paired comparisons valid.
    """
    rng = np.random.default_rng(seed)
    offsets = (np.arange(n_resamples, dtype=np.int64) * num_classes)[:, None]
    stacks = [np.zeros((n_resamples, num_classes, num_classes), dtype=np.int64) for _ in preds]
    for k in np.unique(y_true):
        members = np.flatnonzero(y_true == k)
        draws = members[rng.integers(0, members.size, size=(n_resamples, members.size))]
        for stack, pred in zip(stacks, preds):
            counts = np.bincount(
                (offsets + pred[draws]).ravel(), minlength=n_resamples * num_classes
            )
            stack[:, k, :] = counts.reshape(n_resamples, num_classes)
    return stacks


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    low, high = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def point_metrics(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> dict[str, float]:
    """Test-set metrics, computed by the same code as their bootstrap intervals.

    Keys: "accuracy", "balanced_accuracy", "macro_f1" and "recall/<k>" for
    every class k present in y_true (see `headline_scores`).
    """
    _check_int("num_classes", num_classes, 1)
    y_true = _as_labels("y_true", y_true, num_classes)
    y_pred = _as_labels("y_pred", y_pred, num_classes)
    _check_same_length(y_true=y_true, y_pred=y_pred)
    metrics = headline_scores(_confusion(y_true, y_pred, num_classes))
    return {name: float(values[0]) for name, values in metrics.items()}


def bootstrap_intervals(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    num_classes: int,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Stratified percentile bootstrap intervals for every key of `point_metrics`.

    Reports how far each number could move on another test set of the same
    size and class mix. Percentile intervals are not forced to contain the
    point estimate; for metrics pinned near 0 or 1 on small classes they may
    sit to one side of it.
    """
    _check_int("num_classes", num_classes, 1)
    _check_bootstrap_args(n_resamples, confidence)
    y_true = _as_labels("y_true", y_true, num_classes)
    y_pred = _as_labels("y_pred", y_pred, num_classes)
    _check_same_length(y_true=y_true, y_pred=y_pred)
    (cms,) = _resampled_confusions(y_true, [y_pred], num_classes, n_resamples, seed)
    metrics = headline_scores(cms)
    return {name: _percentile_interval(values, confidence) for name, values in metrics.items()}


def paired_bootstrap_difference(
    y_true: ArrayLike,
    pred_a: ArrayLike,
    pred_b: ArrayLike,
    num_classes: int,
    *,
    metric: str = "balanced_accuracy",
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Difference `metric(b) - metric(a)` with a paired stratified bootstrap interval.

    Both models are scored on the same resampled images, so image difficulty
    cancels out and the interval is much tighter than comparing two separate
    intervals. Returns (point difference, low, high).
    """
    _check_int("num_classes", num_classes, 1)
    _check_bootstrap_args(n_resamples, confidence)
    y_true = _as_labels("y_true", y_true, num_classes)
    pred_a = _as_labels("pred_a", pred_a, num_classes)
    pred_b = _as_labels("pred_b", pred_b, num_classes)
    _check_same_length(y_true=y_true, pred_a=pred_a, pred_b=pred_b)
    point_a = point_metrics(y_true, pred_a, num_classes)
    if metric not in point_a:
        raise ValueError(f"metric must be one of {sorted(point_a)}, got {metric!r}")
    point_b = point_metrics(y_true, pred_b, num_classes)
    cms_a, cms_b = _resampled_confusions(y_true, [pred_a, pred_b], num_classes, n_resamples, seed)
    diffs = headline_scores(cms_b)[metric] - headline_scores(cms_a)[metric]
    low, high = _percentile_interval(diffs, confidence)
    return point_b[metric] - point_a[metric], low, high


def proportion_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a single proportion such as one class's recall; None when nothing was counted.

    Unlike a percentile bootstrap it does not collapse at 0/n or n/n: 25 of 25 right gives
    [0.867, 1.000], the plausible true rates that such a result does not rule out.
    """
    _check_int("trials", trials, 0)
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must lie in [0, trials={trials}], got {successes!r}")
    if trials == 0:
        return None
    result = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(result.low), float(result.high)


def mcnemar_exact(correct_a: ArrayLike, correct_b: ArrayLike) -> float:
    """Exact two-sided McNemar p-value for two models scored on the same images.

    Only images where exactly one model is right carry information; under
    the null of equal accuracy each such image is a fair coin, so the count
    is tested against Binomial(discordant, 0.5).
    """
    correct_a = _as_flags("correct_a", correct_a)
    correct_b = _as_flags("correct_b", correct_b)
    _check_same_length(correct_a=correct_a, correct_b=correct_b)
    only_b = int(np.count_nonzero(~correct_a & correct_b))
    only_a = int(np.count_nonzero(correct_a & ~correct_b))
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_b, only_a + only_b, p=0.5, alternative="two-sided").pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    A sweep compares many pairs of jobs; Holm controls the family-wise error
    rate without assuming independence and is uniformly stronger than plain
    Bonferroni. An empty family adjusts to an empty list.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be a 1-D sequence, got shape {p.shape}")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("p_values must all lie in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adjusted_sorted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted.tolist()


def mean_sd(values: ArrayLike) -> tuple[float, float, int]:
    """Mean, sample SD (ddof=1) and n over seeds or folds.

    n is returned so that a spread from two runs is never read like one from
    ten; the SD is NaN for a single run rather than a misleading 0.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"values must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("values is empty")
    sd = float(arr.std(ddof=1)) if arr.size >= 2 else float("nan")
    return float(arr.mean()), sd, int(arr.size)
