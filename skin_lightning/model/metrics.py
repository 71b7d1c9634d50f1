"""The metrics of every stage, from torchmetrics, and their per-class split into named scalars."""

import numpy as np
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassAveragePrecision,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassNegativePredictiveValue,
    MulticlassPrecision,
    MulticlassRecall,
    MulticlassROC,
    MulticlassSpecificity,
)

PER_CLASS = ("precision", "recall", "f1")


def stage_metrics(num_classes: int, sync_on_compute: bool = True) -> MetricCollection:
    """Balanced accuracy is the mean per-class recall: ISIC 2019's official score.

    sync_on_compute=False for predictions already gathered from every rank of a DDP run.
    """
    sync = {"sync_on_compute": sync_on_compute}
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(num_classes, average="micro", **sync),
            "balanced_accuracy": MulticlassRecall(num_classes, average="macro", **sync),
            "macro_f1": MulticlassF1Score(num_classes, average="macro", **sync),
            "auroc": MulticlassAUROC(num_classes, average="macro", **sync),
            "precision": MulticlassPrecision(num_classes, average=None, **sync),
            "recall": MulticlassRecall(num_classes, average=None, **sync),
            "f1": MulticlassF1Score(num_classes, average=None, **sync),
            "confusion_matrix": MulticlassConfusionMatrix(num_classes, **sync),
        }
    )


def named_scalars(values: dict[str, torch.Tensor], classes: list[str]) -> dict[str, float]:
    """{"recall": tensor([...])} -> {"recall/AK": ..., ...}; the confusion matrix is left out."""
    scalars = {}
    for name, value in values.items():
        if name == "confusion_matrix":
            continue
        if name in PER_CLASS:
            scalars.update({f"{name}/{cls}": float(v) for cls, v in zip(classes, value)})
        else:
            scalars[name] = float(value)
    return scalars


def evaluation_metrics(num_classes: int) -> MetricCollection:
    """The stage metrics plus ISIC 2019's per-class set, for a one-off evaluation of a trained model.

    Per-class decisions are the argmax class, as in the confusion matrix and balanced accuracy.
    """
    metrics = stage_metrics(num_classes)
    metrics.add_metrics(
        {
            "specificity": MulticlassSpecificity(num_classes, average=None),
            "npv": MulticlassNegativePredictiveValue(num_classes, average=None),
            "auc": MulticlassAUROC(num_classes, average=None),
            "average_precision": MulticlassAveragePrecision(num_classes, average=None),
            "roc": MulticlassROC(num_classes),
        }
    )
    return metrics


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
    return {"ece": ece, "bins": bins, "count": count.tolist(), "confidence": mean_confidence.tolist(), "accuracy": accuracy.tolist()}
