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
