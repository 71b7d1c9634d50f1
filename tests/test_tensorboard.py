"""TensorBoard from the first epoch: one TensorBoard run per training run, HParams with the settings a user compares
and the tested checkpoint's scores, train/lr, and figures at the steps of the scalars they belong to."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter

from skin_lightning.errors import UserError
from skin_lightning.model.tensorboard import RUNNING, mark_killed_runs
from skin_lightning.tested import which_weights
from skin_lightning.train import train

from conftest import FAST, compose_train, run_train

TWO_EPOCHS = [*FAST, "experiment=demo", "trainer.max_epochs=2"]


def events(run_dir) -> EventAccumulator:
    """The events of the run, which are all in one folder: one TensorBoard run per training run."""
    (folder,) = {path.parent for path in (run_dir / "tensorboard").rglob("events.out.tfevents.*")}
    return EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0, "tensors": 0}).Reload()


def hparams_tab(accumulator: EventAccumulator) -> tuple[dict, list[str]]:
    """The settings and metric names of the HParams tab, as the plugin reads them."""
    content = accumulator.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    settings = {
        name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
        for name, value in start.hparams.items()
    }
    return settings, [info.name.tag for info in experiment.metric_infos]


def ticked(accumulator: EventAccumulator) -> list[str]:
    """The settings the HParams tab shows before any click: the first five, those marked as differing first."""
    content = accumulator.PluginTagToContent("hparams")
    infos = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment.hparam_infos
    return [info.name for info in sorted(infos, key=lambda info: (not info.differs, info.name))][:5]


def session_end(accumulator: EventAccumulator) -> int | None:
    content = accumulator.PluginTagToContent("hparams").get("_hparams_/session_end_info")
    return content and plugin_data_pb2.HParamsPluginData.FromString(content).session_end_info.status


def steps(accumulator: EventAccumulator, tag: str) -> list[int]:
    return [event.step for event in accumulator.Scalars(tag)]


@pytest.mark.slow
def test_a_finished_run_shows_every_epoch_and_the_test_scores(tmp_path, demo_root):
    summary = train(compose_train([*TWO_EPOCHS, f"data.root={demo_root}", f"output_dir={tmp_path}"]))
    accumulator = events(tmp_path)
    tags = accumulator.Tags()["scalars"]
    assert "epoch" not in tags and not any(tag.startswith("lr-") for tag in tags)
    assert len(steps(accumulator, "train/lr")) == 2 and 0 < accumulator.Scalars("train/lr")[0].value <= 2.000001e-3
    val_steps = steps(accumulator, "val/balanced_accuracy")
    assert len(val_steps) == 2 and val_steps == steps(accumulator, "train/balanced_accuracy")
    assert [image.step for image in accumulator.Images("val/confusion_matrix")] == val_steps
    assert [image.step for image in accumulator.Images("val/class_scores")] == val_steps  # each class, epochs so far
    assert len(accumulator.Images("test/confusion_matrix")) == 1
    # the per-step loss and the epoch's mean, under names that say which is which
    assert {"train/batch_loss", "train/loss"} <= set(tags) and not {"train/loss_step", "train/loss_epoch"} & set(tags)
    assert len(steps(accumulator, "train/loss")) == 2 and len(steps(accumulator, "train/batch_loss")) == 4

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for name in ("accuracy", "balanced_accuracy", "macro_f1", "auroc"):
        (logged,) = accumulator.Scalars(f"test/{name}")
        assert logged.value == pytest.approx(metrics[name], abs=1e-6), name
        (logged,) = accumulator.Scalars(f"val_tested/{name}")
        assert logged.value == pytest.approx(metrics["validation"][name], abs=1e-6), name
    (logged,) = accumulator.Scalars("test/recall/MEL")
    assert logged.value == pytest.approx(metrics["per_class"]["MEL"]["recall"], abs=1e-6)
    assert summary["balanced_accuracy"] == metrics["balanced_accuracy"]

    settings, metric_tags = hparams_tab(accumulator)
    # whole numbers as text, printed as they are; the rate as a number
    assert settings | {"lr": round(settings["lr"], 9)} == {
        "experiment": "?", "augment": "?", "sampler": "?", "loss": "?", "optim": "?",  # no Hydra app: no choices
        "lr": 0.002, "backbone": "resnet18", "image_size": "32", "seed": "42", "epochs": "2",
        "tta": "none", "logit_adjustment": "None",
    }
    assert metric_tags[:2] == ["test/balanced_accuracy", "val_tested/balanced_accuracy"]
    assert {"test/accuracy", "test/macro_f1", "test/auroc", "val/balanced_accuracy"} <= set(metric_tags)
    assert all(tag in tags for tag in metric_tags)  # every HParams metric has values to show
    assert session_end(accumulator) == api_pb2.STATUS_SUCCESS
    assert [path.name for path in (tmp_path / "tensorboard").iterdir() if path.is_dir()] == []  # no sub-runs

    (config,) = accumulator.Tensors("custom_scalars__config__")  # the layout travels in the tensor
    layout = layout_pb2.Layout.FromString(config.tensor_proto.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}
    assert charts["loss"] == ["^train/loss$", "^val/loss$"] and {"train/loss", "val/loss"} <= set(tags)


@pytest.mark.slow
def test_an_interrupted_run_already_has_its_hparams_and_validation_scores(tmp_path, demo_root):
    """The run dies in its second epoch: the HParams tab still lists it with the first epoch's scores."""
    overrides = [
        *TWO_EPOCHS,
        f"data.root={demo_root}",
        f"output_dir={tmp_path}",
        "+callbacks.poison._target_=probes.PoisonAt",
        "+callbacks.poison.epoch=1",
        "+callbacks.poison.batch=0",
    ]
    with pytest.raises(UserError, match="loss became nan at epoch 1"):
        train(compose_train(overrides))
    accumulator = events(tmp_path)
    settings, metric_tags = hparams_tab(accumulator)
    assert settings["image_size"] == "32" and settings["epochs"] == "2"
    assert session_end(accumulator) == api_pb2.STATUS_FAILURE
    tags = accumulator.Tags()["scalars"]
    shown = {tag: accumulator.Scalars(tag)[-1].value for tag in metric_tags if tag in tags}
    assert set(shown) == {"val/balanced_accuracy"}  # the latest epoch's: nothing was tested
    assert all(0 <= value <= 1 for value in shown.values())
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.slow
def test_the_hparams_tab_names_the_recipe_and_ticks_what_a_user_compares(tmp_path, demo_root):
    """From the command line, as a user runs it: the experiment and the presets are recorded by name, and the
    settings the command line changes are the ticked ones."""
    overrides = ["experiment=demo", "loss=focal", *FAST, f"data.root={demo_root}", f"hydra.run.dir={tmp_path}"]
    result = run_train(overrides, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    accumulator = events(tmp_path)
    settings, _ = hparams_tab(accumulator)
    assert {name: settings[name] for name in ("experiment", "augment", "sampler", "loss", "optim")} == {
        "experiment": "demo", "augment": "selective", "sampler": "oversample", "loss": "focal", "optim": "adamw",
    }
    assert ticked(accumulator) == ["data.batch_size", "experiment", "image_size", "loss", "model.weights"]


def test_the_test_figure_names_the_checkpoint_it_tested(tmp_path):
    """Not the last epoch trained: the best checkpoint is often an earlier one."""
    torch.save({"epoch": 2, "state_dict": {}}, tmp_path / "best.ckpt")
    assert which_weights(str(tmp_path / "best.ckpt"), 5) == "best checkpoint (epoch 3)"
    assert which_weights(None, 5) == "last weights (epoch 5)"


def _run_folder(root, name: str, host: str, pid: int):
    """A run folder whose TensorBoard run started (settings written) and whose process is `pid` on `host`."""
    writer = SummaryWriter(log_dir=str(root / name / "tensorboard"))
    writer.add_scalar("val/loss", 1.0, 0)
    writer.close()
    (root / name / "tensorboard" / RUNNING).write_text(f"{host} {pid}\n")
    return root / name / "tensorboard"


def test_a_run_whose_process_died_is_marked_failed_and_live_or_remote_runs_are_left_alone(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = _run_folder(tmp_path, "killed", socket.gethostname(), int(finished.stdout))
    alive = _run_folder(tmp_path, "running", socket.gethostname(), os.getpid())
    remote = _run_folder(tmp_path, "on_a_node", "another-host", int(finished.stdout))
    assert mark_killed_runs(tmp_path) == [dead]
    assert session_end(EventAccumulator(str(dead)).Reload()) == api_pb2.STATUS_FAILURE
    assert not (dead / RUNNING).exists()
    for folder in (alive, remote):  # nothing written: no HParams data at all
        with pytest.raises(KeyError, match="hparams"):
            EventAccumulator(str(folder)).Reload().PluginTagToContent("hparams")
        assert (folder / RUNNING).exists()
    assert mark_killed_runs(tmp_path) == []  # marked once


@pytest.mark.slow
def test_a_run_killed_outright_is_marked_failed_by_the_next_run_beside_it(tmp_path, demo_root):
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "skin_lightning.train", "experiment=demo", f"data.root={demo_root}",
               "model.weights=none", "trainer.max_epochs=50", f"output_dir={runs / 'killed'}"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_file = runs / "killed" / "tensorboard" / RUNNING
    for _ in range(600):
        if pid_file.exists() or process.poll() is not None:
            break
        time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert pid_file.exists()  # nothing could clean up after kill -9
    train(compose_train([*TWO_EPOCHS, f"data.root={demo_root}", f"output_dir={runs / 'next'}"]))
    assert session_end(events(runs / "killed")) == api_pb2.STATUS_FAILURE
    assert session_end(events(runs / "next")) == api_pb2.STATUS_SUCCESS
    assert not pid_file.exists() and not (runs / "next" / "tensorboard" / RUNNING).exists()
