"""Test-only Lightning callbacks, added to a run with `+callbacks.NAME._target_=probes.CLASS`."""

import json
import time
from pathlib import Path

import lightning as L
import torch


class PauseAt(L.Callback):
    """Writes `marker` and waits at one training batch, so a test can SIGKILL the run exactly there."""

    def __init__(self, epoch: int, batch: int, marker: str):
        self.epoch, self.batch, self.marker = epoch, batch, Path(marker)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            written = self.marker.with_suffix(".tmp")
            written.write_text(str(trainer.global_step))
            written.rename(self.marker)  # the test never reads a half-written marker
            while True:
                time.sleep(1)


class PoisonAt(L.Callback):
    """Makes every weight NaN at one training batch, so the loss of that batch is not finite."""

    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            with torch.no_grad():
                for parameter in pl_module.parameters():
                    parameter.fill_(float("nan"))


class RecordRank(L.Callback):
    """Each rank writes the dataset indices it trained on per epoch, its loss's class weights and margins at each
    epoch's first batch, and the metrics it ended with."""

    def __init__(self, folder: str):
        self.folder = Path(folder)
        self.indices: list[list[int]] = []
        self.loss_weights: list[list[float] | None] = []
        self.metrics: dict[str, float] = {}
        self.margins: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            criterion = pl_module.criterion
            self.indices.append([])
            self.loss_weights.append(None if criterion.weight is None else criterion.weight.tolist())
            self.margins = criterion.margin.tolist()
        self.indices[-1] += batch[2].tolist()

    def on_validation_end(self, trainer, pl_module):
        self.metrics.update({name: float(value) for name, value in trainer.callback_metrics.items()})

    def on_fit_end(self, trainer, pl_module):
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "indices": self.indices,
            "loss_weights": self.loss_weights,
            "margins": self.margins,
            "metrics": self.metrics,
        }
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


class RecordLossWeights(L.Callback):
    """Appends (epoch, the loss's class weights at its first batch) to a JSON-lines file."""

    def __init__(self, path: str):
        self.path = Path(path)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            with open(self.path, "a") as handle:
                handle.write(json.dumps([trainer.current_epoch, pl_module.criterion.weight.tolist()]) + "\n")
