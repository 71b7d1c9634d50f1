"""Everything about images: layout, validation split, decoding, sampling and batch augmentation."""

import logging
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset

from skin_lightning.data.augment import build_augmentation, to_model_input
from skin_lightning.data.cache import decoded_store
from skin_lightning.data.demo import make_demo_dataset
from skin_lightning.data.images import decode_image, decode_into, default_workers, report_bad_images
from skin_lightning.data.layouts import Layout, Samples, read_folder_layout, read_isic2019_layout
from skin_lightning.data.sampling import DeviceBatches, EpochSampler
from skin_lightning.data.split import fold_split, stratified_split, write_split_csv
from skin_lightning.errors import UserError
from skin_lightning.parts import build

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
        self._on_device: torch.Tensor | bool | None = None

    def prepare_data(self) -> None:
        if self.cfg["layout"] == "demo":
            make_demo_dataset(self.root, seed=0)

    def read_layout(self) -> Layout:
        if self.cfg["layout"] in ("folder", "demo"):
            return read_folder_layout(self.root)
        if self.cfg["layout"] == "isic2019":
            return read_isic2019_layout(self.root)
        raise UserError(f"data.layout={self.cfg['layout']} is invalid: expected folder, demo or isic2019")

    def read_splits(self) -> dict[str, Samples]:
        """Train, val and test samples before decoding; evaluation reads the test split from here alone."""
        layout = self.read_layout()
        self.classes = layout.classes
        train, test = layout.train, layout.test
        if test is None:
            kept, held = stratified_split(train.labels, self.cfg["test_fraction"], self.seed)
            train, test = train.subset(kept), train.subset(held)
            log.info(
                "held out %d images as the test split (data.test_fraction=%s, seed %d)",
                len(test),
                self.cfg["test_fraction"],
                self.seed,
            )
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
            stored = (None,) if store is None else (store.images, store.rows(split.paths))
            self.splits[name] = ImageSet(split, size, *stored)
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

    def _device_images(self) -> torch.Tensor | None:
        """The whole decoded store copied once to the training device, or None to load through DataLoaders.

        data.on_device=auto copies it when training on a CUDA device and the store takes at most a
        quarter of the device's free memory (ISIC84by84: 0.5 GB), leaving the rest to the model.
        """
        if self._on_device is not None:
            return self._on_device if isinstance(self._on_device, torch.Tensor) else None
        setting = self.cfg.get("on_device", False)
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        images = self.splits["train"].images
        if images is None:
            if setting is True:
                raise UserError("data.on_device=true needs decoded images: set data.cache=memory or disk")
            setting = False
        if setting == "auto":
            setting = device.type == "cuda" and images.nbytes <= torch.cuda.mem_get_info(device)[0] / 4
            log.info(
                "data.on_device=auto: %s (%.2f GB of decoded images, %s)",
                "keeping the images in device memory" if setting else "loading through DataLoaders",
                images.nbytes / 1e9,
                device,
            )
        self._on_device = torch.as_tensor(np.ascontiguousarray(images)).to(device) if setting else False
        return self._device_images()

    def _loader(self, split: str, sampler: EpochSampler | None = None, drop_last: bool = False):
        device_images = self._device_images()
        if device_images is not None:
            data = self.splits[split]
            return DeviceBatches(
                device_images,
                torch.from_numpy(data.rows).to(device_images.device),
                torch.from_numpy(data.labels).to(device_images.device),
                self.cfg["batch_size"],
                sampler,
                drop_last,
                self.trainer.global_rank if self.trainer is not None else 0,
                self.trainer.world_size if self.trainer is not None else 1,
            )
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
            sampler=sampler,
            drop_last=drop_last,
        )

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        train = self.splits["train"]
        drop_last = len(train) > self.cfg["batch_size"]  # a last batch of one image breaks BatchNorm
        sampler = build(
            self.sampler_cfg, "sampler", labels=train.samples.labels, num_classes=len(self.classes), seed=self.seed
        )
        return self._loader("train", sampler, drop_last)

    def val_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader("test")

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels, indices = batch
        training = self.trainer is not None and self.trainer.training
        return to_model_input(images, self.augmentation if training else None), labels, indices
