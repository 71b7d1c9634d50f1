"""The scores of every stage: torchmetrics states, and the one definition of each headline number.

Accuracy, balanced accuracy and macro F1 are computed from confusion matrices by `headline_scores`,
over the classes present in the true labels, and macro AUROC by `macro_auroc` over the classes
where a ROC curve exists. Training's logged scalars, the reports' metrics.json, the bootstrap
replicates of the intervals and the sweep summary all go through these two functions, so a class
that is absent from the test set but predicted counts the same way everywhere.
"""

import warnings

import numpy as np
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAUROC,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

# A validation split or fold without some class makes torchmetrics' ROC warn at every validation; that class's AUC
# is undefined and `macro_auroc` leaves it out of the average, so there is nothing for a user to do.
warnings.filterwarnings("ignore", message="No positive samples in targets", category=UserWarning)

PER_CLASS = ("precision", "recall", "f1")
HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "auroc")


def stage_metrics(num_classes: int, sync_on_compute: bool = True) -> MetricCollection:
    """Per-class states of one stage; `named_scalars` turns them into the logged numbers.

    sync_on_compute=False for predictions already gathered from every rank of a DDP run.
    """
    sync = {"sync_on_compute": sync_on_compute}
    return MetricCollection(
        {
            "precision": MulticlassPrecision(num_classes, average=None, **sync),
            "recall": MulticlassRecall(num_classes, average=None, **sync),
            "f1": MulticlassF1Score(num_classes, average=None, **sync),
            "auc": MulticlassAUROC(num_classes, average=None, **sync),
            "confusion_matrix": MulticlassConfusionMatrix(num_classes, **sync),
        }
    )


def headline_scores(confusions: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy, macro F1 and each present class's recall of a stack of confusion matrices.

    Rows are true classes. Averages run over the classes present in the true labels: a class with no
    images has no recall to estimate, whether or not it is predicted (ISIC 2019's balanced accuracy).
    F1 is 2TP / (2TP + FP + FN), 0 for a present class that is never predicted. `confusions` may be
    one matrix (K, K) or a stack (R, K, K); every value has the stack's leading shape.
    """
    cm = np.asarray(confusions, dtype=np.float64)
    single = cm.ndim == 2
    cm = cm[None] if single else cm
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted = cm.sum(axis=2), cm.sum(axis=1)
    present = np.flatnonzero(support[0] > 0)
    recall = tp[:, present] / support[:, present]
    f1 = 2.0 * tp[:, present] / (support[:, present] + predicted[:, present])
    scores = {
        "accuracy": tp.sum(axis=1) / support.sum(axis=1),
        "balanced_accuracy": recall.mean(axis=1),
        "macro_f1": f1.mean(axis=1),
        **{f"recall/{k}": recall[:, column] for column, k in enumerate(present)},
    }
    return {name: value[0] for name, value in scores.items()} if single else scores


def ranked_classes(support: np.ndarray) -> np.ndarray:
    """Classes with a ROC curve: present in the labels, but not every label."""
    support = np.asarray(support)
    return (support > 0) & (support < support.sum())


def macro_auroc(aucs: np.ndarray, support: np.ndarray) -> float | None:
    """Mean one-vs-rest AUC over the classes that have a ROC curve (ISIC 2019's macro AUC); None without any."""
    defined = np.asarray(aucs, dtype=np.float64)[ranked_classes(support)]
    return float(defined.mean()) if defined.size else None


def named_scalars(values: dict[str, torch.Tensor], classes: list[str]) -> dict[str, float]:
    """The logged numbers of one stage: the headline scores and "precision/AK", "recall/AK", ...

    An undefined macro AUROC (a stage with a single class) is left out rather than logged as a number.
    """
    matrix = values["confusion_matrix"].cpu().numpy()
    scores = headline_scores(matrix)
    scalars = {name: float(scores[name]) for name in HEADLINE[:3]}
    auroc = macro_auroc(values["auc"].cpu().numpy(), matrix.sum(axis=1))
    if auroc is not None:
        scalars["auroc"] = auroc
    for name in PER_CLASS:
        scalars.update({f"{name}/{cls}": float(v) for cls, v in zip(classes, values[name])})
    return scalars
