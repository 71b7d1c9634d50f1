"""Test-time changes to a trained model's probabilities, made the same way after training and in evaluation:
test-time augmentation (`tta`) and post-hoc logit adjustment (`logit_adjustment`)."""

from collections.abc import Callable

import numpy as np
import torch

from skin_lightning.model.inference import TrainedModel, predict_probs
from skin_lightning.results.logit_adjustment import adjust, resolve_tau


def posthoc_test_probs(
    model: TrainedModel,
    images_of: Callable[[str], tuple[np.ndarray, np.ndarray]],
    tta: str,
    logit_adjustment: float | str | None,
    batch_size: int,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Probabilities and labels of the test split, and notes for the report.

    `images_of(split)` gives the uint8 images and labels of "test", and of "val" when the logit
    adjustment's tau is chosen there (auto); `model.class_counts` must be known for any adjustment.
    """

    def predict(split: str) -> tuple[np.ndarray, np.ndarray]:
        images, labels = images_of(split)
        return predict_probs(model, images, batch_size, tta, device), labels

    probs, labels = predict("test")
    notes: dict = {"tta": tta}
    if logit_adjustment is not None:
        tau, notes["logit_adjustment"] = resolve_tau(logit_adjustment, model.class_counts, lambda: predict("val"))
        probs = adjust(probs, model.class_counts, tau)
    return probs, labels, notes
