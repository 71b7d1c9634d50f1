"""Everything about images: layout, validation split, decoding, sampling and batch augmentation."""

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset, Sampler

from skin_lightning.augment import build_augmentation, to_model_input
from skin_lightning.callbacks import epoch_seed
from skin_lightning.demo import make_demo_dataset
from skin_lightning.cache import decoded_store
from skin_lightning.images import decode_image, decode_into, default_workers, report_bad_images
from skin_lightning.layouts import Layout, Samples, read_folder_layout, read_isic2019_layout
from skin_lightning.split import fold_split, stratified_split, write_split_csv

log = logging.getLogger(__name__)


class ImageSet(Dataset):
    """Returns whole batches of uint8 NHWC images, labels and sample indices.

    Implementing `__getitems__` lets a DataLoader fetch a batch with one fancy index into
    the decoded store (`images`, sample i in row `rows[i]`) instead of one Python call per image.
    """

    def __init__(self, samples: Samples, size: int, images: np.ndarray | None, rows: np.ndarray | None = None):
        self.samples = samples
        self.size = size
        self.images = images
        self.rows = rows
        self.labels = np.asarray(samples.labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index = np.asarray(indices)
        if self.images is not None:
            pixels = self.images[self.rows[index]]
        else:
            pixels = np.stack([decode_image(self.samples.paths[i], self.size) for i in index])
        return torch.from_numpy(pixels), torch.from_numpy(self.labels[index]), torch.from_numpy(index)

    def __getitem__(self, index: int):
        return self.__getitems__([index])


def keep_batch(batch):
    """The dataset already returns whole batches, so collation has nothing left to do."""
    return batch


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

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        if self.weights is None or self.epoch < self.defer_epochs:
            return iter(torch.randperm(self.size, generator=generator).tolist())
        return iter(torch.multinomial(self.weights, self.size, replacement=True, generator=generator).tolist())


def oversampler(labels: list[int], num_classes: int, exponent: float, seed: int, defer_epochs: int = 0) -> EpochSampler:
    """Draw each image with weight count(class)^-exponent: 1.0 balances classes, 0.5 half-way."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return EpochSampler(len(labels), seed, counts[np.asarray(labels)] ** -exponent, defer_epochs)


class SkinDataModule(L.LightningDataModule):
    def __init__(
        self, data: Mapping, augment: Mapping | None, sampler: Mapping | None, seed: int, output_dir: str | None = None
    ):
        """`augment` and `sampler` may be None where only the splits are read (evaluation)."""
        super().__init__()
        self.cfg = dict(data)
        self.sampler_cfg = dict(sampler or {})
        self.seed = seed
        self.output_dir = Path(output_dir) if output_dir else None
        self.augmentation = build_augmentation(augment) if augment else None
        self.root = Path(self.cfg["root"])
        self.classes: list[str] = []
        self.splits: dict[str, ImageSet] = {}

    def prepare_data(self) -> None:
        if self.cfg["layout"] == "demo":
            make_demo_dataset(self.root, seed=0)

    def read_layout(self) -> Layout:
        if self.cfg["layout"] in ("folder", "demo"):
            return read_folder_layout(self.root)
        if self.cfg["layout"] == "isic2019":
            return read_isic2019_layout(self.root)
        raise ValueError(f"unknown data.layout {self.cfg['layout']!r}")

    def read_splits(self) -> dict[str, Samples]:
        """Train, val and test samples before decoding; evaluation reads the test split from here alone."""
        layout = self.read_layout()
        self.classes = layout.classes
        train, test = layout.train, layout.test
        if test is None:
            kept, held = stratified_split(train.labels, self.cfg["test_fraction"], self.seed)
            train, test = train.subset(kept), train.subset(held)
            log.info("held out %d images as the test split (data.test_fraction=%s, seed %d)", len(test), self.cfg["test_fraction"], self.seed)
        if self.cfg["fold"] is None:
            kept, held = stratified_split(train.labels, self.cfg["val_fraction"], self.seed)
        else:
            kept, held = fold_split(train.labels, self.cfg["folds"], self.cfg["fold"], self.seed)
        return {"train": train.subset(kept), "val": train.subset(held), "test": test}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        samples = self._decode(self.read_splits())
        if self.output_dir is not None and rank_zero_only.rank == 0:
            write_split_csv(self.output_dir / "split.csv", samples, self.classes)
        counts = {name: len(split) for name, split in samples.items()}
        log.info("classes %s; images %s", ", ".join(self.classes), counts)

    def _decode(self, samples: dict[str, Samples]) -> dict[str, Samples]:
        size = self.cfg["image_size"]
        paths = [path for split in samples.values() for path in split.paths]
        if self.cfg["cache"] == "none":
            # nothing is kept, but every file is decoded once, so a bad one stops the run before training
            store, bad = None, decode_into(paths, size, None, desc="checking images")
        else:
            store = decoded_store(paths, size, self.cfg["cache"], self.cfg["cache_dir"])
            bad = store.bad
        unreadable = {error.path for error in bad}
        for name, split in samples.items():
            split = split.subset([i for i, path in enumerate(split.paths) if path not in unreadable])
            samples[name] = split
            self.splits[name] = ImageSet(split, size, None) if store is None else ImageSet(split, size, store.images, store.rows(split.paths))
        listing = (self.output_dir or Path(".")) / "bad_images.tsv" if rank_zero_only.rank == 0 else None
        report_bad_images(bad, self.cfg["on_bad_image"], listing)
        return samples

    @property
    def class_counts(self) -> list[int]:
        return np.bincount(self.splits["train"].labels, minlength=len(self.classes)).tolist()

    def samples(self, split: str) -> Samples:
        return self.splits[split].samples

    def _num_workers(self) -> int:
        workers = self.cfg["num_workers"]
        if workers == "auto":
            return default_workers() if self.cfg["cache"] == "none" else 0
        return int(workers)

    def _loader(self, split: str, **kwargs) -> DataLoader:
        workers = self._num_workers()
        return DataLoader(
            self.splits[split],
            batch_size=self.cfg["batch_size"],
            collate_fn=keep_batch,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            # the loader's own seed draw then leaves the global generator, which augmentation uses, alone
            generator=torch.Generator().manual_seed(self.seed),
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        train = self.splits["train"]
        drop_last = len(train) > self.cfg["batch_size"]  # a last batch of one image breaks BatchNorm
        if self.sampler_cfg["name"] == "oversample":
            sampler = oversampler(
                train.samples.labels, len(self.classes), self.sampler_cfg["exponent"], self.seed, self.sampler_cfg["defer_epochs"]
            )
        else:
            sampler = EpochSampler(len(train), self.seed)
        return self._loader("train", sampler=sampler, drop_last=drop_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels, indices = batch
        training = self.trainer is not None and self.trainer.training
        return to_model_input(images, self.augmentation if training else None), labels, indices
