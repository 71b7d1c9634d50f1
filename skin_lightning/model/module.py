"""The LightningModule: the training, validation and test steps, their metrics, and the optimiser with its schedule.

The parts it trains (network, loss, optimiser, scheduler) are built from their config nodes (parts.build);
the fast step and its switch live in fast_step.py, the figures in tensorboard.py, and every private
Lightning call in lightning_compat.py.
"""

import lightning as L
import torch
from torch import nn

from skin_lightning.model.callbacks import non_finite_loss_error
from skin_lightning.model.checkpoints import check_checkpoint_fits
from skin_lightning.model.fast_step import WholeStep, optimizer_settings, use_fast_step
from skin_lightning.model.lightning_compat import counted_step, plain_learning_rates
from skin_lightning.model.metrics import named_scalars, stage_metrics
from skin_lightning.model.networks import make_network
from skin_lightning.parts import build


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
        self.net = make_network(model, len(classes))
        if model["channels_last"]:
            self.net = self.net.to(memory_format=torch.channels_last)
        if model["compile"]:
            # in place, so state_dict keys (and checkpoints) stay those of the plain network; static shapes,
            # so the last, smaller batch adds one graph instead of making every graph shape-generic
            self.net.compile(dynamic=False)
        self.criterion = build(loss, "loss", class_counts=class_counts)
        # keys are prefixed: "train" would clash with nn.Module.train. The test split is not a stage here: the
        # tested checkpoint is evaluated once after fit, outside Lightning (results.evaluation)
        self.metrics = nn.ModuleDict({f"{stage}_": stage_metrics(len(classes)) for stage in ("train", "val")})
        self.outputs: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {"train": [], "val": []}
        # each stage's latest confusion matrix, for the ConfusionFigures callback
        self.confusion: dict[str, torch.Tensor] = {}
        self.fast_step: WholeStep | None = None
        self.use_fast_step = False
        self.register_buffer("non_finite", torch.zeros((), dtype=torch.bool), persistent=False)

    @property
    def automatic_optimization(self) -> bool:
        """The fast step drives the optimiser itself (Lightning's manual optimisation)."""
        return not self.use_fast_step

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.use_fast_step = use_fast_step(self.hparams.model, self.trainer)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def _record(
        self, stage: str, loss: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor
    ) -> None:
        self.outputs[stage].append((probs, labels, indices))
        if stage == "train":
            self.log("train/batch_loss", loss, on_step=True, on_epoch=False, batch_size=len(labels), sync_dist=True)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
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
        set_epoch = getattr(self.criterion, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(self.current_epoch)

    def training_step(self, batch, batch_idx):
        if self.automatic_optimization:
            return self._step(batch, "train")
        images, labels, indices = batch
        optimizer = self.optimizers()
        if self.fast_step is None or self.fast_step.optimizer is not optimizer.optimizer:
            self.fast_step = WholeStep(self.net, self.criterion, optimizer.optimizer, str(self.trainer.precision))
        loss, probs = counted_step(optimizer, lambda: self.fast_step(images, labels))
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

    def _collect(self, stage: str) -> list[torch.Tensor]:
        """Probabilities, labels and indices of the stage's batches since its last epoch end, on the device."""
        parts, self.outputs[stage] = self.outputs[stage], []
        return [torch.cat(part) for part in zip(*parts)] if parts else []

    def _epoch_end(self, stage: str) -> None:
        outputs = self._collect(stage)
        if outputs:
            self.metrics[f"{stage}_"].update(outputs[0], outputs[1])
        values = self.metrics[f"{stage}_"].compute()
        self.metrics[f"{stage}_"].reset()
        scalars = named_scalars(values, self.classes)
        # torchmetrics already reduced the states over ranks: sync_dist only averages equal values
        self.log_dict({f"{stage}/{name}": value for name, value in scalars.items()}, sync_dist=True)
        self.confusion[stage] = values["confusion_matrix"]

    def on_train_epoch_end(self):
        self._epoch_end("train")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The fast step keeps learning rates in device tensors; checkpoints hold them as plain numbers."""
        plain_learning_rates(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        check_checkpoint_fits(checkpoint, self.state_dict(), self.hparams, self.trainer.ckpt_path)

    def on_validation_epoch_end(self):
        self._epoch_end("val")

    def configure_optimizers(self):
        optim = self.hparams.optim
        parameters = [p for p in self.parameters() if p.requires_grad]
        extra = optimizer_settings(self.use_fast_step, self.trainer.strategy.root_device)
        optimizer = build(optim, "optim", skip=("scheduler",), params=parameters, **extra)
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = build(optim["scheduler"], "optim.scheduler", optimizer=optimizer, total_steps=total)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
