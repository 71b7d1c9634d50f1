"""Learning-rate schedules, each a config choice (`optim/scheduler=...`) stepped once per optimiser step.

Each takes the optimiser and the run's number of optimiser steps at build time and returns a torch
scheduler, or None for a constant rate.
"""

import math
from collections.abc import Callable

import torch

from skin_lightning.errors import require


def cosine_factor(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.05
) -> torch.optim.lr_scheduler.LambdaLR:
    require(0 <= warmup_fraction < 1, "warmup_fraction", warmup_fraction, "a number in [0, 1)")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_factor(total_steps, int(warmup_fraction * total_steps))
    )


def constant(optimizer: torch.optim.Optimizer, total_steps: int) -> None:
    """No scheduler: the optimiser keeps its configured rate."""
    return None
