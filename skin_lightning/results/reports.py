"""The report of a test: what `train` writes after fitting and `evaluate` writes for any checkpoint.

One function, so both commands (and the sweep's fold ensembles) leave the same files with the same
metrics.json layout; README's "What a test writes" lists them.
"""

import json
from pathlib import Path

import numpy as np

from skin_lightning.model.confusion import confusion_figure
from skin_lightning.model.metrics import HEADLINE
from skin_lightning.results.figures import reliability_figure, roc_figure, save
from skin_lightning.results.scores import BOOTSTRAP, CONFIDENCE, PER_CLASS_FIELDS, score
from skin_lightning.results.tables import report_rows, with_interval, write_predictions, write_table

REPORT = "report"


def interval_note() -> str:
    return (
        f"[low, high]: {CONFIDENCE:.0%} intervals. Accuracy and each class's ratios: Wilson score interval, the "
        "true rates this count of right and wrong images does not rule out (it stays wide for 25 of 25 right). "
        f"Balanced accuracy and macro F1: percentile bootstrap ({BOOTSTRAP['resamples']} resamples of the test "
        "images within each class), how much the score moves with the draw of test images for a fixed class mix; "
        "it narrows to a point when every image of every class is right, so read the per-class intervals then. "
        "Neither covers the randomness of training: compare several seeds for that."
    )


def _headline(summary: dict, name: str) -> str:
    return with_interval(summary[name], summary["intervals"][name])


def write_reports(
    output_dir: Path,
    probs: np.ndarray,
    labels: np.ndarray,
    paths: list,
    classes: list[str],
    extra: dict,
    bins: int = 15,
    twins: list[str] | None = None,
    copies_left_out: int = 0,
) -> dict:
    """metrics.json, report.{md,csv}, confusion matrices, ROC and reliability PNGs, test_predictions.csv.

    `twins` names, for each test image, a copy of it in the training data (the audit's clusters) or "": the
    headline scores are then also given without those images, as `without_training_copies`, and
    test_predictions.csv names each one's twin, so the excluded images can be listed and counted.
    `copies_left_out`: test images whose only copies were left out of training (label conflicts), scored as unseen.
    """
    output_dir = Path(output_dir)
    summary, curves = score(probs, labels, classes, bins)
    summary = {**extra, **summary}
    leak_lines = []
    if twins is not None:
        clean = np.array([not twin for twin in twins], dtype=bool)
        kept, _ = score(probs[clean], labels[clean], classes, bins) if clean.any() else (None, None)
        summary["without_training_copies"] = {
            "excluded_images": int((~clean).sum()),
            "copies_left_out_of_training": copies_left_out,
            **({name: kept[name] for name in ("num_images", *HEADLINE, "intervals")} if kept else {}),
        }
        leak_lines = [
            "",
            f"Test images with a copy in the training data (train or validation split): {int((~clean).sum())}, "
            "each named beside its copy in test_predictions.csv (`training_copy`). "
            + (
                f"Without them ({kept['num_images']} images): "
                f"balanced accuracy {_headline(kept, 'balanced_accuracy')}, "
                f"accuracy {_headline(kept, 'accuracy')}, macro F1 {_headline(kept, 'macro_f1')}."
                if kept
                else "Every test image has one."
            ),
            *(
                [
                    f"{copies_left_out} more test images have copies in Train only among the images left out as "
                    "label conflicts (label_conflicts.csv): the model never saw those copies, so they are scored "
                    "as unseen, and the audit's count of Train-Test copies is larger by as many."
                ]
                if copies_left_out
                else []
            ),
        ]
    (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    auroc = "n/a" if summary["auroc"] is None else f"{summary['auroc']:.4f}"
    intro = [
        f"# Test report ({summary['num_images']} images)",
        "",
        *(f"- {key}: {value}" for key, value in extra.items() if not isinstance(value, dict)),
        "",
        "Balanced multi-class accuracy (ISIC 2019 score, mean recall of the classes in the test labels): "
        f"{_headline(summary, 'balanced_accuracy')}  ",
        f"Accuracy: {_headline(summary, 'accuracy')}  ",
        f"Macro F1: {_headline(summary, 'macro_f1')}  ",
        f"Macro AUROC: {auroc}, expected calibration error: {summary['calibration']['ece']:.4f}",
        *leak_lines,
        "",
        interval_note(),
        "",
        "Recall is sensitivity and precision is PPV. Ratios count the top-probability class as the prediction; "
        "auc_sens_80 is the area under the ROC curve where sensitivity is at least 80%. Averages run over the "
        "classes present in the test labels.",
    ]
    write_table(output_dir, REPORT, ["class", *PER_CLASS_FIELDS, "support"], report_rows(summary), intro)
    matrix = np.array(summary["confusion_matrix"])
    save(confusion_figure(matrix, classes, title="test, counts"), output_dir / "confusion_matrix.png")
    shares = confusion_figure(matrix, classes, title="test, share of each true class", shares_in_cells=True)
    save(shares, output_dir / "confusion_matrix_normalized.png")
    save(roc_figure(curves, summary["per_class"]), output_dir / "roc_curves.png")
    save(reliability_figure(summary["calibration"]), output_dir / "reliability.png")
    write_predictions(output_dir / "test_predictions.csv", paths, labels, probs, classes, twins)
    return summary
