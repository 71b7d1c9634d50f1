"""Checks of a composed config that Hydra's own type checks cannot make, run before any data is read."""

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from skin_lightning.cli import CONFIG_DIR
from skin_lightning.errors import UserError

# Config groups whose choice a module branches on, and the key naming it: the group's folder in
# conf/ is its one registry (a new conf/loss/NAME.yaml with name: NAME is a new choice).
GROUP_KEYS = {"data": "layout", "sampler": "name", "loss": "name", "optim": "name"}
# Choices of single settings, which are not config groups.
SETTING_CHOICES = {
    "data.cache": ("memory", "disk", "none"),
    "data.on_bad_image": ("error", "skip"),
    "data.duplicates": ("group", "ignore"),
    "data.label_conflicts": ("drop", "keep"),
    "data.on_device": ("auto", True, False),
    "model.fast_step": ("auto", True, False),
    "optim.scheduler": ("none", "cosine"),
}


def group_choices(group: str) -> tuple[str, ...]:
    """The choices of a config group: the names of its files in the package's conf/ folder."""
    return tuple(sorted(path.stem for path in (Path(CONFIG_DIR) / group).glob("*.yaml")))


def check_choice(cfg: DictConfig, group: str) -> None:
    key = f"{group}.{GROUP_KEYS[group]}"
    value, allowed = OmegaConf.select(cfg, key), group_choices(group)
    _require(value in allowed, key, value, "one of " + ", ".join(allowed))


def _require(condition: bool, key: str, value, expected: str) -> None:
    if not condition:
        raise UserError(f"{key}={value} is invalid: expected {expected}")


def _check_imbalance_settings(cfg: DictConfig) -> None:
    """The long-tail settings a loss or sampler has (each reads only its own)."""
    for key in ("sampler.defer_epochs", "loss.defer_epochs"):
        value = OmegaConf.select(cfg, key)
        if value is not None:
            _require(isinstance(value, int) and value >= 0, key, value, "a whole number of epochs >= 0")
    loss = cfg.loss
    if "gamma" in loss:
        _require(loss.gamma >= 0, "loss.gamma", loss.gamma, "a number >= 0 (0: cross-entropy)")
    if "beta" in loss:
        _require(0 <= loss.beta < 1, "loss.beta", loss.beta, "a number in [0, 1)")
    for key in ("alpha_exponent", "max_margin", "tau"):
        if key in loss:
            _require(loss[key] >= 0, f"loss.{key}", loss[key], "a number >= 0")
    if "scale" in loss:
        _require(loss.scale > 0, "loss.scale", loss.scale, "a positive number")


def check_config(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg.data, "root"):
        raise UserError(
            "data.root is not set: pass data.root=/path/to/ISIC84by84 (a folder with Train/<CLASS>/ and "
            "Test/<CLASS>/), or try the pipeline offline with experiment=demo"
        )
    for group in GROUP_KEYS:
        check_choice(cfg, group)
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
    if data.layout == "isic2019":
        _require(0 < data.test_fraction < 1, "data.test_fraction", data.test_fraction, "a number in (0, 1)")
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
    if cfg.sampler.name == "oversample":
        _require(
            cfg.sampler.exponent >= 0, "sampler.exponent", cfg.sampler.exponent, "a number >= 0 (1 = inverse frequency)"
        )
    _check_imbalance_settings(cfg)
    _require(cfg.optim.lr > 0, "optim.lr", cfg.optim.lr, "a positive number")
    _require(
        0 <= cfg.optim.warmup_fraction < 1, "optim.warmup_fraction", cfg.optim.warmup_fraction, "a number in [0, 1)"
    )
    _require(0 <= cfg.loss.label_smoothing < 1, "loss.label_smoothing", cfg.loss.label_smoothing, "a number in [0, 1)")
