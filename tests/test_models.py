"""Weights: ImageNet download, a local file, or none; never a silent fallback."""

import urllib.error

import pytest
import torch
import torchvision

from skin_lightning.errors import UserError
from skin_lightning.model.networks import torchvision_network

from conftest import FROM_SCRATCH


def test_head_is_sized_to_the_classes():
    network = torchvision_network("resnet18", 8, **FROM_SCRATCH)
    assert network.fc.out_features == 8
    assert torchvision_network("mobilenet_v3_small", 3, **FROM_SCRATCH).classifier[-1].out_features == 3


def test_freeze_backbone_trains_only_the_head():
    network = torchvision_network("resnet18", 8, freeze_backbone=True, weights="none")
    trainable = {name for name, p in network.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}


def test_local_weights_file_is_loaded(tmp_path):
    source = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    network = torchvision_network("resnet18", 8, weights=str(path), freeze_backbone=False)
    assert torch.equal(network.conv1.weight, source.conv1.weight)


def test_bad_weights_file_and_arch_are_named(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        torchvision_network("resnet18", 8, weights=str(tmp_path / "missing.pth"), freeze_backbone=False)
    wrong = tmp_path / "wrong.pth"
    torch.save({"x": torch.zeros(1)}, wrong)
    with pytest.raises(UserError, match="wrong.pth is not a state dict"):
        torchvision_network("resnet18", 8, weights=str(wrong), freeze_backbone=False)
    with pytest.raises(UserError, match="model.arch=resnet5000"):
        torchvision_network("resnet5000", 8, **FROM_SCRATCH)


def test_failed_download_says_how_to_go_on(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(UserError, match=r"model\.weights=/path/to/resnet18-.*\.pth.*model\.weights=none"):
        torchvision_network("resnet18", 8, weights="imagenet", freeze_backbone=False)
