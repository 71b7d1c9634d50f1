"""Backbones with their ImageNet head swapped for one sized to our classes, each a config choice (`model=...`).

`model.<_target_>` names the function that builds the network; it takes the number of classes at build
time. The rest of the model group (channels_last, compile, fast_step) is read by the LightningModule.
"""

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
import torchvision
from torch import nn

from skin_lightning.errors import UserError
from skin_lightning.parts import build

log = logging.getLogger(__name__)

# the model group's settings that the LightningModule reads; every other key is an argument of the network's builder
TRAINING_SETTINGS = ("channels_last", "compile", "fast_step")
# what checkpoints written before the network had a `_target_` were built with
TORCHVISION = {"_target_": "skin_lightning.model.networks.torchvision_network", "_partial_": True}


def _final_linear(network: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """The parent, attribute name and module of the last Linear layer (the classifier head)."""
    found = None
    for parent in network.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                found = (parent, name, child)
    if found is None:
        raise UserError(f"model.arch={type(network).__name__} has no Linear classifier head to replace")
    return found


def load_weights_file(network: nn.Module, path: Path, describe: str) -> None:
    """A local state dict (.pth/.pt through torch.load(weights_only=True), or .safetensors) into `network`."""
    if not path.is_file():
        raise UserError(f"model.weights={path}: no such file (use imagenet, none, or a path to a .pth state dict)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state.get("model", state))
        network.load_state_dict(state)
    except Exception as error:
        raise UserError(f"model.weights={path} is not a state dict for {describe}: {error}") from error


def freeze_all_but(network: nn.Module, head: nn.Module) -> None:
    """`model.freeze_backbone=true`: only the new classification layer trains."""
    for parameter in network.parameters():
        parameter.requires_grad = False
    for parameter in head.parameters():
        parameter.requires_grad = True


def _imagenet_network(arch: str) -> nn.Module:
    weights = torchvision.models.get_model_weights(arch).DEFAULT
    try:
        return torchvision.models.get_model(arch, weights=weights)
    except (OSError, RuntimeError) as error:
        raise UserError(
            f"could not download the ImageNet weights of {arch} ({error}).\n"
            f"On a machine without internet, fetch {weights.url} elsewhere and pass "
            f"model.weights=/path/to/{Path(weights.url).name}, or train from scratch with model.weights=none."
        ) from error


def torchvision_network(arch: str, num_classes: int, weights: str, freeze_backbone: bool) -> nn.Module:
    """`weights` is "imagenet" (torchvision download), "none", or the path of a local state dict."""
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise UserError(
            f"model.arch={arch} is not a torchvision classifier; "
            "e.g. resnet18, resnet50, efficientnet_b0, convnext_tiny (or model=timm model.name=... for timm's)"
        )
    if weights == "imagenet":
        network = _imagenet_network(arch)
    else:
        network = torchvision.models.get_model(arch, weights=None)
        if weights not in ("none", None):
            load_weights_file(network, Path(weights), f"torchvision's {arch}")
    parent, name, head = _final_linear(network)
    setattr(parent, name, nn.Linear(head.in_features, num_classes))
    if freeze_backbone:
        freeze_all_but(network, getattr(parent, name))
    return network


def network_config(model: Mapping) -> dict:
    """The network builder's part of the model group (of a config or a checkpoint's plain hyperparameters)."""
    return {**TORCHVISION, **{key: value for key, value in model.items() if key not in TRAINING_SETTINGS}}


def make_network(model: Mapping, num_classes: int, **settings) -> nn.Module:
    """The network a model group describes; `settings` replace its own (evaluation passes weights="none")."""
    return build({**network_config(model), **settings}, "model", num_classes=num_classes)


def network_name(model: Mapping) -> str:
    """How logs, errors and exported files name the network: its architecture, else its builder."""
    return str(model.get("arch") or model.get("name") or network_config(model)["_target_"])
