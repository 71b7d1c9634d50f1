"""The network, its loss, optimiser and schedule, and the metrics of every stage."""

import logging
import math

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from skin_lightning.errors import UserError
from skin_lightning.model.callbacks import non_finite_loss_error
from skin_lightning.model.confusion import confusion_figure
from skin_lightning.model.fast_step import AUTOCAST, WholeStep
from skin_lightning.model.losses import build_loss
from skin_lightning.model.metrics import named_scalars, stage_metrics
from skin_lightning.model.networks import build_network

log = logging.getLogger(__name__)

OPTIMIZERS = {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW}
SCHEDULE_KEYS = ("name", "scheduler", "warmup_fraction")


def warmup_cosine(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


class SkinClassifier(L.LightningModule):
    """Hyperparameters are plain containers so checkpoints load with torch.load(weights_only=True).

    Every stage keeps its batches' probabilities on the device and updates its metrics once, at the
    end of the epoch: updating torchmetrics per batch checks its inputs on the host, which makes the
    CPU wait for the GPU at every step.
    """

    def __init__(
        self,
        classes: list[str],
        class_counts: list[int],
        model: dict,
        loss: dict,
        optim: dict,
        preprocessing: dict | None = None,
    ):
        """`preprocessing` (augment.preprocessing) is only stored, for the tools that load the checkpoint later."""
        super().__init__()
        self.save_hyperparameters()
        self.classes = list(classes)
        self.net = build_network(model["arch"], len(classes), model["weights"], model["freeze_backbone"])
        if model["channels_last"]:
            self.net = self.net.to(memory_format=torch.channels_last)
        if model.get("compile", False):
            # in place, so state_dict keys (and checkpoints) stay those of the plain network; static shapes,
            # so the last, smaller batch adds one graph instead of making every graph shape-generic
            self.net.compile(dynamic=False)
        self.criterion = build_loss(loss, class_counts)
        # keys are prefixed: "train" would clash with nn.Module.train
        self.metrics = nn.ModuleDict({f"{stage}_": stage_metrics(len(classes)) for stage in ("train", "val", "test")})
        self.outputs: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {
            "train": [],
            "val": [],
            "test": [],
        }
        self.test_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.fast_step: WholeStep | None = None
        self.use_fast_step = False
        self.register_buffer("non_finite", torch.zeros((), dtype=torch.bool), persistent=False)

    @property
    def automatic_optimization(self) -> bool:
        """The fast step drives the optimiser itself (Lightning's manual optimisation)."""
        return not self.use_fast_step

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.use_fast_step = self._fast_step_allowed()
            on_gpu = self.trainer.strategy.root_device.type == "cuda"
            if self.hparams.model.get("compile", False) and on_gpu and not self.use_fast_step:
                log.warning(
                    "model.compile=true on Lightning's own loop: at small steps it runs slower than eager (84 px, "
                    "batch 32 on an H200: 1,188 against 1,626 images/s), its kernels still launched one by one; "
                    "it pays inside the fast step (model.fast_step)"
                )

    def _fast_step_allowed(self) -> bool:
        """model.fast_step: auto uses it on one CUDA device; true anywhere; false never. Says why not."""
        setting = self.hparams.model.get("fast_step", False)
        if setting is False:
            return False
        trainer = self.trainer
        reasons = [
            reason
            for reason, blocked in [
                (
                    f"trainer.precision={trainer.precision} (it supports {', '.join(AUTOCAST)})",
                    str(trainer.precision) not in AUTOCAST,
                ),
                ("several processes (DDP)", trainer.world_size > 1),
                ("trainer.gradient_clip_val is set", trainer.gradient_clip_val is not None),
                ("trainer.accumulate_grad_batches > 1", trainer.accumulate_grad_batches != 1),
            ]
            if blocked
        ]
        device = trainer.strategy.root_device
        if setting == "auto" and device.type != "cuda":
            return False
        if reasons and setting is True:
            raise UserError(
                f"model.fast_step=true cannot be used with {'; '.join(reasons)}: use model.fast_step=auto or false"
            )
        if reasons:
            log.info("model.fast_step=auto: Lightning's own training loop, because of %s", "; ".join(reasons))
            return False
        log.info(
            "model.fast_step: the whole training step %s",
            "as one CUDA graph" if device.type == "cuda" else "on static buffers",
        )
        return True

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def _record(
        self, stage: str, loss: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor
    ) -> None:
        self.outputs[stage].append((probs, labels, indices))
        self.log(
            f"{stage}/loss",
            loss,
            on_step=stage == "train",
            on_epoch=True,
            batch_size=len(labels),
            prog_bar=stage != "train",
            sync_dist=True,
        )

    def _step(self, batch, stage: str) -> torch.Tensor:
        images, labels, indices = batch
        logits = self(images).float()
        loss = self.criterion(logits, labels)
        self._record(stage, loss, logits.detach().softmax(dim=1), labels, indices)
        return loss

    def on_train_epoch_start(self):
        # from the trainer's epoch, so a resumed run switches at the same epoch as an uninterrupted one
        self.criterion.set_epoch(self.current_epoch)

    def training_step(self, batch, batch_idx):
        if self.automatic_optimization:
            return self._step(batch, "train")
        images, labels, indices = batch
        optimizer = self.optimizers()
        if self.fast_step is None or self.fast_step.optimizer is not optimizer.optimizer:
            self.fast_step = WholeStep(self.net, self.criterion, optimizer.optimizer, str(self.trainer.precision))
        # Lightning counts optimiser steps (global_step) around LightningOptimizer.step, which the graph bypasses
        optimizer._on_before_step()
        loss, probs = self.fast_step(images, labels)
        optimizer._on_after_step()
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()
        self._record("train", loss, probs, labels, indices)
        self.non_finite |= ~torch.isfinite(loss)
        if (batch_idx + 1) % self.trainer.log_every_n_steps == 0 or batch_idx + 1 == self.trainer.num_training_batches:
            self._check_finite()
        return None

    def _check_finite(self) -> None:
        """The fast step cannot stop before a bad update without waiting for the GPU every step: it looks at
        every logging interval and at the end of each epoch, before validation and checkpointing, so the
        last checkpoint on disk is still the last good state."""
        if self.non_finite.item():
            raise non_finite_loss_error(self.trainer, "NaN or infinite")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def _collect(self, stage: str) -> list[torch.Tensor]:
        """Probabilities, labels and indices of the stage's batches since its last epoch end, on the device."""
        parts, self.outputs[stage] = self.outputs[stage], []
        return [torch.cat(part) for part in zip(*parts)] if parts else []

    def _epoch_end(self, stage: str) -> list[torch.Tensor]:
        outputs = self._collect(stage)
        if outputs:
            self.metrics[f"{stage}_"].update(outputs[0], outputs[1])
        values = self.metrics[f"{stage}_"].compute()
        self.metrics[f"{stage}_"].reset()
        scalars = named_scalars(values, self.classes)
        # torchmetrics already reduced the states over ranks: sync_dist only averages equal values
        self.log_dict({f"{stage}/{name}": value for name, value in scalars.items()}, sync_dist=True)
        if stage != "train" and not self.trainer.sanity_checking:
            self._log_confusion(stage, values["confusion_matrix"])
        return outputs

    def _log_confusion(self, stage: str, matrix: torch.Tensor) -> None:
        tensorboards = [logger for logger in self.loggers if isinstance(logger, TensorBoardLogger)]
        if not tensorboards or self.global_rank != 0:
            return
        figure = confusion_figure(matrix.cpu().numpy(), self.classes, title=f"{stage}, epoch {self.current_epoch + 1}")
        # the step Lightning gives this epoch's scalars (validation runs before the last batch's step is counted)
        step = self.trainer.fit_loop.epoch_loop._batches_that_stepped
        for logger in tensorboards:
            logger.experiment.add_figure(f"{stage}/confusion_matrix", figure, step)

    def on_train_epoch_end(self):
        self._epoch_end("train")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The fast step keeps learning rates in device tensors; checkpoints hold them as plain numbers."""
        for state in checkpoint.get("optimizer_states", []):
            for group in state["param_groups"]:
                if isinstance(group.get("lr"), torch.Tensor):
                    group["lr"] = float(group["lr"])
        for state in checkpoint.get("lr_schedulers", []):
            if "_last_lr" in state:
                state["_last_lr"] = [float(lr) for lr in state["_last_lr"]]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Checks that a checkpoint being resumed or tested fits this run's network, before Lightning's strict load
        fails with a bare list of keys. Checkpoints written before the long-tail losses keep weighted_ce's class
        weights as a tensor; the loss computes the same weights from the training split, so those are dropped."""
        state = checkpoint["state_dict"]
        state.pop("class_weights", None)
        own = self.state_dict()
        differ = sorted(set(own) ^ set(state)) + sorted(
            key for key in own.keys() & state.keys() if own[key].shape != state[key].shape
        )
        if differ:
            written = checkpoint.get("hyper_parameters", {})
            raise UserError(
                f"{self.trainer.ckpt_path} does not fit this run's network ({len(differ)} tensors differ, first "
                f"{differ[0]}): it holds a {written.get('model', {}).get('arch', 'network')} for "
                f"{len(written.get('classes', [])) or 'unknown'} classes, this run builds a "
                f"{self.hparams.model['arch']} for {len(self.classes)}; resume with the model and data it was "
                "trained with"
            )

    def on_validation_epoch_end(self):
        self._epoch_end("val")

    def on_test_epoch_end(self):
        outputs = self._epoch_end("test")
        if self.trainer.world_size > 1:
            # every rank tested its own share, padded with repeats to equal sizes: gather them all
            outputs = [self.all_gather(part).flatten(0, 1) for part in outputs]
        probs, labels, indices = (part.cpu() for part in outputs)
        _, first = np.unique(indices.numpy(), return_index=True)
        keep = torch.from_numpy(first)
        self.test_outputs = [(probs[keep], labels[keep], indices[keep])]

    def test_predictions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Probabilities, true labels and dataset indices of the last test run: each image once, by index."""
        probs, labels, indices = (torch.cat(parts).numpy() for parts in zip(*self.test_outputs))
        return probs, labels, indices

    def configure_optimizers(self):
        settings = dict(self.hparams.optim)
        if settings["name"] not in OPTIMIZERS:
            raise UserError(f"optim.name={settings['name']} is not one of {', '.join(OPTIMIZERS)}")
        parameters = [p for p in self.parameters() if p.requires_grad]
        kwargs = {key: value for key, value in settings.items() if key not in SCHEDULE_KEYS}
        if self.use_fast_step and self.trainer.strategy.root_device.type == "cuda":
            # state on the device, updated by single kernels: what a captured step needs, and the fastest anyway
            kwargs.setdefault("fused", True)
            if settings["name"] == "adamw":
                kwargs.setdefault("capturable", True)
        try:
            optimizer = OPTIMIZERS[settings["name"]](parameters, **kwargs)
        except (TypeError, ValueError) as error:
            raise UserError(
                f"optim={settings['name']} does not take the settings {sorted(kwargs)}: {error}; "
                f"check the optim.* overrides"
            ) from error
        if settings["scheduler"] == "none":
            return optimizer
        if settings["scheduler"] != "cosine":
            raise UserError(f"optim.scheduler={settings['scheduler']} is not one of none, cosine")
        total = int(self.trainer.estimated_stepping_batches)
        warmup = int(settings["warmup_fraction"] * total)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
