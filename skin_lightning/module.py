"""The network, its loss, optimiser and schedule, and the metrics of every stage."""

import math

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from skin_lightning.errors import UserError
from skin_lightning.losses import build_loss
from skin_lightning.metrics import named_scalars, stage_metrics
from skin_lightning.models import build_network
from skin_lightning.reports import confusion_figure

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
    """Hyperparameters are plain containers so checkpoints load with torch.load(weights_only=True)."""

    def __init__(
        self, classes: list[str], class_counts: list[int], model: dict, loss: dict, optim: dict, preprocessing: dict | None = None
    ):
        """`preprocessing` (augment.preprocessing) is only stored, for the tools that load the checkpoint later."""
        super().__init__()
        self.save_hyperparameters()
        self.classes = list(classes)
        self.net = build_network(model["arch"], len(classes), model["weights"], model["freeze_backbone"])
        if model["channels_last"]:
            self.net = self.net.to(memory_format=torch.channels_last)
        if model.get("compile", False):
            # in place, so state_dict keys (and checkpoints) stay those of the plain network
            self.net.compile()
        self.criterion = build_loss(loss, class_counts)
        # keys are prefixed: "train" would clash with nn.Module.train
        self.metrics = nn.ModuleDict({f"{stage}_": stage_metrics(len(classes)) for stage in ("train", "val", "test")})
        self.test_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def _step(self, batch, stage: str):
        images, labels, indices = batch
        logits = self(images).float()
        loss = self.criterion(logits, labels)
        probs = logits.detach().softmax(dim=1)
        self.metrics[f"{stage}_"].update(probs, labels)
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True, batch_size=len(labels), prog_bar=True, sync_dist=True)
        return loss, probs, labels, indices

    def on_train_epoch_start(self):
        # from the trainer's epoch, so a resumed run switches at the same epoch as an uninterrupted one
        self.criterion.set_epoch(self.current_epoch)

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")[0]

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        _, probs, labels, indices = self._step(batch, "test")
        self.test_outputs.append((probs.cpu(), labels.cpu(), indices.cpu()))

    def on_test_epoch_start(self):
        self.test_outputs = []

    def _epoch_end(self, stage: str) -> None:
        values = self.metrics[f"{stage}_"].compute()
        self.metrics[f"{stage}_"].reset()
        scalars = named_scalars(values, self.classes)
        # torchmetrics already reduced the states over ranks: sync_dist only averages equal values
        self.log_dict({f"{stage}/{name}": value for name, value in scalars.items()}, sync_dist=True)
        if stage != "train" and not self.trainer.sanity_checking:
            self._log_confusion(stage, values["confusion_matrix"])

    def _log_confusion(self, stage: str, matrix: torch.Tensor) -> None:
        tensorboards = [logger for logger in self.loggers if isinstance(logger, TensorBoardLogger)]
        if not tensorboards or self.global_rank != 0:
            return
        figure = confusion_figure(matrix.cpu().numpy(), self.classes, title=f"{stage}, epoch {self.current_epoch}")
        for logger in tensorboards:
            logger.experiment.add_figure(f"{stage}/confusion_matrix", figure, self.global_step)

    def on_train_epoch_end(self):
        self._epoch_end("train")

    def on_validation_epoch_end(self):
        self._epoch_end("val")

    def on_test_epoch_end(self):
        self._epoch_end("test")
        outputs = [torch.cat(parts) for parts in zip(*self.test_outputs)]
        if self.trainer.world_size > 1:
            # every rank tested its own share, padded with repeats to equal sizes: gather them all
            outputs = [self.all_gather(part.to(self.device)).flatten(0, 1).cpu() for part in outputs]
        probs, labels, indices = outputs
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
