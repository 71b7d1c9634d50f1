"""The batched presets draw their parameters per image from the course scripts' ranges; evaluation is not augmented."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from skin_lightning.data.augment import build_augmentation, to_model_input
from skin_lightning.data.datamodule import SkinDataModule

from conftest import FAST, compose_train

N = 2000


def preset(name: str, **changes):
    cfg = dict(compose_train([f"augment={name}"]).augment)
    cfg.update(changes)
    return cfg


def step(augmentation, kind: str):
    return next(module for module in augmentation if type(module).__name__ == kind)


def test_flips_happen_half_the_time_independently():
    torch.manual_seed(0)
    images = torch.rand(N, 3, 4, 4)
    out = build_augmentation(preset("selective", rotation=0))(images)
    same = lambda a, b: (a - b).abs().flatten(1).amax(1) < 1e-6  # noqa: E731
    horizontal, vertical = same(out, images.flip(-1)), same(out, images.flip(-2))
    both = same(out, images.flip(-1, -2))
    untouched = same(out, images)
    assert (horizontal | vertical | both | untouched).all()
    for observed in (horizontal | both, vertical | both):
        assert abs(observed.float().mean().item() - 0.5) < 0.04
    assert abs(both.float().mean().item() - 0.25) < 0.03


def test_rotation_angles_are_uniform_in_range_and_drive_the_output():
    torch.manual_seed(0)
    augmentation = build_augmentation(preset("selective", hflip=0.0, vflip=0.0))
    out = augmentation(torch.ones(N, 3, 16, 16))
    angles = step(augmentation, "RandomRotateFlip").params["degrees"]
    assert len(angles) == N and angles.abs().max() <= 30
    assert angles.min() < -28 and angles.max() > 28
    assert abs(angles.mean().item()) < 1.5 and abs(angles.std().item() - 30 / 3**0.5) < 1.0
    black_corners = (out == 0).float().flatten(1).mean(1)
    assert np.corrcoef(angles.abs().numpy(), black_corners.numpy())[0, 1] > 0.9


def test_heavy_preset_draws_jitter_blur_and_sharpness_from_the_seed_ranges():
    torch.manual_seed(0)
    augmentation = build_augmentation(preset("heavy"))
    augmentation(torch.rand(N, 3, 12, 12))
    jitter = step(augmentation, "ColorJitter")._params
    ranges = [("brightness", 0.8, 1.2), ("contrast", 0.8, 1.2), ("saturation", 0.8, 1.2), ("hue", -0.1, 0.1)]
    for key, low, high in ranges:
        factors = jitter[f"{key}_factor"]
        assert factors.min() >= low and factors.max() <= high, key
        assert factors.min() < low + 0.01 and factors.max() > high - 0.01, key
    sigma = step(augmentation, "RandomGaussianBlur")._params["sigma"]
    assert sigma.min() >= 0.1 and sigma.max() <= 5.0 and sigma.std() > 1.0
    sharpened = step(augmentation, "RandomSharpness")._params["batch_prob"].float().mean().item()
    assert abs(sharpened - 0.5) < 0.04


@pytest.mark.parametrize("name", ["none", "selective", "heavy"])
def test_every_preset_keeps_shape_range_and_dtype(name):
    images = torch.rand(8, 3, 20, 20)
    out = build_augmentation(preset(name))(images)
    assert out.shape == images.shape and out.dtype == torch.float32
    assert out.min() >= -1e-5 and out.max() <= 1 + 1e-5


def test_only_training_batches_are_augmented(demo_root):
    cfg = compose_train(["experiment=demo", f"data.root={demo_root}", *FAST])
    datamodule = SkinDataModule(cfg.data, cfg.augment, cfg.sampler, cfg.seed)
    images = torch.randint(0, 256, (16, 20, 20, 3), dtype=torch.uint8)
    batch = (images, torch.zeros(16, dtype=torch.long), torch.arange(16))
    plain = to_model_input(images)
    assert plain.is_contiguous(memory_format=torch.channels_last)
    torch.manual_seed(0)
    for training in (False, True):
        datamodule.trainer = SimpleNamespace(training=training)
        out, labels, indices = datamodule.on_after_batch_transfer(batch, 0)
        assert torch.equal(labels, batch[1]) and torch.equal(indices, batch[2])
        assert torch.equal(out, plain) != training
