"""Post-hoc logit adjustment by hand and from both entry points, weight averaging as tested, the imbalance study."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from skin_lightning.cli import CONFIG_DIR
from skin_lightning.errors import UserError
from skin_lightning.evaluate import evaluate
from skin_lightning.results.logit_adjustment import adjust, choose_tau, resolve_tau
from skin_lightning.train import train

from conftest import FAST, compose_config, compose_train, run_train, target

CONF = Path(CONFIG_DIR)
# the study's arms: sampler, loss and post-hoc adjustment of each
ARMS = {
    "v4_oversample": ("oversample", "ce", None),
    "v2_class_weights": ("shuffle", "weighted_ce", None),
    "focal_loss": ("shuffle", "focal", None),
    "cb_focal": ("shuffle", "class_balanced", None),
    "balanced_softmax_loss": ("shuffle", "balanced_softmax", None),
    "logit_adjusted_loss": ("shuffle", "logit_adjusted", None),
    "ldam_drw": ("shuffle", "ldam", None),
    "posthoc_ce": ("shuffle", "ce", "auto"),
}


def test_adjustment_by_hand():
    # prior (3/4, 1/4), tau 1: p / prior = (0.6 / 0.75, 0.4 / 0.25) = (0.8, 1.6), normalised (1/3, 2/3)
    assert adjust(np.array([[0.6, 0.4]]), [3, 1], 1.0) == pytest.approx(np.array([[1 / 3, 2 / 3]]))
    # tau 2: (0.6 / 0.5625, 0.4 / 0.0625) = (16/15, 6.4)
    assert adjust(np.array([[0.6, 0.4]]), [3, 1], 2.0) == pytest.approx(np.array([[1 / 7, 6 / 7]]))
    assert adjust(np.array([[0.6, 0.4]]), [3, 1], 0.0) == pytest.approx(np.array([[0.6, 0.4]]))


def test_auto_picks_the_smallest_tau_that_balances_validation():
    # prior (0.9, 0.1): a rare-class image at (0.55, 0.45) flips to class 1 once 9^tau > 11/9 (tau > 0.09);
    # a common one at (0.9, 0.1) only once 9^tau > 9 (tau > 1): every tau in 0.1 .. 0.9 is perfect, 0.1 is chosen
    probs = np.array([[0.9, 0.1]] * 5 + [[0.55, 0.45]] * 5)
    labels = np.array([0] * 5 + [1] * 5)
    assert choose_tau(probs, labels, [9, 1]) == 0.1
    tau, note = resolve_tau("auto", [9, 1], lambda: (probs, labels))
    assert tau == 0.1 and "10 validation images" in note
    assert resolve_tau(0.5, [9, 1], lambda: pytest.fail("no validation needed"))[0] == 0.5
    for bad in ("often", -1, True):
        with pytest.raises(UserError, match="logit_adjustment="):
            resolve_tau(bad, [9, 1], lambda: (probs, labels))


@pytest.mark.slow
def test_training_tests_the_averaged_weights_and_evaluate_adjusts_the_same(demo_root, tmp_path):
    """The test report of a run with averaging=ema is what its checkpoint gives when evaluated on its own."""
    run = tmp_path / "run"
    overrides = [
        *FAST,
        "experiment=demo",
        f"data.root={demo_root}",
        f"output_dir={run}",
        "logger=csv",
        "averaging=ema",
        "callbacks.ema.decay=0.5",
        "trainer.max_epochs=2",
    ]
    train(compose_train([*overrides, "logit_adjustment=0.5"]))
    trained = json.loads((run / "metrics.json").read_text())
    assert trained["logit_adjustment"] == "tau=0.5, given"
    assert "- logit_adjustment: tau=0.5, given" in (run / "report.md").read_text()

    out = tmp_path / "evaluated"
    evaluate(
        compose_config(
            "evaluate",
            [
                f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
                f"data.root={demo_root}",
                f"output_dir={out}",
                "logit_adjustment=0.5",
            ],
        )
    )
    ours = pd.read_csv(run / "test_predictions.csv").set_index("path")
    theirs = pd.read_csv(out / "test_predictions.csv").set_index("path").loc[ours.index]
    columns = [c for c in ours.columns if c.startswith("prob_")]
    assert np.allclose(ours[columns].to_numpy(), theirs[columns].to_numpy(), atol=1e-4)

    auto = tmp_path / "auto"
    evaluate(
        compose_config(
            "evaluate",
            [
                f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
                f"data.root={demo_root}",
                f"output_dir={auto}",
                "logit_adjustment=auto",
            ],
        )
    )
    assert "validation images" in json.loads((auto / "metrics.json").read_text())["logit_adjustment"]


def test_the_study_sweeps_every_arm_against_v4():
    arms = sorted(path.stem for path in (CONF / "imbalance").glob("*.yaml"))
    study = OmegaConf.load(CONF / "experiment" / "imbalance_study.yaml")
    assert sorted(study.hydra.sweeper.params.imbalance.split(",")) == arms
    assert study.summary.reference == "v4_oversample" and study.hydra.mode == "MULTIRUN"
    assert sorted(ARMS) == arms
    for arm, (sampler, loss, adjustment) in ARMS.items():
        cfg = compose_train(["experiment=imbalance_study", "data.root=/data", f"imbalance={arm}"])
        assert (cfg.sampler._target_, cfg.loss._target_, cfg.logit_adjustment) == (
            target("sampler", sampler),
            target("loss", loss),
            adjustment,
        )
        assert (cfg.augment.rotation, cfg.optim._target_, cfg.model.arch, cfg.trainer.max_epochs) == (
            30,
            "torch.optim.SGD",
            "resnet50",
            20,
        )
    assert (
        compose_train(["experiment=imbalance_study", "data.root=/data", "imbalance=ldam_drw"]).loss.defer_epochs == 16
    )


@pytest.mark.slow
def test_the_study_runs_as_one_multirun_compared_with_v4(demo_root, tmp_path):
    sweep = tmp_path / "sweep"
    overrides = [
        "experiment=imbalance_study",
        f"data.root={demo_root}",
        *FAST,
        "model.arch=resnet18",
        "logger=csv",
        "+study.defer_epochs=1",
        "hydra.sweeper.params.seed=1",
        'hydra.sweeper.params.imbalance="v4_oversample,ldam_drw"',
        f"hydra.sweep.dir={sweep}",
    ]
    result = run_train(overrides, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    markdown = (sweep / "summary.md").read_text()
    assert "Reference: **imbalance=v4_oversample**" in markdown
    assert markdown.count("| completed |") == 2 and "| reference |" in markdown
    assert "| imbalance=ldam_drw |" in markdown


def test_best_is_an_imbalance_arm_with_the_extras_at_v4s_budget():
    best = compose_train(["experiment=best", "data.root=/data"])
    v4 = compose_train(["experiment=v4_selective", "data.root=/data"])
    for key in ("model.arch", "model.weights", "data.image_size", "data.batch_size", "trainer.max_epochs", "augment"):
        assert OmegaConf.select(best, key) == OmegaConf.select(v4, key), key
    assert (best.optim._target_, best.optim.scheduler._target_, best.loss.label_smoothing, best.tta) == (
        "torch.optim.AdamW",
        target("optim/scheduler", "cosine"),
        0.1,
        "dihedral",
    )
    assert best.callbacks.ema._target_ == "skin_lightning.model.callbacks.EMAWeights"
    assert (best.sampler._target_, best.loss._target_, best.logit_adjustment) in {
        (target("sampler", sampler), target("loss", loss), adjustment) for sampler, loss, adjustment in ARMS.values()
    }
