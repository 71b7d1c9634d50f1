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


def _differences(axis, done: list, reference: str) -> None:
    """Each job's Δ balanced accuracy from the reference run of its seed, significant ones in red."""
    for i, row in enumerate(done):
        found = row.comparison
        if found is not None:
            colour = "tab:red" if found.significant else "tab:gray"
            error = [[max(0.0, found.diff - found.diff_low)], [max(0.0, found.diff_high - found.diff)]]
            axis.errorbar(found.diff, i, xerr=error, fmt="o", color=colour, capsize=3)
            if found.significant:
                axis.annotate("*", (found.diff_high, i), xytext=(4, -4), textcoords="offset points", color=colour)
        elif row.is_reference:
            axis.plot(0, i, "D", color="black")
    axis.axvline(0, color="black", linewidth=0.8)
    axis.set_yticks(np.arange(len(done)), [""] * len(done))
    axis.set_ylim(len(done) - 0.5, -0.5)
    axis.set_title(f"Δ balanced accuracy vs {reference}\n(red *: significant after Holm)", fontsize=9)


def sweep_figure(path: Path, done: list, classes: list[str], scores: tuple[str, ...], reference: str) -> None:
    """A sweep's completed jobs (`sweep.JobRow`): scores with their intervals, Δ from the reference
    (significant ones in red; no panel when nothing is compared), and each class's recall."""
    names = [f"{row.number}: {' '.join(filter(None, (row.configuration, row.replicate))) or row.job}" for row in done]
    compared = any(row.comparison is not None or row.is_reference for row in done)
    widths = [1.2, 1, 0.15 * max(4, len(classes))] if compared else [1.2, 0.15 * max(4, len(classes))]
    figure, axes = plt.subplots(
        1, len(widths), figsize=(10 + 0.8 * len(classes) - (0 if compared else 3), 1.8 + 0.5 * max(1, len(done))),
        gridspec_kw={"width_ratios": widths},
    )
    left, heat = axes[0], axes[-1]
    positions = np.arange(len(done))
    offset = 0.8 / len(scores)
    for k, name in enumerate(scores):
        values = np.array([row.scores[name] for row in done])
        bounds = np.array([[row.scores[f"{name}_low"], row.scores[f"{name}_high"]] for row in done]).reshape(-1, 2)
        errors = np.clip(np.stack([values - bounds[:, 0], bounds[:, 1] - values]), 0, None)
        left.errorbar(values, positions + (k - 1) * offset, xerr=errors, fmt="o", capsize=3, label=name)
    left.set_yticks(positions, names, fontsize=8)
    left.set_ylim(len(done) - 0.5, -0.5)
    left.set_xlim(0, 1)
    left.legend(fontsize=7, loc="best")
    left.set_title("test scores, 95% intervals")
    if compared:
        _differences(axes[1], done, reference)

    recalls = np.array([[row.scores[f"recall/{c}"] for c in classes] for row in done]).reshape(len(done), len(classes))
    image = heat.imshow(recalls, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    heat.set_xticks(range(len(classes)), classes, rotation=45)
    heat.set_yticks(positions, [f"{row.number}: {row.replicate}" if row.replicate else row.number for row in done])
    for (i, j), value in np.ndenumerate(recalls):
        heat.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if value < 0.5 else "black")
    heat.set_title("recall per class")
    figure.colorbar(image, ax=heat)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
