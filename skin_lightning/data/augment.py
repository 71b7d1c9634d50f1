"""Batched augmentation on the training device, and the one normalisation every image goes through.

The presets reproduce the course scripts' per-image PIL transforms (same parameter ranges and
probabilities, parameters drawn per image) but run on a whole uint8 batch at once with kornia,
on the GPU when there is one, so augmentation never starves the model.
"""

from collections.abc import Mapping

import kornia.augmentation as K
import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_augmentation(cfg: Mapping) -> nn.Module:
    """An `augment` config group entry -> a module that maps float [0, 1] NCHW batches to the same."""
    steps: list[nn.Module] = []
    if cfg["rotation"]:
        # torchvision's RandomRotation: nearest neighbour, black corners, no expansion
        steps.append(K.RandomRotation(degrees=float(cfg["rotation"]), resample="nearest", align_corners=False, p=1.0))
    if cfg["hflip"]:
        steps.append(K.RandomHorizontalFlip(p=float(cfg["hflip"])))
    if cfg["vflip"]:
        steps.append(K.RandomVerticalFlip(p=float(cfg["vflip"])))
    if cfg["color_jitter"]:
        jitter = cfg["color_jitter"]
        steps.append(
            K.ColorJitter(jitter["brightness"], jitter["contrast"], jitter["saturation"], jitter["hue"], p=1.0)
        )
    if cfg["blur"]:
        width, height = cfg["blur"]["kernel"]  # torchvision order; kornia wants (height, width)
        steps.append(K.RandomGaussianBlur((height, width), tuple(cfg["blur"]["sigma"]), border_type="reflect", p=1.0))
    if cfg["sharpness"]:
        factor = float(cfg["sharpness"]["factor"])
        steps.append(K.RandomSharpness(sharpness=(factor, factor), p=float(cfg["sharpness"]["p"])))
    return nn.Sequential(*steps)


def to_model_input(images: torch.Tensor, augmentation: nn.Module | None = None) -> torch.Tensor:
    """uint8 NHWC batch -> normalised float NCHW in channels_last, optionally augmented first."""
    batch = images.permute(0, 3, 1, 2).float().div_(255)
    if augmentation is not None and len(augmentation):
        batch = augmentation(batch)
    mean = torch.tensor(IMAGENET_MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=batch.device).view(1, 3, 1, 1)
    return ((batch - mean) / std).contiguous(memory_format=torch.channels_last)


def preprocessing(image_size: int) -> dict:
    """What a checkpoint must carry so that evaluation, prediction and export feed the model as training did."""
    return {"image_size": int(image_size), "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
