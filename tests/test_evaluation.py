"""Evaluation: agreement with the ISIC Challenge's scoring package, the report files, TTA, class mapping.

Deliberate differences from isic-challenge-scoring (its per-class numbers are compared on one-hot
argmax predictions, so its 0.5 threshold on each column makes the same decisions as our argmax):
- per-class sensitivity, specificity, PPV, NPV and F1 decide by the top-probability class, not by a
  0.5 threshold on each class's probability, so they agree with the confusion matrix;
- a ratio with nothing to count (e.g. the PPV of a class never predicted) is 0 here, as in the
  training report and scikit-learn, where the package awards 1.0;
- a tie for the top probability goes to the first class here, where the package counts it wrong;
- the package zeroes the weight of ISIC_0035068 when reading its own ground-truth file; every image
  counts here.
"""

import csv
import json

import numpy as np
import pandas as pd
import pytest
import torch
from isic_challenge_scoring.classification import ClassificationMetric, ClassificationScore
from torchmetrics.classification import MulticlassCalibrationError

from skin_lightning.data.layouts import Samples
from skin_lightning.errors import UserError
from skin_lightning.evaluate import evaluate
from skin_lightning.model.inference import load_checkpoint, predict_probs, to_checkpoint_labels
from skin_lightning.results.scores import score
from skin_lightning.train import train

from conftest import FAST, compose_config

CLASSES = ["AK", "BCC", "BKL", "DF", "MEL", "NV", "SCC", "VASC"]
RANKING = {"auc": "auc", "auc_sens_80": "auc_sens_80", "average_precision": "ap"}
DECISIONS = {"recall": "sensitivity", "specificity": "specificity", "precision": "ppv", "npv": "npv", "f1": "dice"}
# the cells of the binary confusion matrix each ratio divides by: when all are 0 the ratio is undefined
UNDEFINED = {
    "recall": ("tp", "fn"),
    "specificity": ("tn", "fp"),
    "precision": ("tp", "fp"),
    "npv": ("tn", "fn"),
    "f1": ("tp", "fp", "fn"),
}


