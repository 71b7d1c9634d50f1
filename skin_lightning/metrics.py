"""The metrics of every stage, from torchmetrics, and their per-class split into named scalars."""

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

PER_CLASS = ("precision", "recall", "f1")


def stage_metrics(num_classes: int) -> MetricCollection:
    """Balanced accuracy is the mean per-class recall: ISIC 2019's official score."""
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(num_classes, average="micro"),
            "balanced_accuracy": MulticlassRecall(num_classes, average="macro"),
            "macro_f1": MulticlassF1Score(num_classes, average="macro"),
            "auroc": MulticlassAUROC(num_classes, average="macro"),
            "precision": MulticlassPrecision(num_classes, average=None),
            "recall": MulticlassRecall(num_classes, average=None),
            "f1": MulticlassF1Score(num_classes, average=None),
            "confusion_matrix": MulticlassConfusionMatrix(num_classes),
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
