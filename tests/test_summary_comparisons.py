import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from skin_lightning.results import figures
from skin_lightning.results.reports import write_reports
from skin_lightning.results.stats import holm, mean_sd
from skin_lightning.results.sweep import configuration, run_name
from skin_lightning.results.sweep_summary import write_summary

CLASSES = ["AK", "BCC", "MEL", "NV"]
LABELS = np.repeat(np.arange(len(CLASSES)), 60)
PATHS = [f"/data/Test/{CLASSES[k]}/img_{i}.jpg" for i, k in enumerate(LABELS)]


def predictions(accuracy: float, seed: int) -> np.ndarray:
    """Probabilities whose argmax is right for about `accuracy` of the images of every class."""
    rng = np.random.default_rng(seed)
    predicted = np.where(
        rng.random(LABELS.size) < accuracy, LABELS, (LABELS + rng.integers(1, len(CLASSES), LABELS.size)) % len(CLASSES)
    )
    probs = rng.dirichlet(np.ones(len(CLASSES)), LABELS.size) * 0.5
    probs[np.arange(LABELS.size), predicted] += 0.5
    return probs


def fake_job(
    sweep, num: int, overrides: list[str], probs: np.ndarray, validation: dict | None = None, order=None
) -> str:
    """A job folder as a finished multirun job leaves it (reports written by the real report code)."""
    name = f"{num}_{run_name(','.join(overrides))}"
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    order = np.arange(LABELS.size) if order is None else order
    extra = {"validation": validation} if validation else {}
    write_reports(job, probs[order], LABELS[order], [PATHS[i] for i in order], CLASSES, extra)
    return name


def metrics(sweep, name: str) -> dict:
    return json.loads((sweep / name / "metrics.json").read_text())


