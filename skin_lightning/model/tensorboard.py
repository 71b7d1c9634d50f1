"""What TensorBoard shows of a run: one TensorBoard run per training run, from its first epoch on.

- HParams: the run's settings (those a sweep varies ticked first) and a short trial name are written when
  fitting starts; the metrics are the tested checkpoint's test and validation scores, written once it has
  been evaluated, beside the latest epoch's validation score, which a run still training (or killed) shows.
  A run that ends says how: success, or failure (an error, Ctrl-C, SIGTERM). A run killed outright (kill -9,
  out of memory) writes nothing more; its `running.pid` file lets the next run or `skin-summary` beside it
  mark it failed (`mark_killed_runs`).
- Scalars: every epoch's train/* and val/* scores, train/lr, and test/* and val_tested/*, the tested
  checkpoint's numbers as the report has them; no bare `epoch` curve above the others.
- Images: each validation epoch's confusion matrix, and each class's recall and precision over the epochs so
  far (one colour and name a class); the tested checkpoint's test confusion matrix.
- Custom Scalars: train against validation loss, balanced accuracy and macro F1.
"""

import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import matplotlib.pyplot as plt
import numpy as np
from google.protobuf import struct_pb2
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter

from skin_lightning.model.class_curves import CLASS_SCORES, class_curves_figure
from skin_lightning.model.confusion import confusion_figure
from skin_lightning.model.lightning_compat import add_summary, logged_step
from skin_lightning.model.metrics import HEADLINE, PER_CLASS

log = logging.getLogger(__name__)
# The HParams tab shows the first five metrics and ticks five settings, those marked as differing first.
HPARAMS_METRICS = {
    "test/balanced_accuracy": "test balanced accuracy",
    "val_tested/balanced_accuracy": "val balanced accuracy (tested checkpoint)",
    "test/accuracy": "test accuracy",
    "test/macro_f1": "test macro F1",
    "val/balanced_accuracy": "val balanced accuracy (latest epoch)",
    "test/auroc": "test AUROC",
    "val_tested/macro_f1": "val macro F1 (tested checkpoint)",
    "val_tested/auroc": "val AUROC (tested checkpoint)",
}
TICKED_COLUMNS = 5


@dataclass(frozen=True)
class RunSettings:
    """A run's HParams entry (run_settings.compared_settings builds it from the Hydra config)."""

    values: Mapping[str, str | float]  # whole numbers as text: the tab prints numbers as 42.000
    ticked: tuple[str, ...]  # marked as differing: the columns the tab shows before any click
    trial: str  # the trial (session group) name the tab lists the run under


