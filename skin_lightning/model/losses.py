"""Losses for a long-tailed training split, each a config choice (`loss=...`) whose `_target_` is one of the
functions below; they take the training split's class counts at build time (`_partial_: true`).

Every loss is one `LongTailLoss`: cross-entropy on `scale * (logits - margin_y) + offset`, optionally
focal-modulated and class-weighted. Its class statistics are buffers computed once from the training
split's counts, and its forward pass has no host syncs and no branches on tensor values, so a training
step captured in one CUDA graph stays valid. Deferred re-weighting changes the weight buffer in place
at the start of an epoch (`set_epoch`), which a captured graph sees.

Weighted losses are weighted means, sum w_y * l / sum w_y, as `F.cross_entropy(weight=...)` computes
them: the scale of the weights never matters, and `weighted_ce` keeps the numbers it always had.
"""


import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skin_lightning.errors import UserError, require


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
        require(0 <= label_smoothing < 1, "label_smoothing", label_smoothing, "a number in [0, 1)")
        require(
            isinstance(defer_epochs, int) and defer_epochs >= 0, "defer_epochs", defer_epochs, "a whole number >= 0"
        )
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
    require(0 <= beta < 1, "beta", beta, "a number in [0, 1)")
    return (1 - beta) / (1 - beta**counts)


def _counts(class_counts: list[int]) -> np.ndarray:
    """Class statistics need every class: a class without training images has no prior or weight."""
    counts = np.asarray(class_counts, dtype=np.float64)
    if (counts == 0).any():
        raise UserError("this loss needs every class in the training split; a class has no training images")
    return counts


def _at_least_zero(name: str, value: float) -> float:
    require(value >= 0, name, value, "a number >= 0")
    return float(value)


def cross_entropy(class_counts: list[int], label_smoothing: float = 0.0) -> LongTailLoss:
    return LongTailLoss(len(class_counts), label_smoothing=label_smoothing)


def weighted_cross_entropy(
    class_counts: list[int], label_smoothing: float = 0.0, weight_exponent: float = 1.0, defer_epochs: int = 0
) -> LongTailLoss:
    """Class weights count^-weight_exponent: 1/count (v2, v3 of the course project) with the exponent 1."""
    weight = _counts(class_counts) ** -float(weight_exponent)
    return LongTailLoss(len(class_counts), weight, label_smoothing=label_smoothing, defer_epochs=defer_epochs)


def _focal(
    class_counts: list[int], weight: np.ndarray | None, gamma: float, label_smoothing: float, defer_epochs: int
) -> LongTailLoss:
    require(gamma >= 0, "gamma", gamma, "a number >= 0 (0: cross-entropy)")
    return LongTailLoss(
        len(class_counts), weight, gamma=gamma, label_smoothing=label_smoothing, defer_epochs=defer_epochs
    )


def focal(
    class_counts: list[int],
    label_smoothing: float = 0.0,
    gamma: float = 2.0,
    alpha_exponent: float = 0.0,
    defer_epochs: int = 0,
) -> LongTailLoss:
    """Lin et al. 2017: -alpha_y (1 - p_y)^gamma log p_y, alpha_y = count^-alpha_exponent (0: no alpha)."""
    exponent = _at_least_zero("alpha_exponent", alpha_exponent)
    alpha = _counts(class_counts) ** -exponent if exponent else None
    return _focal(class_counts, alpha, gamma, label_smoothing, defer_epochs)


def class_balanced(
    class_counts: list[int],
    label_smoothing: float = 0.0,
    beta: float = 0.999,
    gamma: float = 2.0,
    defer_epochs: int = 0,
) -> LongTailLoss:
    """Cui et al. 2019: weight (1 - beta) / (1 - beta^n_y) on cross-entropy (gamma 0) or focal loss."""
    weight = class_balanced_weights(_counts(class_counts), beta)
    return _focal(class_counts, weight, gamma, label_smoothing, defer_epochs)


def _log_prior(class_counts: list[int]) -> np.ndarray:
    counts = _counts(class_counts)
    return np.log(counts / counts.sum())


def balanced_softmax(class_counts: list[int], label_smoothing: float = 0.0) -> LongTailLoss:
    """Ren et al. 2020: cross-entropy of softmax(logits + log prior)."""
    return LongTailLoss(len(class_counts), offset=_log_prior(class_counts), label_smoothing=label_smoothing)


def logit_adjusted(class_counts: list[int], label_smoothing: float = 0.0, tau: float = 1.0) -> LongTailLoss:
    """Menon et al. 2021: cross-entropy of softmax(logits + tau * log prior) while training, plain logits at test."""
    offset = _at_least_zero("tau", tau) * _log_prior(class_counts)
    return LongTailLoss(len(class_counts), offset=offset, label_smoothing=label_smoothing)


def ldam(
    class_counts: list[int],
    label_smoothing: float = 0.0,
    max_margin: float = 0.5,
    scale: float = 1.0,
    beta: float = 0.9999,
    defer_epochs: int = 16,
) -> LongTailLoss:
    """Cao et al. 2019: cross-entropy of scale * (logits - margin_y), margin_y proportional to n_y^-1/4, the
    largest max_margin; deferred re-weighting (DRW) with class-balanced weights from epoch defer_epochs."""
    require(scale > 0, "scale", scale, "a positive number")
    counts = _counts(class_counts)
    margin = counts**-0.25
    margin *= _at_least_zero("max_margin", max_margin) / margin.max()
    weight = class_balanced_weights(counts, beta)
    return LongTailLoss(
        len(counts),
        weight,
        margin=margin,
        scale=scale,
        label_smoothing=label_smoothing,
        defer_epochs=defer_epochs,
    )
