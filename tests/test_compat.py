"""Every private Lightning, torch and TensorBoard attribute in model/lightning_compat.py still exists, and the
installed Lightning is one that pyproject.toml admits."""

import tomllib
from importlib.metadata import version
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, RichProgressBar, TQDMProgressBar
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.demos.boring_classes import BoringModel
from packaging.requirements import Requirement
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from skin_lightning.console import EpochLine
from skin_lightning.model.lightning_compat import (
    add_summary,
    counted_step,
    drop_average,
    logged_step,
    plain_learning_rates,
)

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_installed_lightning_is_a_pinned_one():
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    (lightning,) = [Requirement(line) for line in dependencies if Requirement(line).name == "lightning"]
    assert lightning.specifier.contains(version("lightning")), (lightning, version("lightning"))


def test_the_optimizer_step_hooks_count_a_step(tmp_path):
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, max_steps=1
    )
    assert logged_step(trainer) == 0
    parameter = torch.nn.Parameter(torch.ones(1))
    optimizer = LightningOptimizer(torch.optim.SGD([parameter], lr=1.0))
    counted = []
    optimizer._on_before_step = lambda: counted.append("before")
    optimizer._on_after_step = lambda: counted.append("after")
    assert counted_step(optimizer, lambda: counted.append("step") or 7) == 7
    assert counted == ["before", "step", "after"]
    assert callable(LightningOptimizer(torch.optim.SGD([parameter], lr=1.0))._on_before_step)
    assert callable(LightningOptimizer(torch.optim.SGD([parameter], lr=1.0))._on_after_step)


def test_ema_keeps_its_average_where_we_drop_it():
    ema = EMAWeightAveraging()
    assert hasattr(ema, "_average_model")
    ema._average_model = object()
    drop_average(ema)
    assert ema._average_model is None


def test_a_raw_summary_reaches_the_event_file(tmp_path):
    with SummaryWriter(str(tmp_path)) as writer:
        for summary in hparams({"lr": 0.1}, {"val/loss": 0.0}):
            add_summary(writer, summary)
    assert any(path.name.startswith("events.out.tfevents") for path in tmp_path.iterdir())


def test_tensor_learning_rates_become_numbers_in_a_checkpoint():
    parameter = torch.nn.Parameter(torch.ones(1))
    optimizer = torch.optim.SGD([parameter], lr=torch.tensor(0.5))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    checkpoint = {"optimizer_states": [optimizer.state_dict()], "lr_schedulers": [scheduler.state_dict()]}
    assert "_last_lr" in checkpoint["lr_schedulers"][0]
    plain_learning_rates(checkpoint)
    assert type(checkpoint["optimizer_states"][0]["param_groups"][0]["lr"]) is float
    assert all(type(lr) is float for lr in checkpoint["lr_schedulers"][0]["_last_lr"])


@pytest.mark.parametrize("bar", [RichProgressBar, TQDMProgressBar])
def test_the_progress_bar_numbers_epochs_as_the_log_does(bar):
    bar, shown = bar(), []

    class Shown(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            epoch = trainer.current_epoch
            rich = isinstance(bar, RichProgressBar)
            shown.append((bar._get_train_description(epoch) if rich else bar.train_progress_bar.desc).strip(" :"))

    trainer = L.Trainer(
        max_epochs=2, limit_train_batches=1, limit_val_batches=1, callbacks=[EpochLine(), bar, Shown()],
        logger=False, enable_checkpointing=False, enable_model_summary=False,
    )
    trainer.fit(BoringModel())
    assert shown == ["Epoch 1/2", "Epoch 2/2"]
