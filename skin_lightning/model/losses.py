"""Losses for a long-tailed training split, each a config choice (`loss=...`).

Every loss is one `LongTailLoss`: cross-entropy on `scale * (logits - margin_y) + offset`, optionally
focal-modulated and class-weighted. Its class statistics are buffers computed once from the training
split's counts, and its forward pass has no host syncs and no branches on tensor values, so a training
step captured in one CUDA graph stays valid. Deferred re-weighting changes the weight buffer in place
at the start of an epoch (`set_epoch`), which a captured graph sees.

Weighted losses are weighted means, sum w_y * l / sum w_y, as `F.cross_entropy(weight=...)` computes
them: the scale of the weights never matters, and `weighted_ce` keeps the numbers it always had.
"""

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skin_lightning.errors import UserError

LOSSES = ("ce", "weighted_ce", "focal", "class_balanced", "balanced_softmax", "logit_adjusted", "ldam")


def _float32(values: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float32)


class LongTailLoss(nn.Module):
    """Cross-entropy with optional per-class weight, logit offset, target margin and focal factor."""

    def __init__(
        self,
        num_classes: int,
        weight: np.ndarray | None = None,
        offset: np.ndarray | None = None,
        margin: np.ndarray | None = None,
        scale: float = 1.0,
        gamma: float = 0.0,
        label_smoothing: float = 0.0,
        defer_epochs: int = 0,
    ):
        """`weight` is applied from epoch `defer_epochs` on; before, every class weighs 1."""
        super().__init__()
        self.scale, self.gamma, self.label_smoothing, self.defer_epochs = (
            float(scale),
            float(gamma),
            float(label_smoothing),
            int(defer_epochs),
        )
        zeros = np.zeros(num_classes)
        # not persistent: recomputed from the class counts in the hyperparameters, so any loss's checkpoint loads
        self.register_buffer("offset", _float32(zeros if offset is None else offset), persistent=False)
        self.register_buffer("margin", _float32(zeros if margin is None else margin), persistent=False)
        self.register_buffer("class_weight", None if weight is None else _float32(weight), persistent=False)
        self.register_buffer("weight", None if weight is None else self.class_weight.clone(), persistent=False)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Deferred re-weighting (Cao et al. 2019): ones before `defer_epochs`, the class weights from then on."""
        if self.weight is not None:
            self.weight.copy_(self.class_weight if epoch >= self.defer_epochs else torch.ones_like(self.class_weight))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target = labels[:, None] == torch.arange(logits.shape[1], device=logits.device)
        adjusted = self.scale * (logits - target * self.margin) + self.offset
        if self.gamma == 0:
            return F.cross_entropy(adjusted, labels, weight=self.weight, label_smoothing=self.label_smoothing)
        per_image = F.cross_entropy(adjusted, labels, reduction="none", label_smoothing=self.label_smoothing)
        p_true = adjusted.softmax(dim=1).gather(1, labels[:, None]).squeeze(1)
        # kept off 0: the gradient of x^gamma at x = 0 is infinite for gamma < 1
        focal = (1 - p_true).clamp(min=1e-12) ** self.gamma * per_image
        if self.weight is None:
            return focal.mean()
        weights = self.weight[labels]
        return (weights * focal).sum() / weights.sum()


def class_balanced_weights(counts: np.ndarray, beta: float) -> np.ndarray:
    """Inverse effective number of samples, (1 - beta) / (1 - beta^n): 1 at beta=0, 1/n as beta -> 1."""
    return (1 - beta) / (1 - beta**counts)


def build_loss(loss: Mapping, class_counts: list[int]) -> LongTailLoss:
    """The configured loss, its class statistics from the training split's counts."""
    name = loss["name"]
    if name not in LOSSES:
        raise UserError(f"loss.name={name} is not one of {', '.join(LOSSES)}")
    counts = np.asarray(class_counts, dtype=np.float64)
    if name != "ce" and (counts == 0).any():
        raise UserError(f"loss={name} needs every class in the training split; a class has no training images")
    common = {"num_classes": len(counts), "label_smoothing": loss["label_smoothing"]}
    log_prior = np.log(counts / counts.sum()) if name != "ce" else None
    if name == "ce":
        return LongTailLoss(**common)
    if name == "weighted_ce":
        # count^-exponent: 1/count (v2, v3 of the course project) with the default exponent 1
        return LongTailLoss(
            **common, weight=counts ** -float(loss["weight_exponent"]), defer_epochs=loss["defer_epochs"]
        )
    if name == "focal":
        # Lin et al. 2017: -alpha_y (1 - p_y)^gamma log p_y, alpha_y = count^-alpha_exponent (0: no alpha)
        alpha = counts ** -float(loss["alpha_exponent"]) if loss["alpha_exponent"] else None
        return LongTailLoss(**common, weight=alpha, gamma=loss["gamma"], defer_epochs=loss["defer_epochs"])
    if name == "class_balanced":
        # Cui et al. 2019: weight (1 - beta) / (1 - beta^n_y) on cross-entropy (gamma 0) or focal loss
        weight = class_balanced_weights(counts, loss["beta"])
        return LongTailLoss(**common, weight=weight, gamma=loss["gamma"], defer_epochs=loss["defer_epochs"])
    if name == "balanced_softmax":
        # Ren et al. 2020: cross-entropy of softmax(logits + log prior)
        return LongTailLoss(**common, offset=log_prior)
    if name == "logit_adjusted":
        # Menon et al. 2021: cross-entropy of softmax(logits + tau * log prior) while training, plain logits at test
        return LongTailLoss(**common, offset=float(loss["tau"]) * log_prior)
    # ldam, Cao et al. 2019: cross-entropy of scale * (logits - margin_y), margin_y proportional to n_y^-1/4,
    # the largest max_margin; deferred re-weighting (DRW) with class-balanced weights from epoch defer_epochs
    margin = counts**-0.25
    margin *= float(loss["max_margin"]) / margin.max()
    weight = class_balanced_weights(counts, loss["beta"])
    return LongTailLoss(**common, weight=weight, margin=margin, scale=loss["scale"], defer_epochs=loss["defer_epochs"])
