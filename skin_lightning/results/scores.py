"""Every number of a test report, with its interval: the one scoring path of `train` and `evaluate`.

Headline scores come from `model.metrics` (the same functions as the logged scalars); per-class
ratios from torchmetrics; intervals from `stats`. A test of training and an evaluation of its
checkpoint therefore write the same metrics.json layout with the same numbers.
"""

import numpy as np
import torch
from torchmetrics.classification import (
    MulticlassAveragePrecision,
    MulticlassNegativePredictiveValue,
    MulticlassROC,
    MulticlassSpecificity,
)

from skin_lightning.model.confusion import row_shares
from skin_lightning.model.metrics import PER_CLASS, headline_scores, macro_auroc, ranked_classes, stage_metrics
from skin_lightning.results.stats import bootstrap_intervals, proportion_interval

# Fixed, so the same predictions always get the same intervals (and identical metrics.json on rerun).
CONFIDENCE = 0.95
BOOTSTRAP = {"confidence": CONFIDENCE, "resamples": 1000, "seed": 0, "resampling": "stratified by true class"}
INTERVAL_METHODS = {
    "accuracy": "Wilson score interval of the share of images classified right",
    "balanced_accuracy": "percentile bootstrap, test images resampled within each true class",
    "macro_f1": "percentile bootstrap, test images resampled within each true class",
    "per class": "Wilson score interval of each ratio (recall, precision, specificity, npv) as a proportion",
}
PER_CLASS_FIELDS = (*PER_CLASS, "specificity", "npv", "auc", "auc_sens_80", "average_precision")
RANKING = ("auc", "auc_sens_80", "average_precision")


def auc_above_sensitivity(fpr: np.ndarray, tpr: np.ndarray, sensitivity: float = 0.8) -> float:
    """Area under the ROC curve over the false-positive rates where sensitivity >= `sensitivity`.

    ISIC 2019's definition: the raw area (no McClish rescaling), starting at the point on the curve
    where sensitivity crosses the threshold, so it rewards models that stay specific at high sensitivity.
    """
    fpr, tpr = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    start = int(np.searchsorted(tpr, sensitivity, side="left"))
    fpr_start = np.interp(sensitivity, tpr[start - 1 : start + 1], fpr[start - 1 : start + 1])
    return float(np.trapezoid(np.r_[sensitivity, tpr[start:]], np.r_[fpr_start, fpr[start:]]))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int) -> dict:
    """Top-class confidence against accuracy in equal-width bins, and the expected calibration error."""
    confidence = probs.max(axis=1).astype(np.float64)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    which = np.digitize(confidence, np.linspace(0, 1, bins + 1)[1:-1])
    count = np.bincount(which, minlength=bins)
    shown = np.maximum(count, 1)
    mean_confidence = np.bincount(which, confidence, bins) / shown
    accuracy = np.bincount(which, correct, bins) / shown
    ece = float(np.sum(count * np.abs(accuracy - mean_confidence)) / max(len(labels), 1))
    return {
        "ece": ece, "bins": bins, "count": count.tolist(),
        "confidence": mean_confidence.tolist(), "accuracy": accuracy.tolist(),
    }


def intervals(matrix: np.ndarray, labels: np.ndarray, predicted: np.ndarray, classes: list[str]) -> dict:
    """95% intervals of accuracy, balanced accuracy, macro F1 and each class's defined ratios.

    Single proportions get Wilson intervals, which stay honest at 0/n and n/n; the averages over
    classes get the stratified bootstrap, which keeps the class mix of the test set fixed.
    """
    found = bootstrap_intervals(
        labels, predicted, len(classes),
        n_resamples=BOOTSTRAP["resamples"], confidence=CONFIDENCE, seed=BOOTSTRAP["seed"],
    )
    named = {name: list(found[name]) for name in ("balanced_accuracy", "macro_f1")}
    named["accuracy"] = list(proportion_interval(int(np.trace(matrix)), int(matrix.sum()), CONFIDENCE))
    tp = np.diagonal(matrix)
    support, chosen, total = matrix.sum(axis=1), matrix.sum(axis=0), matrix.sum()
    negatives = total - support
    counts = {
        "recall": (tp, support),
        "precision": (tp, chosen),
        "specificity": (negatives - (chosen - tp), negatives),
        "npv": (negatives - (chosen - tp), total - chosen),
    }
    for name, (hits, trials) in counts.items():
        for k, cls in enumerate(classes):
            bounds = proportion_interval(int(hits[k]), int(trials[k]), CONFIDENCE)
            if bounds is not None:
                named[f"{name}/{cls}"] = list(bounds)
    return named


def _per_class_values(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, torch.Tensor]:
    """The stage metrics plus ISIC 2019's per-class set; decisions are the argmax class.

    No syncing: the predictions are already gathered from every rank, and only the first writes reports.
    """
    local = {"sync_on_compute": False}
    metrics = stage_metrics(num_classes, **local)
    metrics.add_metrics({
        "specificity": MulticlassSpecificity(num_classes, average=None, **local),
        "npv": MulticlassNegativePredictiveValue(num_classes, average=None, **local),
        "average_precision": MulticlassAveragePrecision(num_classes, average=None, **local),
        "roc": MulticlassROC(num_classes, **local),
    })
    metrics.update(torch.as_tensor(probs), torch.as_tensor(labels))
    return metrics.compute()


def score(probs: np.ndarray, labels: np.ndarray, classes: list[str], bins: int = 15) -> tuple[dict, dict]:
    """metrics.json's content, and each ranked class's ROC curve (false and true positive rates).

    Ranking metrics (AUC, AUC above 80% sensitivity, average precision) of a class that is absent
    from the labels, or is every label, are undefined and reported as None.
    """
    labels = np.asarray(labels, dtype=np.int64)
    values = _per_class_values(probs, labels, len(classes))
    fprs, tprs, _ = values.pop("roc")
    matrix = values["confusion_matrix"].numpy()
    support = matrix.sum(axis=1)
    ranked = ranked_classes(support)
    per_class, curves = {}, {}
    for k, cls in enumerate(classes):
        row = {name: float(values[name][k]) for name in PER_CLASS_FIELDS if name in values}
        if ranked[k]:
            curves[cls] = fprs[k].double().numpy(), tprs[k].double().numpy()
            row["auc_sens_80"] = auc_above_sensitivity(*curves[cls], 0.8)
        else:
            row.update(dict.fromkeys(RANKING))
        per_class[cls] = {name: row[name] for name in PER_CLASS_FIELDS} | {"support": int(support[k])}
    headline = headline_scores(matrix)
    summary = {
        "num_images": int(len(labels)),
        **{name: float(headline[name]) for name in ("accuracy", "balanced_accuracy", "macro_f1")},
        "auroc": macro_auroc(values["auc"].numpy(), support),
        "intervals": intervals(matrix, labels, probs.argmax(axis=1), classes),
        "interval_methods": INTERVAL_METHODS,
        "bootstrap": BOOTSTRAP,
        "calibration": reliability(probs, labels, bins),
        "per_class": per_class,
        "classes": list(classes),
        "confusion_matrix": matrix.tolist(),
        "confusion_matrix_normalized": row_shares(matrix).round(6).tolist(),
    }
    return summary, curves
