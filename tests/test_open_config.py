"""A new loss and a new backbone are YAML files in the user's own config folder, outside the package: no
Python, no list of names to update. The demo trains with them from the command line."""

import json
import textwrap

import pytest

from skin_lightning.model.checkpoints import read_checkpoint
from skin_lightning.model.inference import load_checkpoint

from conftest import FAST, run_train

# an existing torch loss with its own arguments
LOSS = """
_target_: torch.nn.CrossEntropyLoss
label_smoothing: 0.2
"""
# a timm architecture the package names nowhere, on the timm group's other settings
BACKBONE = """
defaults:
  - timm
  - _self_

name: test_convnext
weights: none
"""


@pytest.mark.slow
def test_a_loss_and_a_backbone_added_by_yaml_train_the_demo(demo_root, tmp_path):
    extra = tmp_path / "my_configs"
    for group, name, text in (("loss", "smooth_ce", LOSS), ("model", "tiny_convnext", BACKBONE)):
        (extra / group).mkdir(parents=True)
        (extra / group / f"{name}.yaml").write_text(textwrap.dedent(text))
    run = tmp_path / "run"
    result = run_train(
        [
            *FAST,
            "experiment=demo",
            "loss=smooth_ce",
            "model=tiny_convnext",
            f"hydra.searchpath=[file://{extra}]",
            f"data.root={demo_root}",
            f"output_dir={run}",
            "logger=csv",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert 0 <= json.loads((run / "metrics.json").read_text())["balanced_accuracy"] <= 1
    checkpoint = run / "checkpoints" / "best.ckpt"
    hparams = read_checkpoint(checkpoint)["hyper_parameters"]
    assert hparams["loss"] == {"_target_": "torch.nn.CrossEntropyLoss", "label_smoothing": 0.2}
    assert load_checkpoint(checkpoint).arch == "test_convnext"


@pytest.mark.slow
def test_a_misspelt_setting_in_a_users_file_is_named(demo_root, tmp_path):
    extra = tmp_path / "my_configs"
    (extra / "loss").mkdir(parents=True)
    (extra / "loss" / "smooth_ce.yaml").write_text("_target_: torch.nn.CrossEntropyLoss\nlabel_smothing: 0.2\n")
    result = run_train(
        [*FAST, "experiment=demo", "loss=smooth_ce", f"hydra.searchpath=[file://{extra}]", f"data.root={demo_root}",
         f"output_dir={tmp_path / 'run'}"],
        cwd=tmp_path,
    )
    assert result.returncode == 1
    named = "loss.label_smothing is not a setting of torch.nn.CrossEntropyLoss; did you mean label_smoothing?"
    assert named in result.stdout + result.stderr
