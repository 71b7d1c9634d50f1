"""What a training run prints: the settings that differ from the defaults, one line per epoch, and no
library chatter a user can do nothing about. Warnings that a user can act on still show.

Warnings raised by the libraries' own code about their own internals are filtered here, where the
Trainer that triggers them is built; those tied to a part of this package are filtered in it
(torchmetrics' in `model.metrics`, the DataLoader workers' in `data.datamodule`).
"""

import logging
import warnings

import lightning as L
from hydra import compose
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelSummary
from omegaconf import DictConfig, OmegaConf

from skin_lightning.model.lightning_compat import count_epochs_from_one

log = logging.getLogger(__name__)

# Lightning's pytree helper (lightning/pytorch/utilities/_pytree.py) still checks isinstance(..., LeafSpec),
# which torch deprecated; printed at every fit, validate and test, and fixed only by a Lightning release.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
# Lightning's model summary cannot size bf16 weights and counts them as 32-bit: only its size estimate is off.
warnings.filterwarnings("ignore", message=r"Precision bf16-mixed is not supported by the model summary")


class _Advertisement(logging.Filter):
    """Drops Lightning's "Tip" about its cloud logger, printed at every Trainer: it says nothing about the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_Advertisement())


def _flat(config, prefix: str = "") -> dict[str, object]:
    if not isinstance(config, dict):
        return {prefix.rstrip("."): config}
    flat = {}
    for key, value in config.items():
        flat.update(_flat(value, f"{prefix}{key}."))
    return flat


def settings_that_differ(cfg: DictConfig, keys: tuple[str, ...]) -> list[str]:
    """The run's settings as overrides of the defaults: the group choices first, then each value under `keys`
    that differs from what those choices alone give (what an experiment or the command line set).
    Empty outside a Hydra app (a config composed by a test)."""
    if not HydraConfig.initialized() or not GlobalHydra.instance().is_initialized():
        return []
    # the run's own config folders (hydra.searchpath) too, so a choice from the user's folder composes
    searchpath = list(HydraConfig.get().searchpath)
    extra = [f"hydra.searchpath=[{','.join(searchpath)}]"] if searchpath else []
    defaults = compose(config_name="train", overrides=extra, return_hydra_config=True).hydra.runtime.choices
    choices = {
        group: choice
        for group, choice in HydraConfig.get().runtime.choices.items()
        if not group.startswith("hydra") and choice is not None and defaults.get(group) != choice
    }
    # recipes (experiment, hparams_search) are left out of the baseline, so the values they set show
    groups = [f"{group}={choice}" for group, choice in choices.items() if defaults.get(group) is not None]
    baseline = compose(config_name="train", overrides=groups + extra)
    # compared as written (an interpolation such as data.cache_dir=${data.root}/.cache is the same setting in both,
    # and the baseline's data.root may be missing), shown as the run resolves it
    ran, base = (_flat(OmegaConf.to_container(OmegaConf.masked_copy(c, list(keys)))) for c in (cfg, baseline))
    return [f"{group}={choice}" for group, choice in choices.items()] + [
        f"{key}={OmegaConf.select(cfg, key)}" for key, value in ran.items() if key not in base or base[key] != value
    ]


class EpochLine(L.Callback):
    """One log line per validated epoch, which stays in the console (the progress bar redraws itself), numbered
    from 1 as the progress bar is made to number them."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        count_epochs_from_one(trainer.progress_bar_callback)
        if trainer.is_global_zero and any(isinstance(callback, ModelSummary) for callback in trainer.callbacks):
            log.info(
                "the model summary's Total FLOPs reads 0: Lightning counts FLOPs only on an example input, which "
                "is not given to it here, so the network's cost is not measured there"
            )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        shown = [
            f"{label} {float(metrics[name]):.4f}"
            for name, label in (
                ("val/loss", "loss"), ("val/balanced_accuracy", "balanced accuracy"), ("val/macro_f1", "macro F1")
            )
            if name in metrics
        ]
        log.info("epoch %d/%d, validation: %s", trainer.current_epoch + 1, trainer.max_epochs, ", ".join(shown))
