"""timm backbones (model=timm): built with our classes, trained on the fast step, then evaluated and explained
from the checkpoint's plain hyperparameters (exported: test_deploy.py). timm's tiny test_* models keep it to
seconds on a CPU."""

import pytest
import timm
import torch

from skin_lightning.errors import UserError
from skin_lightning.evaluate import evaluate
from skin_lightning.explain import explain
from skin_lightning.model.cam import choose_layer
from skin_lightning.model.checkpoints import read_checkpoint
from skin_lightning.model.inference import load_checkpoint
from skin_lightning.model.timm_network import timm_network

from conftest import FROM_SCRATCH, compose_config


def test_a_timm_network_has_our_classes_and_can_freeze_its_backbone():
    network = timm_network("test_efficientnet", 3, freeze_backbone=True, weights="none")
    assert network(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    trained = {name for name, parameter in network.named_parameters() if parameter.requires_grad}
    assert trained == {"classifier.weight", "classifier.bias"}


def test_a_local_weights_file_is_loaded_and_its_head_replaced(tmp_path):
    pretrained = timm.create_model("test_resnet")
    torch.save(pretrained.state_dict(), tmp_path / "weights.pth")
    network = timm_network("test_resnet", 3, weights=str(tmp_path / "weights.pth"), freeze_backbone=False)
    assert network.get_classifier().out_features == 3
    assert torch.equal(network.conv1[0].weight, pretrained.conv1[0].weight)
    torch.save({"nothing": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(UserError, match=r"model.weights=.*wrong.pth is not a state dict for timm's test_resnet"):
        timm_network("test_resnet", 3, weights=str(tmp_path / "wrong.pth"), freeze_backbone=False)


def test_a_bad_name_and_a_failed_download_are_explained(monkeypatch):
    with pytest.raises(UserError, match=r"model.name=efficientnet_b99 is not a timm model"):
        timm_network("efficientnet_b99", 3, **FROM_SCRATCH)

    def offline(*args, **kwargs):
        raise OSError("no internet")

    monkeypatch.setattr(timm, "create_model", offline)
    explained = r"(?s)could not fetch timm's pretrained weights of resnet18.*model.weights=none"
    with pytest.raises(UserError, match=explained):
        timm_network("resnet18", 3, weights="imagenet", freeze_backbone=False)


@pytest.mark.slow
def test_the_checkpoint_rebuilds_the_timm_network_from_plain_data(timm_checkpoint, demo_root, tmp_path):
    hparams = read_checkpoint(timm_checkpoint)["hyper_parameters"]  # torch.load(weights_only=True)
    assert hparams["model"]["_target_"] == "skin_lightning.model.timm_network.timm_network"
    model = load_checkpoint(timm_checkpoint)
    assert model.arch == "test_convnext" and type(model.network).__name__ == "ConvNeXt"
    summary = evaluate(
        compose_config("evaluate", [f"ckpt_path={timm_checkpoint}", f"data.root={demo_root}", f"output_dir={tmp_path}"])
    )
    assert 0 <= summary["balanced_accuracy"] <= 1


@pytest.mark.slow
def test_explain_reads_a_timm_feature_stage_with_a_6x6_grid(timm_checkpoint, demo_root, tmp_path):
    assert choose_layer(timm_network("efficientnet_b0", 8, **FROM_SCRATCH), 84) == ("blocks.4", (6, 6))
    assert choose_layer(timm_network("convnext_atto", 8, **FROM_SCRATCH), 84) == ("stages.1", (10, 10))
    path = explain(
        compose_config(
            "explain", [f"ckpt_path={timm_checkpoint}", f"data.root={demo_root}", f"output_dir={tmp_path}", "count=4"]
        )
    )
    assert path.is_file()