def isic_score(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> ClassificationScore:
    index = [f"ISIC_{k:07d}" for k in range(len(labels))]
    truth = pd.DataFrame(np.eye(len(classes))[labels], index=index, columns=classes)
    prediction = pd.DataFrame(probs.astype(np.float64), index=index, columns=classes)
    weights = pd.DataFrame({"score_weight": 1.0, "validation_weight": 1.0}, index=index)
    return ClassificationScore(truth, prediction, weights, ClassificationMetric.BALANCED_ACCURACY)


def assert_agrees_with_isic(summary: dict, probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> None:
    ranking = isic_score(probs, labels, classes)
    predicted = probs.argmax(axis=1)
    decisions = isic_score(np.eye(len(classes))[predicted], labels, classes)
    assert summary["balanced_accuracy"] == pytest.approx(ranking.aggregate["balanced_accuracy"], abs=1e-6)
    assert summary["auroc"] == pytest.approx(ranking.macro_average["auc"], abs=1e-6)
    for k, cls in enumerate(classes):
        ours = summary["per_class"][cls]
        for name, theirs in RANKING.items():
            assert ours[name] == pytest.approx(ranking.per_category.loc[cls, theirs], abs=1e-6), (cls, name)
        counts = {
            "tp": np.sum((predicted == k) & (labels == k)),
            "fp": np.sum((predicted == k) & (labels != k)),
            "fn": np.sum((predicted != k) & (labels == k)),
            "tn": np.sum((predicted != k) & (labels != k)),
        }
        for name, theirs in DECISIONS.items():
            if sum(counts[part] for part in UNDEFINED[name]) == 0:
                assert (ours[name], decisions.per_category.loc[cls, theirs]) == (0.0, 1.0), (cls, name)
            else:
                assert ours[name] == pytest.approx(decisions.per_category.loc[cls, theirs], abs=1e-6), (cls, name)


def informative_predictions(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(CLASSES), size=n, p=[0.05, 0.15, 0.12, 0.03, 0.2, 0.35, 0.05, 0.05])
    logits = rng.normal(size=(n, len(CLASSES)))
    logits[np.arange(n), labels] += rng.uniform(0, 3, n)
    logits[:, 3] -= 2.5  # DF is rarely predicted, so some of its ratios are undefined on some seeds
    return torch.softmax(torch.tensor(logits), dim=1).float().numpy(), labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_agree_with_isic_scoring(seed):
    probs, labels = informative_predictions(seed)
    summary, curves = score(probs, labels, CLASSES, bins=15)
    assert_agrees_with_isic(summary, probs, labels, CLASSES)
    assert summary["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == labels), abs=1e-6)
    assert set(curves) == set(CLASSES)
    ece = MulticlassCalibrationError(len(CLASSES), n_bins=15)(torch.tensor(probs), torch.tensor(labels))
    assert summary["calibration"]["ece"] == pytest.approx(float(ece), abs=1e-5)
    assert sum(summary["calibration"]["count"]) == len(labels)


def test_a_class_absent_from_the_labels_has_no_ranking_metrics():
    probs, labels = informative_predictions(0)
    keep = labels != 3
    summary, curves = score(probs[keep], labels[keep], CLASSES)
    assert summary["per_class"]["DF"]["support"] == 0
    assert summary["per_class"]["DF"]["auc"] is None and "DF" not in curves
    present = [summary["per_class"][c]["recall"] for c in CLASSES if c != "DF"]
    assert summary["balanced_accuracy"] == pytest.approx(np.mean(present))


def test_labels_are_mapped_to_the_checkpoint_by_name():
    samples = Samples(paths=[], labels=[0, 1, 1, 0])
    assert to_checkpoint_labels(samples, ["NV", "AK"], ["AK", "BCC", "NV"], "x").tolist() == [2, 0, 0, 2]
    with pytest.raises(UserError, match="class\\(es\\) XYZ that the checkpoint does not know"):
        to_checkpoint_labels(Samples([], [0, 1]), ["AK", "XYZ"], ["AK", "NV"], "data.root=/d")


def test_flips_tta_averages_the_four_flipped_predictions(demo_checkpoint, demo_root):
    model = load_checkpoint(demo_checkpoint)
    images = np.random.default_rng(0).integers(0, 256, (3, model.image_size, model.image_size, 3), dtype=np.uint8)
    views = [images, images[:, :, ::-1], images[:, ::-1], images[:, ::-1, ::-1]]
    expected = np.mean([predict_probs(model, np.ascontiguousarray(view)) for view in views], axis=0)
    assert np.abs(predict_probs(model, images, tta="flips") - expected).max() < 1e-5
    assert predict_probs(model, images, tta="dihedral").sum(axis=1) == pytest.approx(1, abs=1e-5)


def test_evaluate_writes_the_full_report(demo_checkpoint, demo_root, tmp_path):
    cfg = compose_config(
        "evaluate", [f"ckpt_path={demo_checkpoint}", f"data.root={demo_root}", f"output_dir={tmp_path}"]
    )
    summary = evaluate(cfg)
    names = {path.name for path in tmp_path.iterdir()}
    assert {
        "metrics.json",
        "report.md",
        "report.csv",
        "confusion_matrix.png",
        "confusion_matrix_normalized.png",
        "roc_curves.png",
        "reliability.png",
        "test_predictions.csv",
    } <= names
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored["num_images"] == 200 and stored["tta"] == "none" and stored["image_size"] == 32
    assert np.array(stored["confusion_matrix"]).sum() == 200
    assert np.allclose(np.array(stored["confusion_matrix_normalized"]).sum(axis=1), 1)
    with open(tmp_path / "report.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == [
        "class",
        "precision",
        "recall",
        "recall_low",
        "recall_high",
        "f1",
        "f1_low",
        "f1_high",
        "specificity",
        "npv",
        "auc",
        "auc_sens_80",
        "average_precision",
        "support",
    ]
    macro = rows[-2]  # macro avg: balanced accuracy with its interval
    assert float(macro[2]) == pytest.approx(summary["balanced_accuracy"])
    assert float(macro[3]) <= summary["balanced_accuracy"] <= float(macro[4])
    assert [row[0] for row in rows[1:]] == [*CLASSES, "accuracy", "macro avg", "weighted avg"]
    assert "Balanced multi-class accuracy" in (tmp_path / "report.md").read_text()
    probs, labels = read_predictions(tmp_path / "test_predictions.csv", CLASSES)
    assert summary["balanced_accuracy"] == pytest.approx(
        isic_score(probs, labels, CLASSES).aggregate["balanced_accuracy"], abs=1e-6
    )


def read_predictions(path, classes) -> tuple[np.ndarray, np.ndarray]:
    """The probabilities as written (6 decimals), so both scorers see exactly the same numbers."""
    table = pd.read_csv(path)
    return table[[f"prob_{cls}" for cls in classes]].to_numpy(), table["true"].map(classes.index).to_numpy()


@pytest.mark.slow
def test_real_isic2019_train_then_evaluate_agrees_with_isic_scoring(real_isic2019, tmp_path):
    """Trained in-test on the real sample's hold-out layout, evaluated there: the scoring package agrees."""
    run = tmp_path / "run"
    overrides = [
        *FAST,
        "model.arch=resnet18",
        "data=isic2019",
        f"data.root={real_isic2019}",
        f"output_dir={run}",
        "logger=csv",
    ]
    train(compose_config("train", overrides))
    split = pd.read_csv(run / "split.csv")
    held_out = split[split.split == "test"]
    assert len(held_out) == 248  # data.test_fraction=0.2 of each class of the 1,241 images

    out = tmp_path / "evaluate"
    cfg = compose_config(
        "evaluate",
        [
            f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
            "data=isic2019",
            f"data.root={real_isic2019}",
            f"output_dir={out}",
        ],
    )
    reported = evaluate(cfg)
    probs, labels = read_predictions(out / "test_predictions.csv", CLASSES)
    assert sorted(pd.read_csv(out / "test_predictions.csv").path) == sorted(held_out.path)
    summary, _ = score(probs, labels, CLASSES)
    assert summary["balanced_accuracy"] == pytest.approx(reported["balanced_accuracy"], abs=1e-6)
    assert_agrees_with_isic(summary, probs, labels, CLASSES)
