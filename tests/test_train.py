"""End to end: every experiment trains briefly and leaves every report; sweeps write a summary."""

import csv
import json

import numpy as np
import pytest

from skin_lightning.train import train

from conftest import FAST, compose_train
from conftest import run_train as train_in_new_process

REPORTS = [
    ".",
    "metrics.json",
    "report.md",
    "report.csv",
    "confusion_matrix.png",
    "test_predictions.csv",
    "split.csv",
    "checkpoints/best.ckpt",
    "checkpoints/last.ckpt",
]


def run_train(tmp_path, demo_root, *overrides):
    cfg = compose_train([*FAST, f"data.root={demo_root}", f"output_dir={tmp_path}", *overrides])
    return train(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["v1_baseline", "v2_weighted", "v3_heavy", "v4_selective", "demo"])
def test_experiment_writes_every_report(tmp_path, demo_root, experiment):
    summary = run_train(tmp_path, demo_root, f"experiment={experiment}")
    for name in REPORTS:
        assert (tmp_path / name).exists(), name
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["checkpoint"].endswith("best.ckpt")
    with open(tmp_path / "test_predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == metrics["num_images"] == 200  # the demo test set, each image once
    classes = metrics["classes"]
    assert [c for c in rows[0] if c.startswith("prob_")] == [f"prob_{c}" for c in classes]
    correct = [r["true"] == r["predicted"] for r in rows]
    assert metrics["accuracy"] == pytest.approx(np.mean(correct), abs=1e-6)
    recalls = [np.mean([ok for ok, r in zip(correct, rows) if r["true"] == c]) for c in classes]
    assert metrics["balanced_accuracy"] == pytest.approx(np.mean(recalls), abs=1e-6)
    assert [metrics["per_class"][c]["recall"] for c in classes] == pytest.approx(recalls, abs=1e-6)
    assert all(abs(sum(float(r[f"prob_{c}"]) for c in classes) - 1) < 1e-4 for r in rows)
    assert summary["balanced_accuracy"] == metrics["balanced_accuracy"]
    report = (tmp_path / "report.md").read_text()
    assert "macro avg" in report and "weighted avg" in report and all(f"| {c} |" in report for c in classes)


@pytest.mark.slow
def test_run_without_validation_tests_the_last_weights(tmp_path, demo_root):
    run_train(tmp_path, demo_root, "experiment=demo", "trainer.limit_val_batches=0")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["checkpoint"] == "last weights"
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow
def test_run_without_validation_or_our_checkpoint_callback_finishes(tmp_path, demo_root):
    """Lightning's own checkpoint callback then keeps the last epoch: it is tested, with no validation scores."""
    run_train(tmp_path, demo_root, "experiment=demo", "trainer.limit_val_batches=0", "~callbacks.checkpoint")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["checkpoint"].endswith(".ckpt") and "validation" not in metrics


@pytest.mark.slow
def test_multirun_summary_reports_completed_and_failed_jobs(tmp_path, demo_root):
    sweep = tmp_path / "sweep"
    result = train_in_new_process(
        ["-m", "experiment=demo", *FAST, f"data.root={demo_root}", "data.batch_size=8,0", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode != 0  # one job failed, and the sweep says so
    for name in ("summary.md", "summary.csv", "summary.png"):
        assert (sweep / name).exists(), result.stderr[-2000:]
    with open(sweep / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["job"][:20] for r in rows] == ["0_data.batch_size-8_", "1_data.batch_size-0_"]
    assert all("experiment-demo" in r["job"] for r in rows)
    assert rows[0]["status"] == "completed" and 0 <= float(rows[0]["balanced_accuracy"]) <= 1
    assert rows[0]["recall/MEL"] != ""
    assert rows[1]["status"].startswith("failed") and "data.batch_size" in rows[1]["status"]
    assert "data.batch_size=0" in (sweep / "summary.md").read_text()


@pytest.mark.slow
def test_user_error_ends_in_one_message(tmp_path):
    overrides = [f"data.root={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path / 'run'}"]
    result = train_in_new_process(overrides, cwd=tmp_path, timeout=600)
    assert result.returncode == 1
    assert "nowhere does not exist" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
