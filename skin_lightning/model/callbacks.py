"""Lightning callbacks that make a long run repeatable and stop it before it wastes a week.

Lightning's checkpoints do not hold the random number generators' states, so a run resumed
from `last.ckpt` would draw different augmentations from an uninterrupted one. Seeding every
epoch from (seed, epoch, rank) instead makes an epoch's randomness independent of what ran
before it in this process: a resumed run repeats the lost epoch exactly.
"""

import random

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging

from skin_lightning.data.seeding import epoch_seed
from skin_lightning.errors import UserError
from skin_lightning.model.lightning_compat import drop_average


class ReseedEveryEpoch(L.Callback):
    """Seeds torch, numpy and random at the start of every training epoch, before its batches are drawn."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seed = epoch_seed(self.seed, trainer.current_epoch, trainer.global_rank)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # also seeds every CUDA device


def non_finite_loss_error(trainer: L.Trainer, value: str) -> UserError:
    saved = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else ""
    kept = f"the last good checkpoint is {saved}" if saved else "no checkpoint had been saved yet"
    return UserError(
        f"the training loss became {value} at epoch {trainer.current_epoch}, step {trainer.global_step}: "
        f"stopped; {kept}. Lower optim.lr or set trainer.gradient_clip_val, then continue with resume=auto "
        "in the same run directory"
    )


class StopOnNonFiniteLoss(L.Callback):
    """Stops before a NaN or infinite loss reaches the weights, so `last.ckpt` stays the last good state.

    Lightning's own loop calls this before every backward pass; the fast step (module.py) checks its
    losses itself, at every logging interval and before each epoch's validation and checkpoint.
    """

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            raise non_finite_loss_error(trainer, str(loss.item()))


class EMAWeights(EMAWeightAveraging):
    """Lightning's exponential moving average of the weights, validated, checkpointed and tested as the model.

    Lightning keeps its averaged copy after fit, and a checkpoint loaded back through Lightning would put the
    raw weights ("current_model_state") in the model instead of the average that validation chose the
    checkpoint by. Dropping the copy once training ends leaves the
    checkpoint's `state_dict`, the averaged weights, as what is validated and tested.
    """

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        drop_average(self)
