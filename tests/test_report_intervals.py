import csv
import json

import numpy as np
import pytest

from skin_lightning.results.reports import write_reports
from skin_lightning.results.stats import point_metrics

CLASSES = ["AK", "BCC", "MEL", "NV"]


def predictions(per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy probabilities that favour the true class, so scores sit well inside (0, 1)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), per_class)
    probs = rng.dirichlet(np.ones(len(CLASSES)), labels.size)
    probs[np.arange(labels.size), labels] += 0.4
    return probs / probs.sum(axis=1, keepdims=True), labels


def write(tmp_path, probs, labels) -> dict:
    paths = [f"img_{i}.jpg" for i in range(labels.size)]
    write_reports(tmp_path, probs, labels, paths, CLASSES, extra={})
    return json.loads((tmp_path / "metrics.json").read_text())


def test_torchmetrics_scores_agree_with_the_interval_code(tmp_path):
    probs, labels = predictions(60)
    metrics = write(tmp_path, probs, labels)
    reference = point_metrics(labels, probs.argmax(axis=1), len(CLASSES))
    for name in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert metrics[name] == pytest.approx(reference[name], abs=1e-6), name
    for k, cls in enumerate(CLASSES):
        assert metrics["per_class"][cls]["recall"] == pytest.approx(reference[f"recall/{k}"], abs=1e-6), cls


def test_metrics_json_has_an_interval_around_every_score(tmp_path):
    probs, labels = predictions(60)
    metrics = write(tmp_path, probs, labels)
    assert metrics["bootstrap"]["resamples"] == 1000 and metrics["bootstrap"]["confidence"] == 0.95
    ratios = ("recall", "precision", "specificity", "npv")
    expected = {"accuracy", "balanced_accuracy", "macro_f1", *(f"{r}/{cls}" for r in ratios for cls in CLASSES)}
    assert set(metrics["intervals"]) == expected
    for name, (low, high) in metrics["intervals"].items():
        ratio, _, cls = name.partition("/")
        point = metrics["per_class"][cls][ratio] if cls else metrics[name]
        assert low < point < high, name
        assert 0.05 < high - low < 0.5, name  # 60 images a class: several points either way


def test_intervals_are_reproducible_and_shrink_with_the_test_set(tmp_path):
    small = write(tmp_path, *predictions(40))
    again = write(tmp_path, *predictions(40))
    large = write(tmp_path, *predictions(640))
    assert small["intervals"] == again["intervals"]

    def width(metrics: dict) -> float:
        low, high = metrics["intervals"]["balanced_accuracy"]
        return high - low

    assert width(large) * 2.5 < width(small)  # 16x the images: about 4x narrower


def test_reports_show_the_interval_next_to_each_number(tmp_path):
    probs, labels = predictions(60)
    metrics = write(tmp_path, probs, labels)
    low, high = metrics["intervals"]["balanced_accuracy"]
    markdown = (tmp_path / "report.md").read_text()
    assert f"{metrics['balanced_accuracy']:.4f} [{low:.4f}, {high:.4f}]" in markdown
    recall_low, recall_high = metrics["intervals"]["recall/MEL"]
    assert (
        f"| MEL | {metrics['per_class']['MEL']['precision']:.4f} | "
        f"{metrics['per_class']['MEL']['recall']:.4f} [{recall_low:.4f}, {recall_high:.4f}]"
        in markdown
    )
    with open(tmp_path / "report.csv") as handle:
        rows = {row["class"]: row for row in csv.DictReader(handle)}
    assert float(rows["macro avg"]["recall_low"]) == pytest.approx(low)
    assert float(rows["macro avg"]["f1_high"]) == pytest.approx(metrics["intervals"]["macro_f1"][1])
    assert float(rows["accuracy"]["f1_low"]) == pytest.approx(metrics["intervals"]["accuracy"][0])
    assert float(rows["MEL"]["recall_high"]) == pytest.approx(recall_high)


def test_a_class_missing_from_the_test_set_has_no_interval(tmp_path):
    probs, labels = predictions(30)
    keep = labels != 0
    metrics = write(tmp_path, probs[keep], labels[keep])
    assert "recall/AK" not in metrics["intervals"]
    assert "| AK |" in (tmp_path / "report.md").read_text()
