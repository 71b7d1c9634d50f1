"""One scoring path: a class absent from the test labels but predicted counts the same everywhere,
and single proportions get intervals that stay honest at 0/n and n/n."""

import csv
import json

import numpy as np
import pytest
import torch
import yaml
from torchmetrics.classification import MulticlassF1Score, MulticlassRecall

from skin_lightning.model.metrics import named_scalars, stage_metrics
from skin_lightning.results.reports import write_reports
from skin_lightning.results.stats import proportion_interval
from skin_lightning.results.sweep_summary import write_summary

CLASSES = ["AK", "BCC", "DF", "MEL"]


def absent_but_predicted() -> tuple[np.ndarray, np.ndarray]:
    """No DF image in the labels, yet some images are called DF."""
    rng = np.random.default_rng(3)
    labels = rng.choice([0, 1, 3], size=90)
    predicted = np.where(rng.random(labels.size) < 0.7, labels, rng.integers(0, len(CLASSES), labels.size))
    predicted[:5] = 2
    probs = rng.dirichlet(np.ones(len(CLASSES)), labels.size) * 0.4
    probs[np.arange(labels.size), predicted] += 0.6
    return probs, labels


def test_a_class_absent_but_predicted_gives_one_number_everywhere(tmp_path):
    probs, labels = absent_but_predicted()
    job = tmp_path / "0_experiment=demo"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["experiment=demo"]))
    stored = write_reports(job, probs, labels, [f"img_{i}.jpg" for i in range(labels.size)], CLASSES, extra={})
    assert json.loads((job / "metrics.json").read_text())["balanced_accuracy"] == stored["balanced_accuracy"]

    present = [np.mean(probs[labels == k].argmax(axis=1) == k) for k in (0, 1, 3)]
    assert stored["balanced_accuracy"] == pytest.approx(np.mean(present), abs=1e-12)
    # torchmetrics' own macro averages would count DF (recall 0, F1 0): the case this test is about
    tm_recall = MulticlassRecall(len(CLASSES), average="macro")(torch.tensor(probs), torch.tensor(labels))
    assert abs(float(tm_recall) - stored["balanced_accuracy"]) > 0.05
    tm_f1 = MulticlassF1Score(len(CLASSES), average="macro")(torch.tensor(probs), torch.tensor(labels))
    assert abs(float(tm_f1) - stored["macro_f1"]) > 0.05

    # the scalars training logs for test/*
    metrics = stage_metrics(len(CLASSES))
    metrics.update(torch.tensor(probs), torch.tensor(labels))
    logged = named_scalars(metrics.compute(), CLASSES)
    for name in ("accuracy", "balanced_accuracy", "macro_f1", "auroc"):
        assert logged[name] == pytest.approx(stored[name], abs=1e-6), name

    report = (job / "report.md").read_text()
    assert f"{stored['balanced_accuracy']:.4f} [" in report and f"Macro F1: {stored['macro_f1']:.4f} [" in report
    with open(job / "report.csv") as handle:
        macro = next(row for row in csv.DictReader(handle) if row["class"] == "macro avg")
    assert float(macro["recall"]) == pytest.approx(stored["balanced_accuracy"])
    assert float(macro["f1"]) == pytest.approx(stored["macro_f1"])

    write_summary(tmp_path)
    with open(tmp_path / "summary.csv") as handle:
        (row,) = list(csv.DictReader(handle))
    for name in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert float(row[name]) == pytest.approx(stored[name], abs=1e-12), name


def test_wilson_intervals_are_not_degenerate_at_the_boundary():
    low, high = proportion_interval(25, 25)
    assert high == pytest.approx(1.0) and low == pytest.approx(0.8668, abs=1e-4)
    low, high = proportion_interval(0, 25)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.1332, abs=1e-4)
    low, high = proportion_interval(70, 100)
    assert low == pytest.approx(0.6041, abs=1e-4) and high == pytest.approx(0.7811, abs=1e-4)
    assert proportion_interval(0, 0) is None
    with pytest.raises(ValueError, match="successes"):
        proportion_interval(5, 4)


def test_a_perfect_small_class_reports_a_wide_recall_interval(tmp_path):
    """25 of 25 right: the recall interval reaches down to 0.87, where a percentile bootstrap gives [1, 1]."""
    labels = np.repeat(np.arange(len(CLASSES)), 25)
    predicted = labels.copy()
    predicted[25:35] = 3  # BCC is sometimes wrong, the others never
    probs = np.eye(len(CLASSES))[predicted] * 0.7 + 0.075
    summary = write_reports(tmp_path, probs, labels, [f"{i}.jpg" for i in labels], CLASSES, extra={})
    assert summary["per_class"]["AK"]["recall"] == 1.0
    low, high = summary["intervals"]["recall/AK"]
    assert low == pytest.approx(0.8668, abs=1e-4) and high == pytest.approx(1.0)
    assert "1.0000 [0.8668, 1.0000]" in (tmp_path / "report.md").read_text()
    assert "Wilson" in summary["interval_methods"]["per class"]