class RunLogger(TensorBoardLogger):
    """Lightning's TensorBoard logger without the `epoch` scalar it adds to every epoch-level log."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics({name: value for name, value in metrics.items() if name != "epoch"}, step)


def _writers(trainer: L.Trainer) -> list[SummaryWriter]:
    if not trainer.is_global_zero:
        return []
    return [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


def _hparams_summary(tag: str, **data) -> Summary:
    content = plugin_data_pb2.HParamsPluginData(**data)
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(content))])


def hparams_summaries(settings: RunSettings) -> list[Summary]:
    """The experiment (which settings and metrics the tab has columns for) and this run's session start.

    TensorBoard reads the experiment of one run of its log folder: the runs of one sweep all write the same.
    """
    infos = [
        api_pb2.HParamInfo(
            name=name,
            type=api_pb2.DATA_TYPE_STRING if isinstance(value, str) else api_pb2.DATA_TYPE_FLOAT64,
            differs=name in settings.ticked,
        )
        for name, value in settings.values.items()
    ]
    metrics = [
        api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag), display_name=shown)
        for tag, shown in HPARAMS_METRICS.items()
    ]
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics)
    values = {
        name: struct_pb2.Value(string_value=value) if isinstance(value, str) else struct_pb2.Value(number_value=value)
        for name, value in settings.values.items()
    }
    start = plugin_data_pb2.SessionStartInfo(hparams=values, group_name=settings.trial, start_time_secs=time.time())
    return [
        _hparams_summary(metadata.EXPERIMENT_TAG, experiment=experiment),
        _hparams_summary(metadata.SESSION_START_INFO_TAG, session_start_info=start),
    ]


def layout() -> dict:
    """Custom Scalars charts; tags are regular expressions, anchored so val/loss never matches val/loss_x."""
    return {
        "train vs validation": {
            "loss": ["Multiline", ["^train/loss$", "^val/loss$"]],
            "balanced accuracy": ["Multiline", ["^train/balanced_accuracy$", "^val/balanced_accuracy$"]],
            "macro F1": ["Multiline", ["^train/macro_f1$", "^val/macro_f1$"]],
        },
    }


RUNNING = "running.pid"  # beside a TensorBoard run's events while its process lives: "host pid"


def _write_end(writer: SummaryWriter, status: int) -> None:
    end = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    add_summary(writer, _hparams_summary(metadata.SESSION_END_INFO_TAG, session_end_info=end))
    writer.flush()
    (Path(writer.log_dir) / RUNNING).unlink(missing_ok=True)


def _end(trainer: L.Trainer, status: int) -> None:
    for writer in _writers(trainer):
        _write_end(writer, status)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_killed_runs(root: Path) -> list[Path]:
    """Marks failed in HParams every run folder directly under `root` whose process, on this machine, died without
    writing its end (kill -9, out of memory), so it no longer shows "Unknown" like a running run. Runs of
    other machines (a cluster's nodes) are left alone: their processes cannot be seen from here."""
    marked = []
    for pid_file in sorted(Path(root).glob(f"*/*/{RUNNING}")):  # RUN/<logger name>/running.pid, no deeper walk
        host, _, pid = pid_file.read_text().strip().rpartition(" ")
        if host != socket.gethostname() or not pid.isdigit() or _alive(int(pid)):
            continue
        writer = SummaryWriter(log_dir=str(pid_file.parent))
        _write_end(writer, api_pb2.STATUS_FAILURE)
        writer.close()
        log.warning("%s: its process died without ending the run; marked failed in TensorBoard", pid_file.parent)
        marked.append(pid_file.parent)
    return marked


@contextmanager
def run_status(trainer: L.Trainer, ends_run: bool) -> Iterator[None]:
    """Marks the run failed in HParams if the block raises (also Ctrl-C and SIGTERM); successful if it does not
    and `ends_run`. A process killed outright (kill -9, out of memory) can write nothing: its status stays
    unknown, like a running run's, until it is resumed."""
    try:
        yield
    except BaseException:
        _end(trainer, api_pb2.STATUS_FAILURE)
        raise
    if ends_run:
        _end(trainer, api_pb2.STATUS_SUCCESS)


def log_tested(trainer: L.Trainer, summary: dict, which: str) -> None:
    """The tested checkpoint's scores exactly as metrics.json has them: test/* and val_tested/* scalars (the
    HParams columns), and the test confusion matrix, at the step of the last epoch's scalars."""
    step = logged_step(trainer)
    scalars = {f"test/{name}": summary[name] for name in HEADLINE}
    scalars |= {
        f"test/{score}/{cls}": row[score] for cls, row in summary["per_class"].items() for score in PER_CLASS
    }
    validation = summary.get("validation", {})
    scalars |= {f"val_tested/{name}": validation[name] for name in HEADLINE if name in validation}
    figure = confusion_figure(np.array(summary["confusion_matrix"]), summary["classes"], title=f"test, {which}")
    for writer in _writers(trainer):
        for tag, value in scalars.items():
            if value is not None:
                writer.add_scalar(tag, value, step)
        writer.add_figure("test/confusion_matrix", figure, step, close=False)
        writer.flush()
    plt.close(figure)


class RunTensorBoard(L.Callback):
    """Writes the HParams entry and the Custom Scalars layout at fit start, train/lr every epoch, and after
    every validation of the fit the figure of each class's scores so far (kept in checkpoints for a resume)."""

    def __init__(self, settings: RunSettings, classes: list[str]):
        self.settings = settings
        self.classes = list(classes)
        self.history: list[dict[str, float]] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for writer in _writers(trainer):
            mark_killed_runs(Path(writer.log_dir).parent.parent)  # this run's siblings, and itself when resumed
            for summary in hparams_summaries(self.settings):
                add_summary(writer, summary)
            writer.add_custom_scalars(layout())
            writer.flush()
            (Path(writer.log_dir) / RUNNING).write_text(f"{socket.gethostname()} {os.getpid()}\n")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        metrics = trainer.callback_metrics
        scores = {
            f"{score}/{cls}": float(metrics[f"val/{score}/{cls}"])
            for score in CLASS_SCORES
            for cls in self.classes
            if f"val/{score}/{cls}" in metrics
        }
        self.history = [*self.history[: trainer.current_epoch], scores]
        writers = _writers(trainer)
        if not writers:
            return
        figure = class_curves_figure(self.history, self.classes, f"val, epoch {trainer.current_epoch + 1}")
        for writer in writers:
            writer.add_figure("val/class_scores", figure, logged_step(trainer), close=False)
            writer.flush()  # a run killed later keeps its figures
        plt.close(figure)

    def state_dict(self) -> dict:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The rate the epoch starts at (a cosine schedule moves it every step)."""
        if trainer.optimizers:
            lr = trainer.optimizers[0].param_groups[0]["lr"]
            pl_module.log("train/lr", lr, on_step=False, on_epoch=True, batch_size=1)


class ConfusionFigures(L.Callback):
    """The confusion matrix of every validation epoch as a TensorBoard figure, titled with its epoch."""

    def __init__(self, classes: list[str]):
        self.classes = list(classes)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writers = _writers(trainer)
        if trainer.sanity_checking or not writers or "val" not in pl_module.confusion:
            return
        title = f"val, epoch {trainer.current_epoch + 1}"
        figure = confusion_figure(pl_module.confusion["val"].cpu().numpy(), self.classes, title=title)
        for writer in writers:
            writer.add_figure("val/confusion_matrix", figure, logged_step(trainer), close=False)
        plt.close(figure)

