"""The report's figures besides the confusion matrix: ROC curves and the reliability diagram."""

from pathlib import Path

import numpy as np

from skin_lightning.model.confusion import plt


def save(figure: plt.Figure, path: Path) -> None:
    figure.savefig(path, dpi=120)
    plt.close(figure)


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], per_class: dict) -> plt.Figure:
    figure, axes = plt.subplots(figsize=(6, 5.5))
    for cls, (fpr, tpr) in curves.items():
        axes.plot(fpr, tpr, label=f"{cls} (AUC {per_class[cls]['auc']:.3f})", linewidth=1.2)
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    axes.axhline(0.8, color="grey", linestyle="--", linewidth=0.6)
    axes.set_xlabel("false positive rate (1 - specificity)")
    axes.set_ylabel("sensitivity")
    axes.set_title("one-vs-rest ROC curves (dashed: 80% sensitivity)")
    if curves:
        axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return figure


def reliability_figure(calibration: dict) -> plt.Figure:
    """Bars at each bin's accuracy against the diagonal; the gap to it is what ECE averages."""
    bins = calibration["bins"]
    centres = (np.arange(bins) + 0.5) / bins
    filled = np.array(calibration["count"]) > 0
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 6.5), height_ratios=(3, 1), sharex=True)
    accuracy, confidence = np.array(calibration["accuracy"]), np.array(calibration["confidence"])
    top.bar(centres[filled], accuracy[filled], width=1 / bins, edgecolor="black", label="accuracy")
    top.plot(centres[filled], confidence[filled], "o", color="tab:red", markersize=4, label="mean confidence")
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
