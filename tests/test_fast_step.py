"""The fast path (data in device memory, the whole step on static buffers) trains exactly as Lightning's loop does.

On a CPU there is no CUDA graph to capture, but everything around it runs: the device-resident batches,
manual optimisation with Lightning's step count, the scheduler, the static input buffers and the
non-finite check. Same seed, same config: the same losses and the same weights, step for step.
"""

import csv
import shutil

import numpy as np
import pytest
import torch

from skin_lightning.data.datamodule import SkinDataModule
from skin_lightning.data.sampling import DeviceBatches, EpochSampler, oversampler
from skin_lightning.errors import UserError
from skin_lightning.model.checkpoints import read_checkpoint
from skin_lightning.train import train

from conftest import FAST, compose_train

# Two epochs of four batches at full precision: the oversampler, augmentation, AdamW and a cosine schedule
# all draw or change every step, so any step taken differently shows in the losses or the weights.
TWO_EPOCHS = [
    *FAST,
    "experiment=demo",
    "data.image_size=16",
    "data.batch_size=4",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=4",
    "trainer.precision=32-true",
    "seed=3",
    "logger=csv",
]
PLAIN = ["model.fast_step=false", "data.on_device=false"]
# without a monitored score the checkpoint callback saves every epoch, so last.ckpt holds the end of training
EVERY_EPOCH = ["callbacks.checkpoint.monitor=null"]
FAST_PATH = ["model.fast_step=true", "data.on_device=true"]


def step_losses(run_dir) -> list[float]:
    (metrics,) = run_dir.glob("**/metrics.csv")
    with metrics.open() as file:
        return [float(row["train/batch_loss"]) for row in csv.DictReader(file) if row.get("train/batch_loss")]


@pytest.fixture(scope="module")
def plain_and_fast(demo_root, tmp_path_factory):
    runs = {}
    for name, overrides in (("plain", PLAIN), ("fast", FAST_PATH)):
        runs[name] = tmp_path_factory.mktemp(name)
        train(
            compose_train([*TWO_EPOCHS, *overrides, *EVERY_EPOCH, f"data.root={demo_root}", f"output_dir={runs[name]}"])
        )
    yield runs
    for run in runs.values():
        shutil.rmtree(run)


@pytest.mark.slow
def test_fast_path_takes_the_same_steps_as_lightnings_loop(plain_and_fast):
    plain, fast = (step_losses(plain_and_fast[name]) for name in ("plain", "fast"))
    assert len(plain) == len(fast) == 8
    np.testing.assert_allclose(fast, plain, rtol=1e-6)
    assert len(set(plain)) == 8  # the steps really differ from each other


@pytest.mark.slow
def test_fast_path_ends_with_the_same_weights_step_count_and_schedule(plain_and_fast):
    plain, fast = (read_checkpoint(plain_and_fast[name] / "checkpoints" / "last.ckpt") for name in ("plain", "fast"))
    assert fast["global_step"] == plain["global_step"] == 8
    for key, value in plain["state_dict"].items():
        torch.testing.assert_close(fast["state_dict"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    (plain_group,), (fast_group,) = (c["optimizer_states"][0]["param_groups"] for c in (plain, fast))
    assert isinstance(fast_group["lr"], float) and fast_group["lr"] == pytest.approx(plain_group["lr"], rel=1e-9)
    assert plain["lr_schedulers"][0]["last_epoch"] == fast["lr_schedulers"][0]["last_epoch"] == 8


def test_device_batches_are_the_dataloaders_batches(demo_root):
    cfg = compose_train([*TWO_EPOCHS, "sampler=oversample", f"data.root={demo_root}"])
    datamodule = SkinDataModule(cfg.data, cfg.augment, cfg.sampler, cfg.seed)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    datamodule.cfg["on_device"], datamodule._on_device = True, None
    resident = datamodule.train_dataloader()
    assert isinstance(resident, DeviceBatches) and len(resident) == len(loader)
    for epoch in (0, 3):
        loader.sampler.set_epoch(epoch)
        resident.sampler.set_epoch(epoch)
        for (pixels, labels, indices), (same_pixels, same_labels, same_indices) in zip(loader, resident, strict=True):
            assert torch.equal(indices, same_indices) and torch.equal(labels, same_labels)
            assert torch.equal(pixels, same_pixels)


def test_device_batches_give_each_rank_an_equal_share_of_the_epoch():
    labels = torch.arange(10) % 3
    sampler = oversampler(labels.tolist(), 3, 1.0, seed=5)
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    shares = [
        torch.cat(
            [batch[2] for batch in DeviceBatches(images, torch.arange(10), labels, 2, sampler, rank=rank, world_size=3)]
        )
        for rank in range(3)
    ]
    assert [len(share) for share in shares] == [4, 4, 4]
    sequence = sampler.draw()
    assert torch.equal(torch.stack(shares, 1).flatten(), torch.cat([sequence, sequence[:2]]))
    dropping = DeviceBatches(images, torch.arange(10), labels, 3, EpochSampler(10, 0), drop_last=True)
    assert len(dropping) == 3 and all(len(batch[1]) == 3 for batch in dropping)


@pytest.mark.slow
def test_fast_path_stops_on_a_non_finite_loss_before_the_epochs_checkpoint(demo_root, tmp_path):
    cfg = compose_train(
        [
            *TWO_EPOCHS,
            *FAST_PATH,
            "data.image_size=32",
            f"data.root={demo_root}",
            f"output_dir={tmp_path}",
            "trainer.log_every_n_steps=50",
            "+callbacks.poison._target_=probes.PoisonAt",
            "+callbacks.poison.epoch=1",
            "+callbacks.poison.batch=1",
        ]
    )
    last = tmp_path / "checkpoints" / "last.ckpt"
    with pytest.raises(UserError) as caught:
        train(cfg)
    assert (
        f"the training loss became NaN or infinite at epoch 1, step 8: stopped; the last good checkpoint is {last}"
        in str(caught.value)
    )
    assert read_checkpoint(last)["epoch"] == 0


def test_fast_step_true_refuses_what_it_cannot_do(demo_root, tmp_path):
    cfg = compose_train(
        [*TWO_EPOCHS, *FAST_PATH, f"data.root={demo_root}", f"output_dir={tmp_path}", "trainer.gradient_clip_val=1.0"]
    )
    with pytest.raises(UserError, match="model.fast_step=true cannot be used with trainer.gradient_clip_val is set"):
        train(cfg)
