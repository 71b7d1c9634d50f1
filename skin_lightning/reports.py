"""Report files of a test run or an evaluation: the numbers, the per-class table, figures and every prediction."""

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from skin_lightning.metrics import (  # noqa: E402
    PER_CLASS,
    auc_above_sensitivity,
    evaluation_metrics,
    named_scalars,
    reliability,
    stage_metrics,
)


def confusion_figure(matrix: np.ndarray, classes: list[str], title: str = "", shares_in_cells: bool = False) -> plt.Figure:
    """Counts (or row shares) in the cells, colour by row share, so small classes are as readable as large ones."""
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    size = 1.0 + 0.6 * len(classes)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for row in range(len(classes)):
        for col in range(len(classes)):
            colour = "white" if shares[row, col] > 0.5 else "black"
            text = f"{shares[row, col]:.2f}" if shares_in_cells else int(matrix[row, col])
            axes.text(col, row, text, ha="center", va="center", color=colour, fontsize=8)
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


def _write_table(output_dir: Path, name: str, header: list[str], rows: list[list], intro: list[str]) -> None:
    """One table as NAME.csv and as NAME.md below a few lines of headline numbers."""
    with open(output_dir / f"{name}.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    lines = [
        *intro,
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(_fmt(value) for value in row) + " |" for row in rows),
    ]
    (output_dir / f"{name}.md").write_text("\n".join(lines) + "\n")


def _save(figure: plt.Figure, path: Path) -> None:
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _write_predictions(path: Path, paths: list[Path], labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true", "predicted", *(f"prob_{cls}" for cls in classes)])
        for image, label, row in zip(paths, labels, probs):
            writer.writerow([str(image), classes[label], classes[int(row.argmax())], *(f"{p:.6f}" for p in row)])


def write_test_reports(
    output_dir: Path, probs: np.ndarray, labels: np.ndarray, paths: list[Path], classes: list[str], extra: dict
) -> dict:
    """Write metrics.json, classification_report.{md,csv}, confusion_matrix.png, test_predictions.csv."""
    output_dir = Path(output_dir)
    summary = {**extra, **summarize(probs, labels, classes)}
    (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    intro = [
        f"# Test report ({summary['num_images']} images)",
        "",
        f"Balanced accuracy (mean per-class recall): {summary['balanced_accuracy']:.4f}  ",
        f"Accuracy: {summary['accuracy']:.4f}, macro F1: {summary['macro_f1']:.4f}, macro AUROC: {summary['auroc']:.4f}",
    ]
    _write_table(output_dir, "classification_report", ["class", *PER_CLASS, "support"], report_rows(summary), intro)
    _save(confusion_figure(np.array(summary["confusion_matrix"]), classes, title="test"), output_dir / "confusion_matrix.png")
    _write_predictions(output_dir / "test_predictions.csv", paths, labels, probs, classes)
    return summary


EVALUATION_PER_CLASS = ("sensitivity", "specificity", "ppv", "npv", "f1", "auc", "auc_sens_80", "average_precision")
# our per-class names -> the torchmetrics collection's
_COLLECTION_NAMES = {"sensitivity": "recall", "ppv": "precision"}


def evaluation_summary(probs: np.ndarray, labels: np.ndarray, classes: list[str], bins: int = 15) -> tuple[dict, dict]:
    """ISIC 2019's aggregate and per-class metrics, calibration and confusion matrices; plus the ROC curves.

    Ranking metrics (AUC, AUC above 80% sensitivity, average precision) of a class that is absent from
    the labels, or is every label, are undefined and reported as None; balanced accuracy and macro
    AUROC average over the classes where they are defined, as ISIC's scoring does.
    """
    metrics = evaluation_metrics(len(classes))
    metrics.update(torch.as_tensor(probs), torch.as_tensor(labels))
    values = metrics.compute()
    fprs, tprs, _ = values.pop("roc")
    support = np.bincount(labels, minlength=len(classes))
    ranked = (support > 0) & (support < len(labels))
    per_class, curves = {}, {}
    for k, cls in enumerate(classes):
        row = {name: float(values[_COLLECTION_NAMES.get(name, name)][k]) for name in EVALUATION_PER_CLASS if name != "auc_sens_80"}
        if ranked[k]:
            curves[cls] = fprs[k].double().numpy(), tprs[k].double().numpy()
            row["auc_sens_80"] = auc_above_sensitivity(*curves[cls], 0.8)
        else:
            row.update(auc=None, auc_sens_80=None, average_precision=None)
        per_class[cls] = {name: row[name] for name in EVALUATION_PER_CLASS} | {"support": int(support[k])}
    matrix = values["confusion_matrix"].numpy()
    totals = matrix.sum(axis=1, keepdims=True)
    aucs = [row["auc"] for row in per_class.values() if row["auc"] is not None]
    summary = {
        "num_images": int(len(labels)),
        "balanced_accuracy": float(np.mean([row["sensitivity"] for row in per_class.values() if row["support"]])),
        "accuracy": float(values["accuracy"]),
        "macro_f1": float(values["macro_f1"]),
        "auroc": float(np.mean(aucs)) if aucs else None,
        "calibration": reliability(probs, labels, bins),
        "per_class": per_class,
        "classes": list(classes),
        "confusion_matrix": matrix.tolist(),
        "confusion_matrix_normalized": np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0).round(6).tolist(),
    }
    return summary, curves


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], per_class: dict) -> plt.Figure:
    figure, axes = plt.subplots(figsize=(6, 5.5))
    for cls, (fpr, tpr) in curves.items():
        axes.plot(fpr, tpr, label=f"{cls} (AUC {per_class[cls]['auc']:.3f})", linewidth=1.2)
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    axes.axhline(0.8, color="grey", linestyle="--", linewidth=0.6)
    axes.set_xlabel("false positive rate (1 - specificity)")
    axes.set_ylabel("sensitivity")
    axes.set_title("one-vs-rest ROC curves (dashed: 80% sensitivity)")
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return figure


