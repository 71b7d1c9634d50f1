"""What tells runs apart in TensorBoard's HParams tab: their settings, which of them are ticked, and a trial name.

Ticked first are the settings the sweep varies (Hydra's sweep overrides, from the command line or the
sweeper's params), then the ones this run sets against the defaults; the tab ticks five columns. The trial
name is what the sweep varies (or what the command line sets), then when it started: short, and unique.
"""

import re
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from skin_lightning.model.tensorboard import TICKED_COLUMNS, RunSettings

# the groups a user compares by name, and values under a short column name
CHOICES = ("experiment", "augment", "sampler", "loss", "optim")
COLUMNS = {
    "optim.lr": "lr",
    "model.arch": "backbone",
    "model.name": "backbone",
    "data.image_size": "image_size",
    "seed": "seed",
    "trainer.max_epochs": "epochs",
    "tta": "tta",
    "logit_adjustment": "logit_adjustment",
}
# overrides that say where a run reads or writes, not what it is
NOT_SETTINGS = ("data.root", "output_dir", "resume", "summary.reference")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def _column(key: str) -> str:
    return COLUMNS.get(key, key)


def swept_keys() -> list[str]:
    """The keys a multirun varies: its command line's sweep overrides (multirun.yaml, written before any job) and
    the sweeper's own params (an experiment's or hparams_search's). Empty for a single run."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return []
    hydra_cfg = HydraConfig.get()
    keys = list(OmegaConf.select(hydra_cfg, "sweeper.params", default=None) or {})
    multirun = Path(hydra_cfg.sweep.dir) / "multirun.yaml"
    if multirun.is_file():
        command_line = OmegaConf.load(multirun).hydra.overrides.task
        parsed = OverridesParser.create().parse_overrides(list(command_line))
        keys += [override.get_key_element().lstrip("+~") for override in parsed if override.is_sweep_override()]
    return list(dict.fromkeys(keys))


def _short(key: str, value: str | float, choices: dict) -> str:
    """A group's choice by its name alone (v1_baseline), a value by its last key (seed=1, lr=0.01): the tab shows
    the first dozen characters of a trial's name."""
    return str(value) if key in choices else f"{key.rsplit('.', 1)[-1]}={value}"


def _command_line() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _started(output_dir: str) -> str:
    """The run's (or sweep's) start as its directory name has it: "12-07 23:50:00"."""
    found = re.search(r"\d{4}-(\d{2}-\d{2})_(\d{2})-(\d{2})-(\d{2})", output_dir)
    return f"{found[1]} {found[2]}:{found[3]}:{found[4]}" if found else ""


def _value(cfg: DictConfig, key: str, choices: dict) -> str | float:
    if key in choices:
        return str(choices[key])
    if key == "optim.lr":
        return float(cfg.optim.lr)
    return str(OmegaConf.select(cfg, key, default="?"))


def compared_settings(cfg: DictConfig, differing: list[str]) -> RunSettings:
    """The HParams entry of a run: `differing` are its settings that differ from the defaults, as "key=value"
    (console.settings_that_differ). Outside a Hydra app (a test's composed config) group choices read "?"."""
    choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
    settings: dict[str, str | float] = {
        group: str(choices.get(group) or ("none" if group == "experiment" and choices else "?")) for group in CHOICES
    }
    settings["backbone"] = str(cfg.model.get("arch") or cfg.model.get("name"))
    for key, column in COLUMNS.items():
        if column not in settings:
            settings[column] = _value(cfg, key, choices)
    # the command line's overrides first, then what they (an experiment) set against the defaults
    changed = [_key(item) for item in [*_command_line(), *differing] if _key(item) not in NOT_SETTINGS]
    changed = [key for key in changed if not key.startswith("hydra.")]
    swept = [key for key in swept_keys() if key not in NOT_SETTINGS]
    for key in [*swept, *changed]:
        if _column(key) not in settings:
            settings[_column(key)] = _value(cfg, key, choices)
    ticked = list(dict.fromkeys(_column(key) for key in [*swept, *changed, *CHOICES]))[:TICKED_COLUMNS]
    named = swept or [
        key for key in map(_key, _command_line()) if key not in NOT_SETTINGS and not key.startswith("hydra.")
    ]
    started = _started(str(cfg.output_dir))
    written = dict(item.lstrip("+~").split("=", 1) for item in _command_line() if "=" in item)  # null, not None
    trial = " ".join(_short(key, written.get(key) or _value(cfg, key, choices), choices) for key in named)
    trial = trial or "defaults"
    return RunSettings(settings, tuple(ticked), f"{trial} ({started})" if started else trial)
