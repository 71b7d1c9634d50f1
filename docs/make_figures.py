"""The figures and tables of docs/results.md, drawn from run outputs rather than by hand.

    python docs/make_figures.py SOURCE [SOURCE ...] --out docs/studies/NAME [--title TEXT]

A SOURCE is a multirun folder (its summary.csv, which the sweep writes after every job), a single run's
folder (its metrics.json), or a CSV file with summary.csv's columns. The rows of every source, in order,
are written to NAME.csv in summary.csv's columns (unless NAME.csv is the only source), and drawn as
NAME_balanced_accuracy.png (each run's test balanced accuracy with its 95% interval, its validation score,
and its paired difference from the reference) and NAME_recall.png (each class's test recall of each run).
Columns a source lacks stay empty, and a figure leaves out what is empty.
"""

import argparse
import csv
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from skin_lightning.results.sweep import read_job
from skin_lightning.results.sweep_summary import CSV_COLUMNS, csv_row


def read_source(source: Path) -> list[dict[str, str]]:
    """Rows in summary.csv's columns, as text."""
    if source.is_dir() and (source / "summary.csv").is_file():
        source = source / "summary.csv"
    elif source.is_dir() and (source / "metrics.json").is_file():
        row, _ = read_job(source)
        return [{key: "" if value is None else str(value) for key, value in csv_row(row).items()}]
    if source.suffix != ".csv" or not source.is_file():
        raise SystemExit(
            f"error: {source} is neither a sweep folder with summary.csv, a run folder with metrics.json, nor a CSV "
            "file (rebuild a sweep's summary with: python -m skin_lightning.summary SWEEP)"
        )
    with open(source, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and "balanced_accuracy" not in rows[0]:
        raise SystemExit(f"error: {source} has no balanced_accuracy column: not in summary.csv's columns")
    return rows


def number(row: dict[str, str], key: str) -> float:
    text = row.get(key) or ""
    return float(text) if text.strip() else math.nan


def completed(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [row for row in rows if row.get("status", "completed") == "completed" and row.get("balanced_accuracy")]


def label(row: dict[str, str]) -> str:
    return " ".join(filter(None, (row.get("configuration") or "(all jobs)", row.get("replicate")))).strip()


def write_table(rows: list[dict[str, str]], path: Path) -> None:
    extra = [key for row in rows for key in row if key not in CSV_COLUMNS]
    columns = [*CSV_COLUMNS, *dict.fromkeys(extra)]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def _interval(axes, values: np.ndarray, low: np.ndarray, high: np.ndarray, positions: np.ndarray, **style) -> None:
    errors = np.clip(np.stack([values - low, high - values]), 0, None)
    axes.errorbar(values, positions, xerr=errors, fmt="o", capsize=3, **style)


def accuracy_figure(rows: list[dict[str, str]], title: str) -> plt.Figure:
    """Test balanced accuracy with its interval and the validation score per run; Δ from the reference beside it."""
    positions = np.arange(len(rows))
    compared = any(row.get("diff") for row in rows)
    figure, axes = plt.subplots(
        1, 2 if compared else 1, figsize=(11 if compared else 7, 1.6 + 0.32 * len(rows)), squeeze=False,
        gridspec_kw={"width_ratios": [1.4, 1]} if compared else None,
    )
    left = axes[0, 0]
    values = np.array([number(row, "balanced_accuracy") for row in rows])
    low = np.array([number(row, "balanced_accuracy_low") for row in rows])
    high = np.array([number(row, "balanced_accuracy_high") for row in rows])
    _interval(left, values, low, high, positions, color="tab:blue", label="test, 95% interval")
    validation = np.array([number(row, "val_balanced_accuracy") for row in rows])
    if not np.isnan(validation).all():
        left.plot(validation, positions, "D", markerfacecolor="none", color="tab:orange", label="validation")
    left.set_yticks(positions, [label(row) for row in rows], fontsize=8)
    left.set_ylim(len(rows) - 0.5, -0.5)
    left.set_xlabel("balanced accuracy")
    left.grid(axis="x", alpha=0.3)
    left.legend(fontsize=8, loc="lower right")
    left.set_title(title, fontsize=9)
    if compared:
        right = axes[0, 1]
        for i, row in enumerate(rows):
            if row.get("reference") == "reference":
                right.plot(0, i, "D", color="black")
            elif row.get("diff"):
                significant = row.get("significant") == "True"
                colour = "tab:red" if significant else "tab:gray"
                diff = np.array([number(row, "diff")])
                _interval(right, diff, np.array([number(row, "diff_low")]), np.array([number(row, "diff_high")]),
                          np.array([i]), color=colour)
        right.axvline(0, color="black", linewidth=0.8)
        right.set_yticks(positions, [""] * len(rows))
        right.set_ylim(len(rows) - 0.5, -0.5)
        right.set_xlabel("Δ balanced accuracy vs the reference (◆)")
        right.grid(axis="x", alpha=0.3)
        right.set_title("paired 95% interval; red: significant after Holm", fontsize=9)
    figure.tight_layout()
    return figure


def recall_figure(rows: list[dict[str, str]], title: str) -> plt.Figure:
    """Each class's test recall per run; classes the source did not record are left out."""
    classes = [key.removeprefix("recall/") for key in rows[0] if key.startswith("recall/")]
    recalls = np.array([[number(row, f"recall/{c}") for c in classes] for row in rows]).reshape(len(rows), -1)
    kept = ~np.isnan(recalls).all(axis=0)
    classes, recalls = [c for c, k in zip(classes, kept) if k], recalls[:, kept]
    figure, axes = plt.subplots(figsize=(3.5 + 0.7 * len(classes), 1.6 + 0.32 * len(rows)))
    image = axes.imshow(np.ma.masked_invalid(recalls), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    axes.set_xticks(range(len(classes)), classes)
    axes.set_yticks(range(len(rows)), [label(row) for row in rows], fontsize=8)
    for (i, j), value in np.ndenumerate(recalls):
        if not np.isnan(value):
            axes.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                      color="white" if value < 0.5 else "black")
    axes.set_title(f"{title}\ntest recall of each class", fontsize=9)
    figure.colorbar(image, ax=axes, label="recall")
    figure.tight_layout()
    return figure


def make(sources: list[Path], out: Path, title: str) -> list[Path]:
    """Writes the table and both figures; returns the paths written."""
    rows = [row for source in sources for row in read_source(source)]
    done = completed(rows)
    if not done:
        raise SystemExit(f"error: no completed run in {', '.join(map(str, sources))}")
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    table = out.with_suffix(".csv")
    if [source.resolve() for source in sources] != [table.resolve()]:
        write_table(rows, table)
        written.append(table)
    for name, draw in (("balanced_accuracy", accuracy_figure), ("recall", recall_figure)):
        path = out.parent / f"{out.name}_{name}.png"
        figure = draw(done, title)
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", type=Path, help="sweep folders, run folders or CSV files")
    parser.add_argument("--out", type=Path, required=True, help="path and stem of the outputs, e.g. docs/studies/x")
    parser.add_argument("--title", default="", help="the figures' title (default: the stem)")
    args = parser.parse_args(argv)
    for path in make(args.sources, args.out, args.title or args.out.name):
        print(path)


if __name__ == "__main__":
    sys.exit(main())