def reliability_figure(calibration: dict) -> plt.Figure:
    """Bars at each bin's accuracy against the diagonal; the gap to it is what ECE averages."""
    bins = calibration["bins"]
    centres = (np.arange(bins) + 0.5) / bins
    filled = np.array(calibration["count"]) > 0
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 6.5), height_ratios=(3, 1), sharex=True)
    top.bar(centres[filled], np.array(calibration["accuracy"])[filled], width=1 / bins, edgecolor="black", label="accuracy")
    top.plot(centres[filled], np.array(calibration["confidence"])[filled], "o", color="tab:red", markersize=4, label="mean confidence")
    top.plot([0, 1], [0, 1], color="grey", linestyle=":")
    top.set_ylabel("accuracy")
    top.set_title(f"reliability (ECE {calibration['ece']:.4f}, {bins} bins)")
    top.legend(fontsize=8, loc="upper left")
    bottom.bar(centres, calibration["count"], width=1 / bins, color="grey")
    bottom.set_xlabel("top-class probability")
    bottom.set_ylabel("images")
    bottom.set_xlim(0, 1)
    figure.tight_layout()
    return figure


def evaluation_rows(summary: dict) -> list[list]:
    """Per-class rows and their macro average (over the classes where each metric is defined)."""
    per_class = summary["per_class"]
    rows = [[cls, *(row[name] if row[name] is not None else "n/a" for name in EVALUATION_PER_CLASS), row["support"]] for cls, row in per_class.items()]
    macro = []
    for name in EVALUATION_PER_CLASS:
        defined = [row[name] for row in per_class.values() if row[name] is not None]
        macro.append(float(np.mean(defined)) if defined else "n/a")
    rows.append(["macro avg", *macro, summary["num_images"]])
    return rows


def write_evaluation_reports(
    output_dir: Path, probs: np.ndarray, labels: np.ndarray, paths: list[Path], classes: list[str], extra: dict, bins: int = 15
) -> dict:
    """metrics.json, evaluation_report.{md,csv}, confusion matrices, ROC and reliability PNGs, test_predictions.csv."""
    output_dir = Path(output_dir)
    summary, curves = evaluation_summary(probs, labels, classes, bins)
    summary = {**extra, **summary}
    (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    auroc = "n/a" if summary["auroc"] is None else f"{summary['auroc']:.4f}"
    intro = [
        f"# Evaluation report ({summary['num_images']} images)",
        "",
        *(f"- {key}: {value}" for key, value in extra.items()),
        "",
        f"Balanced multi-class accuracy (ISIC 2019 score, mean per-class sensitivity): {summary['balanced_accuracy']:.4f}  ",
        f"Accuracy: {summary['accuracy']:.4f}, macro F1: {summary['macro_f1']:.4f}, macro AUROC: {auroc}, "
        f"expected calibration error: {summary['calibration']['ece']:.4f}",
        "",
        "Sensitivity, specificity, PPV, NPV and F1 count the top-probability class as the prediction; "
        "auc_sens_80 is the area under the ROC curve where sensitivity is at least 80%.",
    ]
    header = ["class", *EVALUATION_PER_CLASS, "support"]
    _write_table(output_dir, "evaluation_report", header, evaluation_rows(summary), intro)
    matrix = np.array(summary["confusion_matrix"])
    _save(confusion_figure(matrix, classes, title="counts"), output_dir / "confusion_matrix.png")
    _save(confusion_figure(matrix, classes, title="share of each true class", shares_in_cells=True), output_dir / "confusion_matrix_normalized.png")
    _save(roc_figure(curves, summary["per_class"]), output_dir / "roc_curves.png")
    _save(reliability_figure(summary["calibration"]), output_dir / "reliability.png")
    _write_predictions(output_dir / "test_predictions.csv", paths, labels, probs, classes)
    return summary
