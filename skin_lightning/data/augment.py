"""Batched augmentation on the training device, and the one normalisation every image goes through.

The presets reproduce the course scripts' per-image PIL transforms (same parameter ranges and
probabilities, parameters drawn per image) but run on a whole batch at once, on the GPU when there
is one, so augmentation never starves the model. Rotation and flips are one affine warp whose
parameters are drawn on the batch's device: no host round trip, so a GPU step never waits on the
CPU. Colour jitter, blur and sharpness (the heavy preset) come from kornia.
"""

import math
from collections.abc import Mapping
from functools import lru_cache

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RandomRotateFlip(nn.Module):
    """torchvision's RandomRotation (nearest neighbour, black corners, no expansion), then horizontal
    and vertical flips, each drawn per image and applied together as one resampling.

    Flips map pixel centres onto pixel centres, so flipping inside the warp gives the same pixels as
    flipping after it. The last draws stay in `params` (degrees, hflip, vflip) for inspection.
    """

    def __init__(self, degrees: float, hflip: float, vflip: float):
        super().__init__()
        self.degrees, self.hflip, self.vflip = float(degrees), float(hflip), float(vflip)
        self.params: dict[str, torch.Tensor] = {}

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        count, _, height, width = batch.shape
        draws = torch.rand(count, 3, device=batch.device)
        angle = (draws[:, 0] * 2 - 1) * self.degrees
        x_sign = 1 - 2 * (draws[:, 1] < self.hflip).to(batch.dtype)
        y_sign = 1 - 2 * (draws[:, 2] < self.vflip).to(batch.dtype)
        self.params = {"degrees": angle, "hflip": x_sign < 0, "vflip": y_sign < 0}
        radians = angle * (math.pi / 180)
        cos, sin = torch.cos(radians), torch.sin(radians)
        # output pixel -> input pixel in normalised coordinates; height/width keeps the rotation rigid in pixels
        theta = torch.stack(
            [
                torch.stack([cos * x_sign, -sin * y_sign * (height / width), torch.zeros_like(cos)], dim=1),
                torch.stack([sin * x_sign * (width / height), cos * y_sign, torch.zeros_like(cos)], dim=1),
            ],
            dim=1,
        )
        grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
        return F.grid_sample(batch, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def build_augmentation(cfg: Mapping) -> nn.Module:
    """An `augment` config group entry -> a module that maps float [0, 1] NCHW batches to the same."""
    steps: list[nn.Module] = []
    if cfg["rotation"] or cfg["hflip"] or cfg["vflip"]:
        steps.append(RandomRotateFlip(cfg["rotation"] or 0, cfg["hflip"] or 0, cfg["vflip"] or 0))
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


@lru_cache(maxsize=8)
def _normalisation(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Made once per device: building them per batch would copy from the host, and wait for the GPU, every step."""
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return mean, std


def to_model_input(images: torch.Tensor, augmentation: nn.Module | None = None) -> torch.Tensor:
    """uint8 NHWC batch -> normalised float NCHW in channels_last, optionally augmented first."""
    batch = images.permute(0, 3, 1, 2).float().div_(255)
    if augmentation is not None and len(augmentation):
        batch = augmentation(batch)
    mean, std = _normalisation(batch.device)
    return ((batch - mean) / std).contiguous(memory_format=torch.channels_last)


def preprocessing(image_size: int) -> dict:
    """What a checkpoint must carry so that evaluation, prediction and export feed the model as training did."""
    return {"image_size": int(image_size), "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
