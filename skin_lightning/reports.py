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


def summarize(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """The same torchmetrics collection as training logs, run once on all test predictions."""
    metrics = stage_metrics(len(classes), sync_on_compute=False)  # only the first rank writes reports
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
        "per_class": per_class,
        "classes": list(classes),
        "confusion_matrix": values["confusion_matrix"].tolist(),
    }


def report_rows(summary: dict) -> list[list]:
    """The per-class table with accuracy, macro and weighted averages, as the course scripts printed it."""
    per_class = summary["per_class"]
    support = np.array([row["support"] for row in per_class.values()])
    rows = [[cls, *(row[name] for name in PER_CLASS), row["support"]] for cls, row in per_class.items()]
    total = int(support.sum())
    rows.append(["accuracy", "", "", summary["accuracy"], total])
    macro = [np.mean([row[name] for row in per_class.values()]) for name in PER_CLASS]
    weighted = [np.average([row[name] for row in per_class.values()], weights=support) for name in PER_CLASS]
    rows.append(["macro avg", *macro, total])
    rows.append(["weighted avg", *weighted, total])
    return rows


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float | np.floating) else str(value)


def write_test_reports(
    output_dir: Path, probs: np.ndarray, labels: np.ndarray, paths: list[Path], classes: list[str], extra: dict
) -> dict:
    """Write metrics.json, classification_report.{md,csv}, confusion_matrix.png, test_predictions.csv."""
    output_dir = Path(output_dir)
    summary = {**extra, **summarize(probs, labels, classes)}
    (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")

    header = ["class", *PER_CLASS, "support"]
    rows = report_rows(summary)
    with open(output_dir / "classification_report.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    lines = [
        f"# Test report ({summary['num_images']} images)",
        "",
        f"Balanced accuracy (mean per-class recall): {summary['balanced_accuracy']:.4f}  ",
        f"Accuracy: {summary['accuracy']:.4f}, macro F1: {summary['macro_f1']:.4f}, macro AUROC: {summary['auroc']:.4f}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(_fmt(value) for value in row) + " |" for row in rows),
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
