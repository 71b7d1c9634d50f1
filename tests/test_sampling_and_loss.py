"""Oversampling balances classes; class weights are 1/count; metrics mean what their names say."""

import numpy as np
import pytest
import torch

from skin_lightning.data.layouts import IMAGE_SUFFIXES
from skin_lightning.data.sampling import oversampler
from skin_lightning.model.losses import cross_entropy, weighted_cross_entropy
from skin_lightning.model.metrics import named_scalars, stage_metrics
from skin_lightning.model.schedules import cosine_factor


def drawn_class_shares(labels: list[int], num_classes: int, exponent: float, seed: int = 0) -> np.ndarray:
    drawn = np.asarray(labels)[list(oversampler(labels, num_classes, exponent, seed))]
    return np.bincount(drawn, minlength=num_classes) / len(drawn)


def test_oversampler_is_near_uniform_on_the_real_class_counts(real_train):
    folders = sorted(p for p in real_train.iterdir() if p.is_dir())
    labels = []
    for k, folder in enumerate(folders):
        labels += [k] * sum(1 for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    assert len(labels) == 24499
    natural = np.bincount(labels) / len(labels)
    shares = drawn_class_shares(labels, len(folders), exponent=1.0)
    assert natural.max() > 0.5  # NV dominates the real data
    assert np.abs(shares - 1 / len(folders)).max() < 0.01  # 24,499 draws: sd of a share is about 0.002
    assert len(list(oversampler(labels, len(folders), 1.0, 0))) == len(labels)


def test_oversampler_exponent_and_seed():
    labels = [0] * 900 + [1] * 100
    uniform = drawn_class_shares(labels * 20, 2, exponent=1.0)
    root = drawn_class_shares(labels * 20, 2, exponent=0.5)
    plain = drawn_class_shares(labels * 20, 2, exponent=0.0)
    assert abs(uniform[1] - 0.5) < 0.02
    assert abs(root[1] - 0.25) < 0.02  # sqrt weights: 100*sqrt(1/100) vs 900*sqrt(1/900) -> 1:3
    assert abs(plain[1] - 0.1) < 0.02
    assert list(oversampler(labels, 2, 1.0, 3)) == list(oversampler(labels, 2, 1.0, 3))


def test_class_weights_are_inverse_counts():
    loss = weighted_cross_entropy([735, 3223, 139], weight_exponent=1.0)
    assert torch.allclose(loss.weight, torch.tensor([1 / 735, 1 / 3223, 1 / 139]))
    assert cross_entropy([735, 3223, 139]).weight is None


def test_balanced_accuracy_is_mean_per_class_recall():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = torch.tensor([0, 0, 0, 1, 1, 0, 2, 2])
    probs = torch.nn.functional.one_hot(predicted, 3).float()
    metrics = stage_metrics(3)
    metrics.update(probs, labels)
    scalars = named_scalars(metrics.compute(), ["A", "B", "C"])
    assert scalars["accuracy"] == pytest.approx(6 / 8)
    assert scalars["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)
    assert scalars["recall/A"] == pytest.approx(0.75) and scalars["precision/A"] == pytest.approx(0.75)
    assert scalars["f1/B"] == pytest.approx(0.5)


def test_warmup_then_cosine():
    factor = cosine_factor(total_steps=100, warmup_steps=10)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5) and factor(100) == pytest.approx(0.0)
