"""Long-tail losses against values worked out by hand, their limiting cases, and the deferred schedules."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from skin_lightning.cli import CONFIG_DIR
from skin_lightning.config import check_config
from skin_lightning.data.sampling import EpochSampler, oversampler
from skin_lightning.errors import UserError
from skin_lightning.parts import build
from skin_lightning.train import train

from conftest import FAST, compose_train

LOSSES = sorted(path.stem for path in (Path(CONFIG_DIR) / "loss").glob("*.yaml"))
# Two images, two classes: logits (0, 0) for class 0 gives p = 1/2; (0, ln 3) for class 1 gives p = 3/4.
LOGITS = torch.tensor([[0.0, 0.0], [0.0, math.log(3)]])
LABELS = torch.tensor([0, 1])
LOG2, LOG4_3 = math.log(2), math.log(4 / 3)


def loss_cfg(name: str, **settings) -> dict:
    defaults = {
        "weighted_ce": {"weight_exponent": 1.0, "defer_epochs": 0},
        "focal": {"gamma": 2.0, "alpha_exponent": 0.0, "defer_epochs": 0},
        "class_balanced": {"beta": 0.999, "gamma": 0.0, "defer_epochs": 0},
        "logit_adjusted": {"tau": 1.0},
        "ldam": {"max_margin": 0.5, "scale": 1.0, "beta": 0.9999, "defer_epochs": 0},
    }
    chosen = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "loss" / f"{name}.yaml"))
    return {**chosen, "label_smoothing": 0.0, **defaults.get(name, {}), **settings}


def build_loss(loss: dict, counts: list[int]):
    return build(loss, "loss", class_counts=counts)


def value(name: str, counts, logits=LOGITS, labels=LABELS, **settings) -> float:
    return build_loss(loss_cfg(name, **settings), counts)(logits, labels).item()


def test_cross_entropy_and_weighted_cross_entropy_by_hand():
    assert value("ce", [3, 1]) == pytest.approx((LOG2 + LOG4_3) / 2)
    # weights 1/3 and 1: a weighted mean, (1/3 * ln 2 + ln 4/3) / (1/3 + 1)
    assert value("weighted_ce", [3, 1]) == pytest.approx((LOG2 / 3 + LOG4_3) / (4 / 3))


def test_weighted_ce_gives_the_numbers_it_always_gave():
    counts = [735, 3223, 2524, 139, 4422, 12775, 528, 153]
    logits, labels = torch.randn(16, 8, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 8
    before = F.cross_entropy(
        logits, labels, weight=torch.tensor(counts, dtype=torch.float64).pow(-1).float(), label_smoothing=0.1
    )
    assert torch.equal(build_loss(loss_cfg("weighted_ce", label_smoothing=0.1), counts)(logits, labels), before)
    assert torch.equal(build_loss(loss_cfg("ce"), counts)(logits, labels), F.cross_entropy(logits, labels))


def test_focal_by_hand():
    # (1 - p)^2 * -ln p: p = 1/2 -> ln 2 / 4; p = 3/4 -> ln(4/3) / 16
    assert value("focal", [3, 1]) == pytest.approx((LOG2 / 4 + LOG4_3 / 16) / 2)
    # with alpha = 1/count: weights 1/3 and 1
    assert value("focal", [3, 1], alpha_exponent=1.0) == pytest.approx((LOG2 / 4 / 3 + LOG4_3 / 16) / (4 / 3))


def test_class_balanced_by_hand():
    # beta 1/2, counts 1 and 2: weights (1/2)/(1/2) = 1 and (1/2)/(3/4) = 2/3
    assert value("class_balanced", [1, 2], beta=0.5) == pytest.approx((LOG2 + 2 / 3 * LOG4_3) / (5 / 3))
    focal = (LOG2 / 4 + 2 / 3 * LOG4_3 / 16) / (5 / 3)
    assert value("class_balanced", [1, 2], beta=0.5, gamma=2.0) == pytest.approx(focal)


def test_balanced_softmax_and_logit_adjusted_by_hand():
    zeros = torch.zeros(2, 2)
    # prior (3/4, 1/4): softmax(0 + log prior) = prior, so the loss is -log prior of the label
    assert value("balanced_softmax", [3, 1], logits=zeros) == pytest.approx((LOG4_3 + math.log(4)) / 2)
    # tau 2: softmax(2 log prior) is proportional to (9/16, 1/16), so p = (0.9, 0.1)
    assert value("logit_adjusted", [3, 1], logits=zeros, tau=2.0) == pytest.approx((-math.log(0.9) - math.log(0.1)) / 2)


def test_ldam_by_hand():
    # counts 1 and 16: n^-1/4 = (1, 1/2), scaled to the largest 0.5 -> margins (0.5, 0.25); scale 2
    # class 1 from logits (0, 0): 2 * (0, -0.25) = (0, -0.5), loss ln(1 + e^0.5)
    loss = value("ldam", [1, 16], logits=torch.zeros(1, 2), labels=torch.tensor([1]), scale=2.0)
    assert loss == pytest.approx(math.log(1 + math.exp(0.5)))


def test_limiting_cases():
    counts = [735, 3223, 139, 12775]
    logits = torch.randn(32, 4, generator=torch.Generator().manual_seed(1)) * 3
    labels = torch.arange(32) % 4
    ce = value("ce", counts, logits, labels)
    assert value("focal", counts, logits, labels, gamma=0.0) == pytest.approx(ce, rel=1e-6)
    assert value("logit_adjusted", counts, logits, labels, tau=0.0) == pytest.approx(ce, rel=1e-6)
    assert value("class_balanced", counts, logits, labels, beta=0.0) == pytest.approx(ce, rel=1e-6)
    assert value("ldam", counts, logits, labels, max_margin=0.0, defer_epochs=99) == pytest.approx(ce, rel=1e-6)
    assert value("logit_adjusted", counts, logits, labels, tau=1.0) == pytest.approx(
        value("balanced_softmax", counts, logits, labels), rel=1e-6
    )
    focal = value("focal", counts, logits, labels)
    assert value("class_balanced", counts, logits, labels, beta=0.0, gamma=2.0) == pytest.approx(focal, rel=1e-6)


@pytest.mark.parametrize("name", LOSSES)
def test_gradients_are_finite_even_for_confident_logits(name):
    logits = (torch.randn(8, 4, generator=torch.Generator().manual_seed(2)) * 60).requires_grad_()
    loss = build_loss(loss_cfg(name, label_smoothing=0.1), [500, 50, 5, 1])(logits, torch.tensor([0, 1, 2, 3] * 2))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_an_empty_class_is_a_clear_error():
    with pytest.raises(UserError, match="needs every class"):
        build_loss(loss_cfg("balanced_softmax"), [10, 0, 3])


def test_deferred_reweighting_switches_the_buffer_in_place():
    loss = build_loss(loss_cfg("ldam", beta=0.5, defer_epochs=2), [1, 16])
    buffer = loss.weight
    loss.set_epoch(1)
    assert loss.weight.tolist() == [1.0, 1.0]
    loss.set_epoch(2)
    assert loss.weight is buffer  # the same storage: a captured CUDA graph sees the switch
    assert loss.weight.tolist() == pytest.approx([1.0, 0.5 / (1 - 0.5**16)])


def test_deferred_resampling_shuffles_then_oversamples():
    labels = [0] * 90 + [1] * 10
    sampler = oversampler(labels, 2, 1.0, seed=3, defer_epochs=2)
    orders = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
    assert sorted(orders[0]) == sorted(orders[1]) == list(range(100))  # a permutation: every image once
    assert all(np.bincount(np.asarray(labels)[order])[1] > 30 for order in orders[2:])  # about half are class 1
    fresh = oversampler(labels, 2, 1.0, seed=3, defer_epochs=2)
    fresh.set_epoch(3)  # a resumed run: the same draws as the run that went through every epoch
    assert list(fresh) == orders[3]
    assert list(EpochSampler(100, 3, None, defer_epochs=2)) == orders[0]


@pytest.mark.slow
def test_deferred_switch_happens_at_the_named_epoch_also_after_resume(demo_root, tmp_path):
    record = tmp_path / "weights.jsonl"
    run = [
        *FAST,
        "experiment=demo",
        f"data.root={demo_root}",
        "data.image_size=16",
        "data.batch_size=4",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "logger=csv",
        "loss=weighted_ce",
        "loss.defer_epochs=2",
        f"output_dir={tmp_path}",
        "+callbacks.record._target_=probes.RecordLossWeights",
        f"+callbacks.record.path={record}",
    ]
    train(compose_train([*run, "trainer.max_epochs=2"]))
    first_run = len(record.read_text().splitlines())
    train(compose_train([*run, "trainer.max_epochs=4", "resume=auto"]))
    seen = [json.loads(line) for line in record.read_text().splitlines()]
    assert {epoch for epoch, _ in seen[first_run:]} >= {2, 3}  # the resumed run trained epochs 2 and 3
    weighted = seen[-1][1]
    ones = [1.0] * len(weighted)
    assert len(set(weighted)) > 1
    assert all(weights == (ones if epoch < 2 else weighted) for epoch, weights in seen)


@pytest.mark.parametrize(
    "override, key",
    [("loss.beta=1.0", "loss.beta"), ("loss.gamma=-1", "loss.gamma"), ("loss.defer_epochs=1.5", "loss.defer_epochs")],
)
def test_bad_settings_name_their_key(override, key):
    with pytest.raises(UserError, match=key):
        check_config(compose_train(["data.root=/data", "loss=class_balanced", override]))


def test_a_bad_deferral_of_the_sampler_names_its_key():
    with pytest.raises(UserError, match="sampler.defer_epochs"):
        check_config(compose_train(["data.root=/data", "sampler=oversample", "sampler.defer_epochs=-1"]))
