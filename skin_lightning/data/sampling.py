"""Which images each training epoch sees, and batches gathered from images held in device memory."""

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from skin_lightning.data.seeding import epoch_seed
from skin_lightning.errors import require


class EpochSampler(Sampler[int]):
    """A new order (or, with weights, new draws with replacement) every epoch, from (seed, epoch) alone.

    torch's RandomSampler and WeightedRandomSampler carry their random state from epoch to epoch,
    so a run resumed from a checkpoint would see other images than one never stopped. Lightning
    calls set_epoch before every epoch, also through the DistributedSamplerWrapper that splits
    the sequence between ranks, so every rank computes the same sequence and takes its own share.
    Deferred re-sampling (Cao et al. 2019) shuffles before epoch `defer_epochs` and draws by weight
    from then on.
    """

    def __init__(self, size: int, seed: int, weights: np.ndarray | None = None, defer_epochs: int = 0):
        self.size = size
        self.seed = seed
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.defer_epochs = defer_epochs
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def draw(self) -> torch.Tensor:
        """This epoch's sequence of sample indices, as one CPU tensor."""
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        if self.weights is None or self.epoch < self.defer_epochs:
            return torch.randperm(self.size, generator=generator)
        return torch.multinomial(self.weights, self.size, replacement=True, generator=generator)

    def __iter__(self) -> Iterator[int]:
        return iter(self.draw().tolist())


class DeviceBatches:
    """Batches gathered from the decoded store held in the training device's memory: no DataLoader.

    Each epoch's sequence comes from the same EpochSampler the DataLoader path uses (so the same
    (seed, epoch) gives the same batches, and a resumed run is exact); it is drawn once per epoch,
    copied to the device in one transfer, and every batch is then one gather on the device, with no
    host work per image and no wait for the GPU. With several processes each rank takes every
    world_size-th index of the sequence, padded with its first indices to equal shares, as torch's
    DistributedSampler does. Lightning calls `sampler.set_epoch` before every epoch.
    """

    def __init__(
        self,
        images: torch.Tensor,
        rows: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        sampler: EpochSampler | None = None,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.images, self.rows, self.labels = images, rows, labels
        self.batch_size, self.sampler, self.drop_last = batch_size, sampler, drop_last
        self.rank, self.world_size = rank, world_size
        self.batch_sampler = None  # Lightning looks for it beside `sampler`, as on a DataLoader

    def _share(self) -> int:
        return -(-len(self.labels) // self.world_size)

    def __len__(self) -> int:
        if self.drop_last:
            return self._share() // self.batch_size
        return -(-self._share() // self.batch_size)

    def _order(self) -> torch.Tensor:
        order = torch.arange(len(self.labels)) if self.sampler is None else self.sampler.draw()
        if self.world_size > 1:
            order = torch.cat([order, order[: self._share() * self.world_size - len(order)]])[
                self.rank :: self.world_size
            ]
        return order.to(self.images.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        order = self._order()
        for batch in range(len(self)):
            indices = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            yield self.images[self.rows[indices]], self.labels[indices], indices


def shuffled(labels: list[int], seed: int) -> EpochSampler:
    return EpochSampler(len(labels), seed)


def oversampler(
    labels: list[int], num_classes: int, exponent: float, seed: int, defer_epochs: int = 0
) -> EpochSampler:
    """Draw each image with weight count(class)^-exponent: 1.0 balances classes, 0.5 half-way."""
    require(exponent >= 0, "exponent", exponent, "a number >= 0 (1 = inverse frequency)")
    require(
        isinstance(defer_epochs, int) and defer_epochs >= 0, "defer_epochs", defer_epochs, "a whole number >= 0"
    )
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return EpochSampler(len(labels), seed, counts[np.asarray(labels)] ** -exponent, defer_epochs)
