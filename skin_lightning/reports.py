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
from skin_lightning.stats import bootstrap_intervals  # noqa: E402

# Fixed, so the same predictions always get the same intervals (and identical metrics.json on rerun).
BOOTSTRAP = {"confidence": 0.95, "resamples": 1000, "seed": 0, "resampling": "stratified by true class"}
INTERVAL_SCORES = ("accuracy", "balanced_accuracy", "macro_f1")


def row_shares(matrix: np.ndarray) -> np.ndarray:
    """Each row of a confusion matrix as shares of its true class; a class with no images stays 0."""
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)


def confusion_figure(matrix: np.ndarray, classes: list[str], title: str = "", shares_in_cells: bool = False) -> plt.Figure:
    """Counts (or row shares) in the cells, colour by row share, so small classes are as readable as large ones."""
    shares = row_shares(matrix)
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
        "intervals": intervals(probs, labels, classes),
        "bootstrap": BOOTSTRAP,
        "per_class": per_class,
        "classes": list(classes),
        "confusion_matrix": values["confusion_matrix"].tolist(),
    }


def bounded(value: float, summary: dict, name: str) -> tuple[float, float, float] | float:
    """A table cell holding `value` and, when the summary has one, the interval of `name`."""
    return (value, *summary["intervals"][name]) if name in summary["intervals"] else value


def report_rows(summary: dict) -> list[list]:
    """The per-class table with accuracy, macro and weighted averages, as the course scripts printed it.

    Intervals sit beside the numbers they bound: each class's recall, the macro recall (balanced
    accuracy), the macro F1, and accuracy, which this table puts in the f1 column.
    """
    per_class = summary["per_class"]
    support = np.array([row["support"] for row in per_class.values()])
    rows = [
        [cls, row["precision"], bounded(row["recall"], summary, f"recall/{cls}"), row["f1"], row["support"]]
        for cls, row in per_class.items()
    ]
    total = int(support.sum())
    rows.append(["accuracy", "", "", bounded(summary["accuracy"], summary, "accuracy"), total])
    precision, recall, f1 = (np.mean([row[name] for row in per_class.values()]) for name in PER_CLASS)
    rows.append([
        "macro avg", precision, bounded(recall, summary, "balanced_accuracy"), bounded(f1, summary, "macro_f1"), total
    ])
    weighted = [np.average([row[name] for row in per_class.values()], weights=support) for name in PER_CLASS]
    rows.append(["weighted avg", *weighted, total])
    return rows


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float | np.floating) else str(value)


def with_interval(value: float, bounds) -> str:
    """0.7123 [0.6810, 0.7431]: the form every Markdown report and sweep summary uses."""
    return f"{_fmt(value)} [{bounds[0]:.4f}, {bounds[1]:.4f}]"


def interval_note() -> str:
    return (
        f"[low, high]: {BOOTSTRAP['confidence']:.0%} bootstrap interval ({BOOTSTRAP['resamples']} resamples of the "
        "test images within each class): the range the score would likely take on another test set of the same "
        "size and class mix."
    )


def _headline(summary: dict, name: str) -> str:
    return with_interval(summary[name], summary["intervals"][name])


def _write_table(output_dir: Path, name: str, header: list[str], rows: list[list], intro: list[str]) -> None:
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
        f"Balanced accuracy (mean per-class recall): {_headline(summary, 'balanced_accuracy')}  ",
        f"Accuracy: {_headline(summary, 'accuracy')}  ",
        f"Macro F1: {_headline(summary, 'macro_f1')}  ",
        f"Macro AUROC: {summary['auroc']:.4f}",
        *(f"- {key}: {summary[key]}" for key in ("tta", "logit_adjustment") if key in summary),
        "",
        interval_note(),
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
    aucs = [row["auc"] for row in per_class.values() if row["auc"] is not None]
    summary = {
        "num_images": int(len(labels)),
        "balanced_accuracy": float(np.mean([row["sensitivity"] for row in per_class.values() if row["support"]])),
        "accuracy": float(values["accuracy"]),
        "macro_f1": float(values["macro_f1"]),
        "auroc": float(np.mean(aucs)) if aucs else None,
        "intervals": intervals(probs, labels, classes),
        "bootstrap": BOOTSTRAP,
        "calibration": reliability(probs, labels, bins),
        "per_class": per_class,
        "classes": list(classes),
        "confusion_matrix": matrix.tolist(),
        "confusion_matrix_normalized": row_shares(matrix).round(6).tolist(),
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
    """Per-class rows and their macro average (over the classes where each metric is defined).

    Sensitivity is recall: each class's and the macro one (balanced accuracy) carry their intervals, as does macro F1.
    """
    per_class = summary["per_class"]
    rows = [[cls, *(row[name] if row[name] is not None else "n/a" for name in EVALUATION_PER_CLASS), row["support"]] for cls, row in per_class.items()]
    sensitivity = EVALUATION_PER_CLASS.index("sensitivity")
    for row in rows:
        row[1 + sensitivity] = bounded(row[1 + sensitivity], summary, f"recall/{row[0]}")
    macro = []
    for name in EVALUATION_PER_CLASS:
        defined = [row[name] for row in per_class.values() if row[name] is not None]
        macro.append(float(np.mean(defined)) if defined else "n/a")
    macro[sensitivity] = bounded(macro[sensitivity], summary, "balanced_accuracy")
    macro[EVALUATION_PER_CLASS.index("f1")] = bounded(macro[EVALUATION_PER_CLASS.index("f1")], summary, "macro_f1")
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
        f"Balanced multi-class accuracy (ISIC 2019 score, mean per-class sensitivity): {_headline(summary, 'balanced_accuracy')}  ",
        f"Accuracy: {_headline(summary, 'accuracy')}  ",
        f"Macro F1: {_headline(summary, 'macro_f1')}  ",
        f"Macro AUROC: {auroc}, expected calibration error: {summary['calibration']['ece']:.4f}",
        "",
        interval_note(),
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
