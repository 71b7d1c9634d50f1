"""Everything about images: layout, validation split, decoding, sampling and batch augmentation."""

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch.utils.data import DataLoader, Dataset

from skin_lightning.data.audit import Audit, cached_audit
from skin_lightning.data.augment import build_augmentation, to_model_input
from skin_lightning.data.cache import Store, decoded_store
from skin_lightning.data.copies import AUDIT_SIZE
from skin_lightning.data.demo import make_demo_dataset
from skin_lightning.data.images import decode_image, decode_into, default_workers, report_bad_images, shared_store
from skin_lightning.data.layouts import Layout, Samples, read_folder_layout, read_isic2019_layout
from skin_lightning.data.sampling import DeviceBatches, EpochSampler
from skin_lightning.data.split import carve_test_split, fold_split, stratified_split, write_split_csv
from skin_lightning.errors import UserError
from skin_lightning.parts import build

log = logging.getLogger(__name__)
# data.num_workers=auto loads decoded images without workers: a batch is one index into the store in memory, which
# worker processes would only copy. Lightning, which cannot know that, advises more workers for every loader.
warnings.filterwarnings("ignore", message=r"The '\w+' does not have many workers", category=PossibleUserWarning)


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
        self,
        data: Mapping,
        augment: Mapping | None,
        sampler: Mapping | None,
        seed: int,
        output_dir: str | None = None,
    ):
        """`augment` and `sampler` may be None where only the splits are read (evaluation). `seed` seeds training
        (sampling, augmentation); the splits are drawn with data.split_seed."""
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
        self._layout: Layout | None = None
        self._store: Store | None = None
        self._audit: Audit | None = None
        self.dropped: Samples = Samples([], [])

    def prepare_data(self) -> None:
        if self.cfg["layout"] == "demo":
            make_demo_dataset(self.root, seed=0)

    def read_layout(self) -> Layout:
        if self._layout is None:
            if self.cfg["layout"] in ("folder", "demo"):
                self._layout = read_folder_layout(self.root)
            elif self.cfg["layout"] == "isic2019":
                self._layout = read_isic2019_layout(self.root)
            else:
                raise UserError(f"data.layout={self.cfg['layout']} is invalid: expected folder, demo or isic2019")
        return self._layout

    def _all_paths(self) -> list[Path]:
        layout = self.read_layout()
        return layout.train.paths + (layout.test.paths if layout.test is not None else [])

    def decoded(self) -> Store:
        """Every image of the layout decoded once (with data.cache=none, only at the audit's size, for the audit)."""
        if self._store is None:
            cache = self.cfg["cache"]
            size = self.cfg["image_size"] if cache != "none" else AUDIT_SIZE
            self._store = decoded_store(
                self._all_paths(), size, "memory" if cache == "none" else cache, self.cfg["cache_dir"]
            )
        return self._store

    def audit(self) -> Audit:
        """Clusters of copies over every image of the layout, Train and Test together (see data/audit.py).

        Its thresholds hold from AUDIT_SIZE px up: a store of smaller images is decoded again at that size.
        """
        if self._audit is None:
            store = self.decoded()

            def images() -> np.ndarray:
                if store.images.shape[1] >= AUDIT_SIZE:
                    return store.images
                again = shared_store(len(store.paths), AUDIT_SIZE)
                decode_into(store.paths, AUDIT_SIZE, again, desc="decoding for the audit")
                return again

            cache_dir = self.cfg["cache_dir"] if self.cfg["cache"] == "disk" else None
            self._audit = cached_audit(store.paths, images, max(store.images.shape[1], AUDIT_SIZE), cache_dir)
        return self._audit

    def _groups(self, samples: Samples) -> np.ndarray | None:
        """Split units of `samples` with data.duplicates=group (copies move together), else None."""
        return None if self.cfg["duplicates"] == "ignore" else self.audit().groups(samples.paths)

    def _drop_conflicts(self, train: Samples) -> Samples:
        """data.label_conflicts=drop: leave out the training images of clusters whose copies carry several labels
        (in Train or Test); they are listed in the run folder."""
        if self.cfg["label_conflicts"] == "keep":
            return train
        layout = self.read_layout()
        labels = layout.train.labels + (layout.test.labels if layout.test is not None else [])
        train, self.dropped = self.audit().without_conflicts(train, self._all_paths(), labels)
        if len(self.dropped):
            log.warning("left out %d images with copies under another label: label_conflicts.csv", len(self.dropped))
        return train

    def read_splits(self) -> dict[str, Samples]:
        """Train, val and test samples, drawn with data.split_seed; evaluation reads the test split from here alone."""
        layout = self.read_layout()
        self.classes = layout.classes
        train, test = layout.train, layout.test
        seed, per_class = self.cfg["split_seed"], self.cfg["test_per_class"]
        if test is None:
            fraction = self.cfg["test_fraction"]
            kept, held = carve_test_split(train.labels, self.classes, fraction, per_class, seed, self._groups(train))
            train, test = train.subset(kept), train.subset(held)
            how = f"data.test_per_class={per_class}" if per_class is not None else f"data.test_fraction={fraction}"
            log.info("held out %d images of Train as the test split (%s, data.split_seed=%d)", len(test), how, seed)
        if self.cfg["duplicates"] == "group":
            train = self._drop_conflicts(train)
        groups = self._groups(train)
        if self.cfg["fold"] is None:
            kept, held = stratified_split(train.labels, self.cfg["val_fraction"], seed, groups)
        else:
            kept, held = fold_split(train.labels, self.cfg["folds"], self.cfg["fold"], seed, groups)
        return {"train": train.subset(kept), "val": train.subset(held), "test": test}

    def test_twins(self) -> tuple[list[str], int]:
        """Each test image's copy in the train or val split (or ""), and the test images whose only copies were
        left out as label conflicts (Audit.training_twins)."""
        training = self.samples("train").paths + self.samples("val").paths
        return self.audit().training_twins(self.samples("test").paths, training, self.dropped.paths)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        samples = self._decode(self.read_splits())
        if self.output_dir is not None and rank_zero_only.rank == 0:
            seed = self.cfg["split_seed"]
            write_split_csv(self.output_dir / "split.csv", samples, self.classes, seed)
            if len(self.dropped):
                write_split_csv(self.output_dir / "label_conflicts.csv", {"left out": self.dropped}, self.classes, seed)
        counts = {name: len(split) for name, split in samples.items()}
        log.info("classes %s; images %s", ", ".join(self.classes), counts)

    def _decode(self, samples: dict[str, Samples]) -> dict[str, Samples]:
        size = self.cfg["image_size"]
        paths = [path for split in samples.values() for path in split.paths]
        if self.cfg["cache"] == "none" and self._store is None:
            # nothing is kept, but every file is decoded once, so a bad one stops the run before training
            store, bad = None, decode_into(paths, size, None, desc="checking images")
        else:
            store = self.decoded() if self.cfg["cache"] != "none" else None
            bad = self.decoded().bad
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
        setting = self.cfg["on_device"]
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
