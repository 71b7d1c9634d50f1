"""Checks of a composed config that Hydra's own type checks cannot make, run before any data is read."""

import inspect

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from skin_lightning.data.layouts import existing_root
from skin_lightning.errors import UserError, did_you_mean
from skin_lightning.errors import require as _require
from skin_lightning.model.networks import make_network, network_config
from skin_lightning.parts import build, check_settings

# lightning.Trainer arguments that train.py passes itself
TRAINER_SET_BY_TRAIN = ("callbacks", "logger", "plugins")

# Choices of single settings, which are not config groups.
SETTING_CHOICES = {
    "data.cache": ("memory", "disk", "none"),
    "data.on_bad_image": ("error", "skip"),
    "data.duplicates": ("group", "ignore"),
    "data.label_conflicts": ("drop", "keep"),
    "data.on_device": ("auto", True, False),
    "model.fast_step": ("auto", True, False),
}


def check_parts(cfg: DictConfig) -> None:
    """The swappable parts, built on stand-in data (two classes, one parameter) so that their own checks of
    their settings run before any image is read; the network's settings are checked against its builder."""
    part = {key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("loss", "sampler", "optim", "model")}
    build(part["loss"], "loss", class_counts=[1, 1])
    build(part["sampler"], "sampler", labels=[0, 1], num_classes=2, seed=0)
    optimizer = build(part["optim"], "optim", skip=("scheduler",), params=[torch.zeros(1, requires_grad=True)])
    build(part["optim"]["scheduler"], "optim.scheduler", optimizer=optimizer, total_steps=10)
    check_settings(network_config(part["model"]), "model")
    for group in ("callbacks", "logger"):
        for name, node in cfg[group].items():
            check_settings(node, f"{group}.{name}")
    check_trainer(cfg.trainer)


def check_trainer(trainer: DictConfig) -> None:
    """Every trainer key is an argument of lightning.Trainer: a misspelt one stops here, not in Trainer(...)
    after the data is decoded and audited."""
    accepted = [name for name in inspect.signature(L.Trainer.__init__).parameters if name != "self"]
    for name in trainer:
        if name in TRAINER_SET_BY_TRAIN:
            raise UserError(f"trainer.{name} is set by the run itself: remove it (add callbacks under callbacks.NAME)")
        if name not in accepted:
            raise UserError(f"trainer.{name} is not an argument of lightning.Trainer{did_you_mean(name, accepted)}")


def check_inputs(cfg: DictConfig) -> None:
    """What a run reads before its images, cheapest first: data.root (the demo's is written later), then the
    network built once with its weights (ImageNet's, downloaded, or a file), so that a mistyped folder, a machine
    without internet or a bad weights file stops the run before any image is decoded."""
    if cfg.data.layout != "demo":
        existing_root(cfg.data.root)
    if cfg.model.weights not in ("none", None):
        make_network(OmegaConf.to_container(cfg.model, resolve=True), num_classes=2)


def check_config(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg.data, "root"):
        raise UserError(
            "data.root is not set: pass data.root=/path/to/ISIC84by84 (a folder with Train/<CLASS>/ and "
            "Test/<CLASS>/), or try the pipeline offline with experiment=demo"
        )
    for key, allowed in SETTING_CHOICES.items():
        value = OmegaConf.select(cfg, key)
        shown = (str(choice).lower() if isinstance(choice, bool) else choice for choice in allowed)
        _require(value in allowed, key, value, "one of " + ", ".join(shown))
    data = cfg.data
    _require(0 <= data.val_fraction < 1, "data.val_fraction", data.val_fraction, "a number in [0, 1)")
    if data.fold is not None:
        _require(isinstance(data.folds, int) and data.folds >= 2, "data.folds", data.folds, "a whole number >= 2")
        _require(
            isinstance(data.fold, int) and 0 <= data.fold < data.folds,
            "data.fold",
            data.fold,
            f"a whole number from 0 to {data.folds - 1} (data.folds - 1), or null for data.val_fraction",
        )
    _require(0 < data.test_fraction < 1, "data.test_fraction", data.test_fraction, "a number in (0, 1)")
    per_class = data.test_per_class
    _require(
        per_class is None or (isinstance(per_class, int) and per_class >= 1),
        "data.test_per_class",
        per_class,
        "null or a whole number >= 1",
    )
    _require(isinstance(data.split_seed, int), "data.split_seed", data.split_seed, "a whole number")
    _require(
        isinstance(data.image_size, int) and data.image_size >= 16,
        "data.image_size",
        data.image_size,
        "a whole number >= 16",
    )
    _require(
        isinstance(data.batch_size, int) and data.batch_size >= 1,
        "data.batch_size",
        data.batch_size,
        "a whole number >= 1",
    )
    workers = data.num_workers
    _require(
        workers == "auto" or (isinstance(workers, int) and workers >= 0),
        "data.num_workers",
        workers,
        "auto or a whole number >= 0",
    )
    check_parts(cfg)
