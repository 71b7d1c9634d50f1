"""Per-epoch seeds: an epoch's sampling and augmentation depend on (seed, epoch, rank) alone."""

import numpy as np


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A well-mixed 32-bit seed for one epoch of one rank (seed + epoch would overlap across runs)."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])
