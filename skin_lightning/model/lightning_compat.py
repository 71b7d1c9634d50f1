"""Every private Lightning, torch and TensorBoard attribute this package relies on, in one place.

None of them is a public API, so a minor release may rename or drop any of them: tests/test_compat.py
checks that each still exists in the installed versions, and pyproject.toml pins Lightning to the minor
versions those tests ran on.
"""

from collections.abc import Callable
from typing import TypeVar

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, RichProgressBar, TQDMProgressBar
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch.utils.tensorboard import SummaryWriter

Result = TypeVar("Result")


def counted_step(optimizer: LightningOptimizer, step: Callable[[], Result]) -> Result:
    """Runs an optimiser step that bypasses LightningOptimizer.step (the fast step's graph), with the hooks
    Lightning counts its optimiser steps (global_step) in around it."""
    optimizer._on_before_step()
    result = step()
    optimizer._on_after_step()
    return result


def logged_step(trainer: L.Trainer) -> int:
    """The step Lightning gives this epoch's scalars (validation runs before the last batch's step is counted)."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def count_epochs_from_one(bar) -> None:
    """Lightning's progress bars number epochs from 0 (Rich's "Epoch 3/3" for the last of four), the run's log
    from 1 ("epoch 4/4"): the bar's private description, or its epoch hook, made to count as the log does."""

    def described(trainer: L.Trainer, epoch: int) -> str:
        known = trainer.max_epochs is not None and trainer.max_epochs > 0
        return f"Epoch {epoch + 1}" + (f"/{trainer.max_epochs}" if known else "")

    if isinstance(bar, RichProgressBar):
        bar._get_train_description = lambda epoch: f"{described(bar.trainer, epoch):{len(bar.validation_description)}}"
    elif isinstance(bar, TQDMProgressBar):
        started = bar.on_train_epoch_start

        def on_train_epoch_start(trainer: L.Trainer, *args) -> None:
            started(trainer, *args)
            bar.train_progress_bar.set_description(described(trainer, trainer.current_epoch))

        bar.on_train_epoch_start = on_train_epoch_start


def drop_average(ema: EMAWeightAveraging) -> None:
    """Forgets the averaged copy EMAWeightAveraging keeps after fit (see callbacks.EMAWeights)."""
    ema._average_model = None


def add_summary(writer: SummaryWriter, summary) -> None:
    """A raw protobuf summary (the HParams plugin's), which SummaryWriter has no public method for."""
    writer._get_file_writer().add_summary(summary)


def plain_learning_rates(checkpoint: dict) -> None:
    """Learning rates held as tensors (the fast step's) as plain numbers in a checkpoint: in the optimiser's
    param groups and in torch's private `_last_lr` of each scheduler state."""
    for state in checkpoint.get("optimizer_states", []):
        for group in state["param_groups"]:
            if isinstance(group.get("lr"), torch.Tensor):
                group["lr"] = float(group["lr"])
    for state in checkpoint.get("lr_schedulers", []):
        if "_last_lr" in state:
            state["_last_lr"] = [float(lr) for lr in state["_last_lr"]]
