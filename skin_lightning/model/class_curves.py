"""Each class's validation recall and precision over the epochs so far, in one figure with a legend.

TensorBoard's Scalars page colours lines by run, not by tag, so per-class curves in one chart need a figure:
one colour and one name a class, the same in every run (classes keep their training order).
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

CLASS_SCORES = ("recall", "precision")


def class_curves_figure(history: list[dict[str, float]], classes: list[str], title: str) -> plt.Figure:
    """`history`: one entry per validation epoch, {"recall/AK": 0.5, "precision/AK": 0.4, ...}."""
    epochs = range(1, len(history) + 1)
    colours = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    figure, panes = plt.subplots(1, len(CLASS_SCORES), figsize=(10, 4), sharey=True)
    for pane, score in zip(panes, CLASS_SCORES):
        for k, cls in enumerate(classes):
            values = [entry.get(f"{score}/{cls}", float("nan")) for entry in history]
            pane.plot(epochs, values, marker="o", markersize=3, color=colours(k), label=cls)
        pane.set_title(f"validation {score}")
        pane.set_xlabel("epoch")
        pane.set_ylim(-0.02, 1.02)
        pane.set_xticks(list(epochs) if len(history) <= 20 else pane.get_xticks())
        pane.grid(alpha=0.3)
    panes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), title="class")
    figure.suptitle(title)
    figure.tight_layout()
    return figure
