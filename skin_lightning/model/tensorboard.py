"""What TensorBoard shows of a run, from its first epoch on, even if the run never finishes.

- HParams: the settings a user compares between runs are written when fitting starts, with the
  validation and test scores as its metrics; TensorBoard reads each metric's latest scalar, so the
  validation scores follow every epoch and the test scores appear once the run has tested. A run
  that ends says so (success or failure); one that was killed shows no end.
- Custom Scalars: the classes' validation recall, and their precision, in one chart each, each class
  its own line, colour and name; train against validation loss and balanced accuracy.
- Scalars: the learning rate under train/, and no bare `epoch` curve above the others.
- Images: the validation confusion matrix of every epoch, and the tested checkpoint's.
"""

import time
from collections.abc import Mapping
from pathlib import Path

import lightning as L
from google.protobuf import struct_pb2
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter

from skin_lightning.model.checkpoints import checkpoint_epoch
from skin_lightning.model.confusion import confusion_figure
from skin_lightning.model.lightning_compat import add_summary, logged_step

# The HParams tab ticks the first five metrics and the first five settings; the rest are one click away.
HPARAMS_METRICS = (
    "val/balanced_accuracy", "test/balanced_accuracy", "test/accuracy", "test/macro_f1", "test/auroc",
    "val/macro_f1", "val/auroc",
)
# The tab lists settings marked as differing between runs first: these five are the ones ticked.
TICKED = ("experiment", "augment", "sampler", "loss", "optim")
# Each class's validation scores also go to a TensorBoard run of its own, <run>/tensorboard/class_<CLASS>, under
# these tags: a chart of one tag then draws each class in its own colour, with its name on the line's run.
CLASS_RUN_TAGS = ("recall", "precision")


class RunLogger(TensorBoardLogger):
    """Lightning's TensorBoard logger without the `epoch` scalar it adds to every epoch-level log.

    Steps are optimizer steps for every curve; the confusion-matrix images name their epoch.
    """

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics({name: value for name, value in metrics.items() if name != "epoch"}, step)


def compared_settings(cfg: Mapping, choices: Mapping[str, str | None]) -> dict[str, str | float]:
    """The settings a user compares between runs, as HParams columns: the chosen recipe and presets by name
    (Hydra's group choices, "?" when the config was composed outside a Hydra app) and the numbers that size the
    run. Whole numbers are written as text, which the tab prints as they are (it prints numbers as 42.000)."""
    model = cfg["model"]
    return {
        **{group: choices.get(group) or ("none" if group == "experiment" and choices else "?") for group in TICKED},
        "lr": float(cfg["optim"]["lr"]),
        "backbone": str(model.get("arch") or model.get("name")),
        "image_size": str(cfg["data"]["image_size"]),
        "seed": str(cfg["seed"]),
        "epochs": str(cfg["trainer"]["max_epochs"]),
    }


def _hparams_summary(tag: str, **data) -> Summary:
    content = plugin_data_pb2.HParamsPluginData(**data)
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(content))])


def hparams_summaries(settings: Mapping[str, str | float]) -> list[Summary]:
    """The experiment (which settings and metrics the tab has columns for) and this run's session start."""
    infos = [
        api_pb2.HParamInfo(
            name=name,
            type=api_pb2.DATA_TYPE_STRING if isinstance(value, str) else api_pb2.DATA_TYPE_FLOAT64,
            differs=name in TICKED,
        )
        for name, value in settings.items()
    ]
    experiment = api_pb2.Experiment(
        hparam_infos=infos, metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=t)) for t in HPARAMS_METRICS]
    )
    values = {
        name: struct_pb2.Value(string_value=value) if isinstance(value, str) else struct_pb2.Value(number_value=value)
        for name, value in settings.items()
    }
    start = plugin_data_pb2.SessionStartInfo(hparams=values, start_time_secs=time.time())
    return [
        _hparams_summary(metadata.EXPERIMENT_TAG, experiment=experiment),
        _hparams_summary(metadata.SESSION_START_INFO_TAG, session_start_info=start),
    ]


def layout() -> dict:
    """Custom Scalars charts; tags are regular expressions, anchored so val/loss never matches val/loss_x."""
    return {
        "classes": {f"validation {name} of each class": ["Multiline", [f"^val/{name}$"]] for name in CLASS_RUN_TAGS},
        "train vs validation": {
            "loss": ["Multiline", ["^train/loss$", "^val/loss$"]],
            "balanced accuracy": ["Multiline", ["^train/balanced_accuracy$", "^val/balanced_accuracy$"]],
            "macro F1": ["Multiline", ["^train/macro_f1$", "^val/macro_f1$"]],
        },
    }


class RunTensorBoard(L.Callback):
    """Writes the HParams entry and the Custom Scalars layout at fit start, each class's validation scores to its
    own run after every validation of the fit, and the run's end; logs train/lr every epoch."""

    def __init__(self, settings: Mapping[str, str | float], classes: list[str]):
        self.settings = dict(settings)
        self.classes = list(classes)
        self.class_writers: dict[tuple[str, str], SummaryWriter] = {}

    @staticmethod
    def _writers(trainer: L.Trainer) -> list:
        if not trainer.is_global_zero:
            return []
        return [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for writer in self._writers(trainer):
            for summary in hparams_summaries(self.settings):
                add_summary(writer, summary)
            writer.add_custom_scalars(layout())
            writer.flush()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        step = logged_step(trainer)  # the step of this epoch's val/* scalars
        metrics = trainer.callback_metrics
        for writer in self._writers(trainer):
            for cls in self.classes:
                tags = {name: f"val/{name}/{cls}" for name in CLASS_RUN_TAGS}
                scores = {name: metrics[tag] for name, tag in tags.items() if tag in metrics}
                if not scores:
                    continue
                if (writer.log_dir, cls) not in self.class_writers:
                    self.class_writers[writer.log_dir, cls] = SummaryWriter(Path(writer.log_dir) / f"class_{cls}")
                class_writer = self.class_writers[writer.log_dir, cls]
                for name, value in scores.items():
                    class_writer.add_scalar(f"val/{name}", float(value), step)
                class_writer.flush()  # a run killed later keeps its curves

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for class_writer in self.class_writers.values():
            class_writer.close()
        self.class_writers.clear()

    def _end(self, trainer: L.Trainer, status: int) -> None:
        for writer in self._writers(trainer):
            end = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
            add_summary(writer, _hparams_summary(metadata.SESSION_END_INFO_TAG, session_end_info=end))
            writer.flush()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._end(trainer, api_pb2.STATUS_SUCCESS)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._end(trainer, api_pb2.STATUS_FAILURE)

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
