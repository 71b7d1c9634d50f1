"""torchvision classifiers with their ImageNet head swapped for one sized to our classes."""

import logging
from pathlib import Path

import torch
import torchvision
from torch import nn

from skin_lightning.errors import UserError

log = logging.getLogger(__name__)


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


def _local_network(arch: str, path: Path) -> nn.Module:
    if not path.is_file():
        raise UserError(f"model.weights={path}: no such file (use imagenet, none, or a path to a .pth state dict)")
    network = torchvision.models.get_model(arch, weights=None)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state.get("model", state))
        network.load_state_dict(state)
    except Exception as error:
        raise UserError(f"model.weights={path} is not a state dict for torchvision's {arch}: {error}") from error
    return network


def build_network(arch: str, num_classes: int, weights: str = "none", freeze_backbone: bool = False) -> nn.Module:
    """`weights` is "imagenet" (torchvision download), "none", or the path of a local state dict."""
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise UserError(
            f"model.arch={arch} is not a torchvision classifier; "
            "e.g. resnet18, resnet50, efficientnet_b0, convnext_tiny"
        )
    if weights == "imagenet":
        network = _imagenet_network(arch)
    elif weights in ("none", None):
        network = torchvision.models.get_model(arch, weights=None)
    else:
        network = _local_network(arch, Path(weights))
    parent, name, head = _final_linear(network)
    setattr(parent, name, nn.Linear(head.in_features, num_classes))
    if freeze_backbone:
        for parameter in network.parameters():
            parameter.requires_grad = False
        for parameter in getattr(parent, name).parameters():
            parameter.requires_grad = True
    return network
