"""The one evaluation of a tested checkpoint, shared by `train` (after fit) and `evaluate`.

Each split is predicted once, with the views `tta` asks for, and every number derives from those
probabilities: tau for `logit_adjustment=auto`, the validation scores, `val_predictions.csv`, the test
report and its scores without the test images that have a copy in training. What TensorBoard, the
HParams tab, metrics.json, report.md and a sweep's summary.csv show is therefore one set of numbers.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from skin_lightning.model.inference import TrainedModel, predict_batches
from skin_lightning.model.metrics import HEADLINE
from skin_lightning.results.logit_adjustment import adjust, resolve_tau
from skin_lightning.results.reports import write_reports
from skin_lightning.results.scores import score
from skin_lightning.results.tables import VALIDATION_PREDICTIONS, write_predictions


@dataclass(frozen=True)
class Split:
    """A split as the evaluation reads it: `batches()` yields its uint8 NHWC images in the order of `labels`
    (indices into the checkpoint's classes) and `paths`."""

    batches: Callable[[], Iterable[torch.Tensor]]
    labels: np.ndarray
    paths: list


def evaluate_tested(
    model: TrainedModel,
    test: Split,
    val: Split | None,
    *,
    tta: str,
    logit_adjustment: float | str | None,
    device: torch.device,
    output_dir: Path,
    extra: Mapping,
    validation_notes: Mapping | None = None,
    twins: list[str] | None = None,
    copies_left_out: int = 0,
    bins: int = 15,
) -> dict:
    """Predicts `val` and `test` once each, writes the reports and returns metrics.json's content.

    Validation scores (metrics.json's "validation", what a sweep averages and a search maximises) are those
    of the model as it is tested: with its TTA views and its logit adjustment; with `logit_adjustment=auto`,
    tau is chosen on these same images, so they flatter it a little. `val=None`: no validation split.

    `twins` is the one seam for train/test copies: for each test image (in `test` order), a copy of it in the
    training data, or "". The caller finds them (train: the audit's clusters; evaluate: unknown, None); the
    report then adds the scores without those images and names each one's copy (write_reports).
    """
    classes = model.classes
    test_probs = predict_batches(model, test.batches(), tta, device)
    val_probs = predict_batches(model, val.batches(), tta, device) if val is not None else None
    notes: dict = {"tta": tta}
    if logit_adjustment is not None:
        labels = val.labels if val is not None else np.empty(0, dtype=np.int64)
        probs = val_probs if val_probs is not None else np.empty((0, len(classes)), dtype=np.float32)
        tau, notes["logit_adjustment"] = resolve_tau(logit_adjustment, model.class_counts, lambda: (probs, labels))
        test_probs = adjust(test_probs, model.class_counts, tau)
        val_probs = adjust(val_probs, model.class_counts, tau) if val_probs is not None else None
    if val is not None and len(val.labels):
        write_predictions(output_dir / VALIDATION_PREDICTIONS, val.paths, val.labels, val_probs, classes)
        scores, _ = score(val_probs, val.labels, classes, bins)
        notes["validation"] = {
            "images": len(val.labels),
            **(validation_notes or {}),
            **{name: scores[name] for name in HEADLINE},
        }
    summary = {**extra, **notes}
    return write_reports(
        output_dir, test_probs, test.labels, test.paths, classes, summary, bins, twins, copies_left_out
    )
