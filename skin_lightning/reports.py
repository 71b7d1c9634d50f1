"""Report files of a test run: the numbers, the per-class table, the figure and every prediction."""

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from skin_lightning.metrics import PER_CLASS, named_scalars, stage_metrics  # noqa: E402
from skin_lightning.stats import bootstrap_intervals  # noqa: E402

# Fixed, so the same predictions always get the same intervals (and identical metrics.json on rerun).
BOOTSTRAP = {"confidence": 0.95, "resamples": 1000, "seed": 0, "resampling": "stratified by true class"}
INTERVAL_SCORES = ("accuracy", "balanced_accuracy", "macro_f1")


def confusion_figure(matrix: np.ndarray, classes: list[str], title: str = "") -> plt.Figure:
    """Counts in the cells, colour by row share, so small classes are as readable as large ones."""
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    size = 1.0 + 0.6 * len(classes)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for row in range(len(classes)):
        for col in range(len(classes)):
            colour = "white" if shares[row, col] > 0.5 else "black"
            axes.text(col, row, int(matrix[row, col]), ha="center", va="center", color=colour, fontsize=8)
    axes.set_xticks(range(len(classes)), classes, rotation=45)
    axes.set_yticks(range(len(classes)), classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    figure.colorbar(image, ax=axes, label="share of true class")
    figure.tight_layout()
    return figure


def intervals(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, list[float]]:
    """95% bootstrap intervals of accuracy, balanced accuracy, macro F1 and each present class's recall.

    A test set of a few hundred images moves these scores by several points from one draw of images
    to the next, so a score is never reported without the range it could plausibly take.
    """
    found = bootstrap_intervals(
        labels, probs.argmax(axis=1), len(classes),
        n_resamples=BOOTSTRAP["resamples"], confidence=BOOTSTRAP["confidence"], seed=BOOTSTRAP["seed"],
    )
    named = {name: list(found[name]) for name in INTERVAL_SCORES}
    named.update({f"recall/{cls}": list(found[f"recall/{k}"]) for k, cls in enumerate(classes) if f"recall/{k}" in found})
    return named


def summarize(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """The same torchmetrics collection as training logs, run once on all test predictions."""
    metrics = stage_metrics(len(classes))
    metrics.update(torch.as_tensor(probs), torch.as_tensor(labels))
    values = metrics.compute()
    scalars = named_scalars(values, classes)
    support = np.bincount(labels, minlength=len(classes))
    per_class = {
        cls: {**{name: scalars[f"{name}/{cls}"] for name in PER_CLASS}, "support": int(support[k])}
        for k, cls in enumerate(classes)
    }
    return {
        "num_images": int(len(labels)),
        **{name: scalars[name] for name in ("accuracy", "balanced_accuracy", "macro_f1", "auroc")},
        "intervals": intervals(probs, labels, classes),
        "bootstrap": BOOTSTRAP,
        "per_class": per_class,
        "classes": list(classes),
        "confusion_matrix": values["confusion_matrix"].tolist(),
    }


REPORT_COLUMNS = ["class", "precision", "recall", "recall_low", "recall_high", "f1", "f1_low", "f1_high", "support"]


def report_rows(summary: dict) -> list[list]:
    """The per-class table with accuracy, macro and weighted averages, as the course scripts printed it.

    Each interval sits beside the number it bounds: a class's recall, the macro recall (balanced
    accuracy), the macro F1, and accuracy, which this table puts in the f1 column.
    """
    per_class, bounds = summary["per_class"], summary["intervals"]
    support = np.array([row["support"] for row in per_class.values()])
    rows = [
        [cls, row["precision"], row["recall"], *bounds.get(f"recall/{cls}", ["", ""]), row["f1"], "", "", row["support"]]
        for cls, row in per_class.items()
    ]
    total = int(support.sum())
    rows.append(["accuracy", "", "", "", "", summary["accuracy"], *bounds["accuracy"], total])
    precision, recall, f1 = (np.mean([row[name] for row in per_class.values()]) for name in PER_CLASS)
    rows.append(["macro avg", precision, recall, *bounds["balanced_accuracy"], f1, *bounds["macro_f1"], total])
    weighted = [np.average([row[name] for row in per_class.values()], weights=support) for name in PER_CLASS]
    rows.append(["weighted avg", weighted[0], weighted[1], "", "", weighted[2], "", "", total])
    return rows


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float | np.floating) else str(value)


def with_interval(value: float | str, bounds) -> str:
    """0.7123 [0.6810, 0.7431]: the form every Markdown report and summary uses."""
    if value == "" or value is None:
        return ""
    if not bounds or bounds[0] == "":
        return _fmt(value)
    return f"{_fmt(value)} [{bounds[0]:.4f}, {bounds[1]:.4f}]"


def _markdown_row(row: list) -> list[str]:
    name, precision, recall, recall_low, recall_high, f1, f1_low, f1_high, support = row
    return [name, _fmt(precision), with_interval(recall, (recall_low, recall_high)), with_interval(f1, (f1_low, f1_high)), _fmt(support)]


def write_test_reports(
    output_dir: Path, probs: np.ndarray, labels: np.ndarray, paths: list[Path], classes: list[str], extra: dict
) -> dict:
    """Write metrics.json, classification_report.{md,csv}, confusion_matrix.png, test_predictions.csv."""
    output_dir = Path(output_dir)
    summary = {**extra, **summarize(probs, labels, classes)}
    (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")

    rows = report_rows(summary)
    with open(output_dir / "classification_report.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([REPORT_COLUMNS, *rows])
    bounds = summary["intervals"]
    header = ["class", "precision", "recall [95% CI]", "f1 [95% CI]", "support"]
    lines = [
        f"# Test report ({summary['num_images']} images)",
        "",
        "Balanced accuracy (mean per-class recall): "
        f"{with_interval(summary['balanced_accuracy'], bounds['balanced_accuracy'])}  ",
        f"Accuracy: {with_interval(summary['accuracy'], bounds['accuracy'])}  ",
        f"Macro F1: {with_interval(summary['macro_f1'], bounds['macro_f1'])}  ",
        f"Macro AUROC: {summary['auroc']:.4f}",
        "",
        f"[low, high]: {BOOTSTRAP['confidence']:.0%} bootstrap interval ({BOOTSTRAP['resamples']} resamples of the "
        "test images within each class): the range the score would likely take on another test set of the same "
        "size and class mix.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(_markdown_row(row)) + " |" for row in rows),
    ]
    (output_dir / "classification_report.md").write_text("\n".join(lines) + "\n")

    figure = confusion_figure(np.array(summary["confusion_matrix"]), classes, title="test")
    figure.savefig(output_dir / "confusion_matrix.png", dpi=120)
    plt.close(figure)

    with open(output_dir / "test_predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true", "predicted", *(f"prob_{cls}" for cls in classes)])
        for path, label, row in zip(paths, labels, probs):
            writer.writerow([str(path), classes[label], classes[int(row.argmax())], *(f"{p:.6f}" for p in row)])
    return summary
