"""docs/make_figures.py: a sweep's summary.csv, a run's metrics.json or a CSV in the same columns -> the tables and
figures of docs/results.md."""

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from test_summary_comparisons import fake_job, predictions

from skin_lightning.results.sweep_summary import CSV_COLUMNS, write_summary

from conftest import train_env

DOCS = Path(__file__).resolve().parents[1] / "docs"
spec = importlib.util.spec_from_file_location("make_figures", DOCS / "make_figures.py")
make_figures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_figures)


@pytest.fixture(scope="module")
def written_sweep(tmp_path_factory):
    """Two configurations with two seeds each, summarised as a finished multirun leaves it; written once."""
    folder = tmp_path_factory.mktemp("figures") / "sweep"
    for num, (config, seed, accuracy) in enumerate([("weak", 1, 0.5), ("weak", 2, 0.55), ("good", 1, 0.85),
                                                    ("good", 2, 0.8)]):
        fake_job(folder, num, [f"experiment={config}", f"seed={seed}"], predictions(accuracy, seed=num))
    write_summary(folder)
    return folder


@pytest.fixture
def sweep(written_sweep, tmp_path):
    """A copy of the written sweep for each test."""
    return shutil.copytree(written_sweep, tmp_path / "sweep")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_sweep_gives_its_summary_as_a_table_and_both_figures(sweep, tmp_path):
    written = make_figures.make([sweep], tmp_path / "out" / "study", "study")
    assert [path.name for path in written] == ["study.csv", "study_balanced_accuracy.png", "study_recall.png"]
    assert read_csv(written[0]) == read_csv(sweep / "summary.csv")
    for image in written[1:]:
        assert imread(image).shape[0] > 100


def test_the_figure_draws_each_runs_score_interval_and_difference(sweep):
    rows = make_figures.completed(make_figures.read_source(sweep))
    figure = make_figures.accuracy_figure(rows, "study")
    test_axes, diff_axes = figure.axes
    expected = [float(row["balanced_accuracy"]) for row in rows]
    assert test_axes.lines[0].get_xdata() == pytest.approx(expected)
    assert [tick.get_text() for tick in test_axes.get_yticklabels()] == [
        "experiment=weak seed=1", "experiment=weak seed=2", "experiment=good seed=1", "experiment=good seed=2"
    ]
    assert test_axes.get_legend_handles_labels()[1] == ["test, 95% interval"]  # no validation scores here
    drawn = [line.get_xdata()[0] for line in diff_axes.lines if len(line.get_xdata()) == 1 and line.get_marker() == "o"]
    assert drawn == pytest.approx([float(row["diff"]) for row in rows if row["diff"]])
    recall = make_figures.recall_figure(rows, "study")
    assert recall.axes[0].images[0].get_array().shape == (4, 4)


def test_a_table_written_by_the_script_feeds_it_again_unchanged(sweep, tmp_path):
    out = tmp_path / "study"
    table = make_figures.make([sweep], out, "study")[0]
    before = table.read_text()
    assert [path.name for path in make_figures.make([table], out, "study")] == [
        "study_balanced_accuracy.png", "study_recall.png"
    ]
    assert table.read_text() == before


def test_a_run_folder_is_one_row_and_columns_a_source_lacks_stay_empty(sweep, tmp_path):
    job = sorted(path for path in sweep.iterdir() if path.is_dir())[0]
    partial = tmp_path / "partial.csv"
    with open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["configuration", "replicate", "status", "balanced_accuracy",
                                         "balanced_accuracy_low", "balanced_accuracy_high", "recall/AK", "minutes"])
        writer.writeheader()
        writer.writerow({"configuration": "old", "replicate": "seed=1", "status": "completed",
                         "balanced_accuracy": "0.3", "balanced_accuracy_low": "0.25", "balanced_accuracy_high": "0.35",
                         "recall/AK": "0.2", "minutes": "5.2"})
    table = make_figures.make([job, partial], tmp_path / "mixed", "mixed")[0]
    rows = read_csv(table)
    metrics = json.loads((job / "metrics.json").read_text())
    assert float(rows[0]["balanced_accuracy"]) == pytest.approx(metrics["balanced_accuracy"])
    assert rows[1]["balanced_accuracy"] == "0.3" and rows[1]["minutes"] == "5.2" and rows[1]["macro_f1"] == ""
    assert list(rows[0])[: len(CSV_COLUMNS)] == CSV_COLUMNS


@pytest.mark.slow
def test_the_command_line_and_its_errors(sweep, tmp_path):
    command = [sys.executable, str(DOCS / "make_figures.py")]
    done = subprocess.run([*command, str(sweep), "--out", str(tmp_path / "cli")], env=train_env(),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / name) for name in
                                   ("cli.csv", "cli_balanced_accuracy.png", "cli_recall.png")]
    missing = subprocess.run([*command, str(tmp_path / "nothing"), "--out", str(tmp_path / "x")], env=train_env(),
                             capture_output=True, text=True)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nothing'} is neither a sweep folder with summary.csv, a run folder with metrics.json, "
        "nor a CSV file (rebuild a sweep's summary with: python -m skin_lightning.summary SWEEP)"
    ]


@pytest.mark.parametrize("table", sorted(DOCS.glob("studies/*.csv")), ids=lambda path: path.name)
def test_the_docs_tables_are_in_the_summary_columns_and_draw(table, tmp_path):
    rows = read_csv(table)
    assert list(rows[0])[: len(CSV_COLUMNS)] == CSV_COLUMNS
    done = make_figures.completed(rows)
    assert len(done) == len(rows)
    assert all(float(r["balanced_accuracy_low"]) <= float(r["balanced_accuracy"]) <= float(r["balanced_accuracy_high"])
               for r in done)
    figure = make_figures.accuracy_figure(done, table.stem)
    assert np.isfinite(figure.axes[0].lines[0].get_xdata()).all()
