"""The confusion-matrix figure: drawn every epoch for TensorBoard, and once more for the test report."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def row_shares(matrix: np.ndarray) -> np.ndarray:
    """Each row of a confusion matrix as shares of its true class; a class with no images stays 0."""
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)


def confusion_figure(
    matrix: np.ndarray, classes: list[str], title: str = "", shares_in_cells: bool = False
) -> plt.Figure:
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