def summary_rows(sweep) -> dict[str, dict]:
    with open(sweep / "summary.csv") as handle:
        return {row["job"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def written_sweep(tmp_path_factory):
    """Two configurations, two seeds each; `good` is clearly better than `weak`. Written once: the reports are
    the slow part."""
    folder, jobs = tmp_path_factory.mktemp("seeds_sweep"), {}
    for num, (config, seed, accuracy) in enumerate(
        [("weak", 1, 0.5), ("weak", 2, 0.55), ("good", 1, 0.85), ("good", 2, 0.8)]
    ):
        # the second seed's predictions are written in another image order: pairing must go by path
        order = np.random.default_rng(num).permutation(LABELS.size) if seed == 2 else None
        jobs[config, seed] = fake_job(
            folder, num, [f"experiment={config}", f"seed={seed}"], predictions(accuracy, seed=num), order=order
        )
    return folder, jobs


@pytest.fixture
def seeds_sweep(written_sweep, tmp_path):
    """A copy of the written sweep for each test, which writes its own summary into it."""
    folder, jobs = written_sweep
    shutil.copytree(folder, tmp_path, dirs_exist_ok=True)
    return tmp_path, jobs


def test_configuration_drops_seed_fold_and_reference():
    assert configuration(["experiment=v2", "seed=3", "data.fold=1", "summary.reference=v1", "optim.lr=0.1"]) == [
        "experiment=v2",
        "optim.lr=0.1",
    ]
    assert configuration(["seed=3", "+data.fold=2"]) == []


def test_overrides_every_job_shares_are_listed_once(tmp_path):
    for num, config in enumerate(["a", "b"]):
        fake_job(tmp_path, num, [f"experiment={config}", "data.image_size=32"], predictions(0.6, num))
    write_summary(tmp_path)
    markdown = (tmp_path / "summary.md").read_text()
    assert "Overrides of every job: `data.image_size=32`;" in markdown
    assert "Reference: **experiment=a**" in markdown
    assert markdown.count("data.image_size=32") == 1  # only in the shared line


def test_runs_are_grouped_by_configuration_with_mean_and_sd(seeds_sweep):
    sweep, jobs = seeds_sweep
    write_summary(sweep)
    markdown = (sweep / "summary.md").read_text()
    for config in ("weak", "good"):
        values = [metrics(sweep, jobs[config, seed])["balanced_accuracy"] for seed in (1, 2)]
        mean, sd, n = mean_sd(values)
        assert abs(np.mean(values) - mean) < 1e-12 and abs(np.std(values, ddof=1) - sd) < 1e-12 and n == 2
        group_line = next(line for line in markdown.splitlines() if line.startswith(f"| **experiment={config}**"))
        assert f"{mean:.4f} ± {sd:.4f}" in group_line
        assert "mean ± sd of 2 runs" in group_line
        lines = markdown.splitlines()
        position = lines.index(group_line)
        assert lines[position + 1].startswith("| ↳ seed=1 |") and lines[position + 2].startswith("| ↳ seed=2 |")


def test_each_run_is_compared_with_the_reference_run_of_its_seed(seeds_sweep):
    sweep, jobs = seeds_sweep
    write_summary(sweep)
    rows = summary_rows(sweep)
    for seed in (1, 2):
        row = rows[jobs["good", seed]]
        assert row["reference"] == jobs["weak", seed]
        expected = (
            metrics(sweep, jobs["good", seed])["balanced_accuracy"]
            - metrics(sweep, jobs["weak", seed])["balanced_accuracy"]
        )
        assert float(row["diff"]) == pytest.approx(expected, abs=1e-6)
        assert 0 < float(row["diff_low"]) < float(row["diff"]) < float(row["diff_high"])
        assert row["significant"] == "True" and float(row["holm_p"]) < 0.05
    ps = [float(rows[jobs["good", seed]]["mcnemar_p"]) for seed in (1, 2)]
    assert [float(rows[jobs["good", seed]]["holm_p"]) for seed in (1, 2)] == pytest.approx(holm(ps))
    markdown = (sweep / "summary.md").read_text()
    assert "2 of 2 runs significant" in markdown
    assert markdown.count(" *") >= 4  # the difference and the p-value of both runs
    assert "[95% CI]" in markdown and "Reference: **experiment=weak**" in markdown
    assert (sweep / "summary.png").stat().st_size > 10_000


def test_a_named_reference_flips_the_comparison(seeds_sweep):
    sweep, jobs = seeds_sweep
    write_summary(sweep, reference="good")
    rows = summary_rows(sweep)
    assert rows[jobs["good", 1]]["reference"] == "reference"
    assert float(rows[jobs["weak", 1]]["diff"]) < 0
    write_summary(sweep, reference="experiment=good")
    assert summary_rows(sweep)[jobs["weak", 2]]["reference"] == jobs["good", 2]


@pytest.mark.slow
def test_an_unknown_reference_is_named_and_nothing_is_compared(seeds_sweep):
    sweep, _ = seeds_sweep
    write_summary(sweep, reference="v9")
    markdown = (sweep / "summary.md").read_text()
    assert (
        "summary.reference=v9 matches no configuration of this sweep; name one of: experiment=weak; experiment=good"
        in markdown
    )
    assert all(row["diff"] == "" for row in summary_rows(sweep).values())
    result = subprocess.run(
        [sys.executable, "-m", "skin_lightning.summary", str(sweep), "--reference", "v9"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "summary.reference=v9 matches no configuration" in result.stderr and "Traceback" not in result.stderr


def test_the_figure_has_no_empty_difference_panel_and_names_each_recall_row_by_its_seed(seeds_sweep, monkeypatch):
    sweep, _ = seeds_sweep
    drawn = []
    monkeypatch.setattr(figures.plt, "close", drawn.append)
    write_summary(sweep)  # compared with the first configuration
    write_summary(sweep, reference="v9")  # nothing compared
    compared, alone = ([axis.get_title() for axis in figure.axes] for figure in drawn)
    assert any(title.startswith("Δ balanced accuracy") for title in compared)
    assert not any(title.startswith("Δ balanced accuracy") for title in alone)
    heat = drawn[1].axes[-2]  # the recall heatmap, before its colour bar
    rows = [label.get_text() for label in heat.get_yticklabels()]
    assert rows == ["0: seed=1", "1: seed=2", "2: seed=1", "3: seed=2"]


def test_jobs_tested_on_other_images_are_not_compared(tmp_path):
    first = fake_job(tmp_path, 0, ["experiment=a"], predictions(0.6, 0))
    other = fake_job(tmp_path, 1, ["experiment=b"], predictions(0.6, 1), order=np.arange(LABELS.size - 10))
    write_summary(tmp_path)
    assert summary_rows(tmp_path)[other]["diff"] == ""
    assert f"{other}: tested on other images than {first}, so not compared" in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_fold_models_are_averaged_into_an_ensemble_with_its_own_report(tmp_path):
    fold_probs = [predictions(0.6, seed) for seed in range(3)]
    validation = [
        {"fold": k, "folds": 3, "accuracy": 0.5 + k / 10, "balanced_accuracy": 0.4 + k / 10, "macro_f1": 0.3}
        for k in range(3)
    ]
    for k in range(3):
        fake_job(tmp_path, k, ["experiment=cv", f"data.fold={k}"], fold_probs[k], validation[k])
    write_summary(tmp_path)
    report = tmp_path / "ensembles" / "all_jobs"
    ensemble = json.loads((report / "metrics.json").read_text())
    averaged = np.mean(fold_probs, axis=0).argmax(axis=1)
    assert ensemble["accuracy"] == pytest.approx(np.mean(averaged == LABELS), abs=1e-6)
    assert ensemble["ensemble_of"] == [
        "0_experiment-cv__data.fold-0",
        "1_experiment-cv__data.fold-1",
        "2_experiment-cv__data.fold-2",
    ]
    assert "intervals" in ensemble and (report / "report.md").exists()
    markdown = (tmp_path / "summary.md").read_text()
    cv_line = next(line for line in markdown.splitlines() if line.startswith("| (all jobs) | 3 |"))
    assert "0.5000 ± 0.1000" in cv_line  # validation balanced accuracy over the three folds
    low, high = ensemble["intervals"]["balanced_accuracy"]
    assert f"{ensemble['balanced_accuracy']:.4f} [{low:.4f}, {high:.4f}]" in cv_line


def test_a_job_with_an_unreadable_predictions_file_is_named_not_fatal(tmp_path):
    fake_job(tmp_path, 0, ["experiment=a"], predictions(0.6, 0))
    broken = fake_job(tmp_path, 1, ["experiment=b"], predictions(0.6, 1))
    (tmp_path / broken / "test_predictions.csv").write_text("path,true\nx.jpg,AK\n")
    write_summary(tmp_path)
    markdown = (tmp_path / "summary.md").read_text()
    assert f"{broken}: not compared: " in markdown and "lacks the columns path, true, predicted, prob_AK" in markdown
