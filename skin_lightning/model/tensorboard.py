"""What TensorBoard shows of a run, from its first epoch on, even if the run never finishes.

- HParams: the run's settings are written when fitting starts, with the validation and test
  scores as its metrics; TensorBoard reads each metric's latest scalar, so the validation scores
  follow every epoch and the test scores appear once the run has tested.
- Custom Scalars: the classes' validation recall in one chart, train against validation loss and
  balanced accuracy.
- Scalars: the learning rate under train/, and no bare `epoch` curve above the others.
- Images: the validation confusion matrix of every epoch, and the tested checkpoint's.
"""

from collections.abc import Mapping
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.tensorboard.summary import hparams as hparams_summary

from skin_lightning.model.checkpoints import checkpoint_epoch
from skin_lightning.model.confusion import confusion_figure
from skin_lightning.model.lightning_compat import add_summary, logged_step

HPARAMS_METRICS = (
    "val/balanced_accuracy", "val/macro_f1", "val/auroc",
    "test/balanced_accuracy", "test/accuracy", "test/macro_f1", "test/auroc",
)


class RunLogger(TensorBoardLogger):
    """Lightning's TensorBoard logger without the `epoch` scalar it adds to every epoch-level log.

    Steps are optimizer steps for every curve; the confusion-matrix images name their epoch.
    """

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics({name: value for name, value in metrics.items() if name != "epoch"}, step)


def flat_hparams(config: Mapping, prefix: str = "") -> dict[str, float | int | str | bool]:
    """Nested settings as "group.key" -> a value the HParams plugin can show (others as text)."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_hparams(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, bool | int | float | str) else str(value)
    return flat


def layout(classes: list[str]) -> dict:
    """Custom Scalars charts; tags are regular expressions, anchored so val/loss never matches val/loss_x."""
    recall = "|".join(classes)
    return {
        "classes": {
            "validation recall of each class": ["Multiline", [f"^val/recall/({recall})$"]],
            "validation precision of each class": ["Multiline", [f"^val/precision/({recall})$"]],
        },
        "train vs validation": {
            "loss": ["Multiline", ["^train/loss$", "^val/loss$"]],
            "balanced accuracy": ["Multiline", ["^train/balanced_accuracy$", "^val/balanced_accuracy$"]],
            "macro F1": ["Multiline", ["^train/macro_f1$", "^val/macro_f1$"]],
        },
    }


class RunTensorBoard(L.Callback):
    """Writes the HParams entry and the Custom Scalars layout at fit start; logs train/lr every epoch."""

    def __init__(self, hparams: Mapping, classes: list[str]):
        self.hparams = flat_hparams(hparams)
        self.classes = list(classes)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if not isinstance(logger, TensorBoardLogger):
                continue
            writer = logger.experiment
            for summary in hparams_summary(self.hparams, dict.fromkeys(HPARAMS_METRICS, 0.0)):
                add_summary(writer, summary)
            writer.add_custom_scalars(layout(self.classes))
            writer.flush()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The rate the epoch starts at (a cosine schedule moves it every step)."""
        if trainer.optimizers:
            lr = trainer.optimizers[0].param_groups[0]["lr"]
            pl_module.log("train/lr", lr, on_step=False, on_epoch=True, batch_size=1)


def which_weights(trainer: L.Trainer) -> str:
    """Which weights a test ran on, for the test figure's title: "best checkpoint (epoch 3)"."""
    if trainer.ckpt_path:
        return f"{Path(trainer.ckpt_path).stem} checkpoint (epoch {checkpoint_epoch(trainer.ckpt_path)})"
    return f"last weights (epoch {trainer.current_epoch})"


class ConfusionFigures(L.Callback):
    """The confusion matrix of every validation epoch, and of the test, as TensorBoard figures.

    Validation figures name their epoch; the test figure names the checkpoint it tested and the epoch that
    checkpoint was written in, which is rarely the last one trained.
    """

    def __init__(self, classes: list[str]):
        self.classes = list(classes)

    def _add(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, title: str) -> None:
        tensorboards = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if not tensorboards or not trainer.is_global_zero or stage not in pl_module.confusion:
            return
        figure = confusion_figure(pl_module.confusion[stage].cpu().numpy(), self.classes, title=title)
        for logger in tensorboards:
            logger.experiment.add_figure(f"{stage}/confusion_matrix", figure, logged_step(trainer))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._add(trainer, pl_module, "val", f"val, epoch {trainer.current_epoch + 1}")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._add(trainer, pl_module, "test", f"test, {which_weights(trainer)}")
