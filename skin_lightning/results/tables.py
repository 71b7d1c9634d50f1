"""The report's per-class table, written as CSV and Markdown, and the file of every test prediction."""

import csv
from pathlib import Path

import numpy as np

from skin_lightning.results.scores import PER_CLASS_FIELDS


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float | np.floating) else str(value)


def with_interval(value: float, bounds) -> str:
    """0.7123 [0.6810, 0.7431]: the form every Markdown report and sweep summary uses."""
    return f"{_fmt(value)} [{bounds[0]:.4f}, {bounds[1]:.4f}]"


def bounded(value, summary: dict, name: str):
    """A table cell holding `value` and, when the summary has one, the interval of `name`."""
    return (value, *summary["intervals"][name]) if name in summary["intervals"] else value


def report_rows(summary: dict) -> list[list]:
    """One row a class, then accuracy, the macro average and the support-weighted average.

    Each class's recall carries its interval, as do accuracy (in the f1 column, as scikit-learn's
    report places it), the macro recall (balanced accuracy) and the macro F1. Averages run over
    the classes present in the test labels, the class set of the headline scores, so the macro
    row's recall and F1 are exactly the balanced accuracy and macro F1 above the table.
    """
    per_class = summary["per_class"]
    rows = []
    for cls, row in per_class.items():
        cells = [
            bounded(row[name], summary, f"recall/{cls}") if name == "recall" else row[name] for name in PER_CLASS_FIELDS
        ]
        rows.append([cls, *("n/a" if cell is None else cell for cell in cells), row["support"]])
    present = [row for row in per_class.values() if row["support"]]
    total = summary["num_images"]
    blank = [""] * len(PER_CLASS_FIELDS)
    blank[PER_CLASS_FIELDS.index("f1")] = bounded(summary["accuracy"], summary, "accuracy")
    rows.append(["accuracy", *blank, total])
    macro, weighted = [], []
    for name in PER_CLASS_FIELDS:
        defined = [row for row in present if row[name] is not None]
        values = [row[name] for row in defined]
        macro.append(float(np.mean(values)) if values else "n/a")
        weighted.append(float(np.average(values, weights=[row["support"] for row in defined])) if values else "n/a")
    macro[PER_CLASS_FIELDS.index("recall")] = bounded(summary["balanced_accuracy"], summary, "balanced_accuracy")
    macro[PER_CLASS_FIELDS.index("f1")] = bounded(summary["macro_f1"], summary, "macro_f1")
    rows.append(["macro avg", *macro, total])
    rows.append(["weighted avg", *weighted, total])
    return rows


def write_table(output_dir: Path, name: str, header: list[str], rows: list[list], intro: list[str]) -> None:
    """One table as NAME.csv and as NAME.md below a few lines of headline numbers.

    A cell may be (value, low, high): its column becomes COLUMN, COLUMN_low, COLUMN_high in the
    CSV and "value [low, high]" in the Markdown.
    """
    has_bounds = [any(isinstance(row[i], tuple) for row in rows) for i in range(len(header))]
    csv_header, md_header = [], []
    for column, wide in zip(header, has_bounds):
        csv_header += [column, f"{column}_low", f"{column}_high"] if wide else [column]
        md_header.append(f"{column} [95% CI]" if wide else column)

    def csv_cells(row: list) -> list:
        cells = []
        for cell, wide in zip(row, has_bounds):
            cells += list(cell) if isinstance(cell, tuple) else [cell, "", ""] if wide else [cell]
        return cells

    def md_cell(cell) -> str:
        return with_interval(cell[0], cell[1:]) if isinstance(cell, tuple) else _fmt(cell)

    with open(output_dir / f"{name}.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([csv_header, *(csv_cells(row) for row in rows)])
    lines = [
        *intro,
        "",
        "| " + " | ".join(md_header) + " |",
        "|" + "---|" * len(md_header),
        *("| " + " | ".join(md_cell(cell) for cell in row) + " |" for row in rows),
    ]
    (output_dir / f"{name}.md").write_text("\n".join(lines) + "\n")


VALIDATION_PREDICTIONS = "val_predictions.csv"


def write_predictions(
    path: Path, paths: list, labels: np.ndarray, probs: np.ndarray, classes: list[str], twins: list[str] | None = None
) -> None:
    """One row per image; with `twins`, a `training_copy` column naming the image's copy in training ("": none)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        twin_column = [] if twins is None else ["training_copy"]
        writer.writerow(["path", "true", "predicted", *(f"prob_{cls}" for cls in classes), *twin_column])
        for k, (image, label, row) in enumerate(zip(paths, labels, probs)):
            probabilities = (f"{p:.6f}" for p in row)
            twin = [] if twins is None else [twins[k]]
            writer.writerow([str(image), classes[label], classes[int(row.argmax())], *probabilities, *twin])
