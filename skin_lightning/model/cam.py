"""Class activation maps from the grad-cam library, read at a layer whose grid can still say where.

A map is only as fine as the grid of the layer it is read from. ResNet's last stage is 3x3 at 84 px,
so a map taken there can name a ninth of the image at best, however smooth its upsampled picture
looks. The default layer is therefore the deepest stage whose grid is still at least MIN_GRID cells a
side (ResNet at 84 px: layer3, 6x6), and every figure and log line names the layer with its grid. A timm
network's stages are those its `feature_info` lists (EfficientNet: blocks.N, ConvNeXt: stages.N).
"""

import logging

import numpy as np
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from skin_lightning.errors import UserError

log = logging.getLogger(__name__)

METHODS = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
    "scorecam": ScoreCAM,
}
MIN_GRID = 6
# Score-CAM runs the network once per channel of the layer for every image; chunks bound its memory.
CHUNK = 8


def check_method(method: str) -> None:
    if method not in METHODS:
        raise UserError(f"method={method} is invalid: expected one of {', '.join(METHODS)}")


def _grids(network: nn.Module, layers: dict[str, nn.Module], image_size: int) -> dict[str, tuple[int, ...]]:
    """The output shape (without the batch) of each named layer that runs, in the order they run, for one
    blank image of the run's size. Leaves the network in eval mode, as explaining needs it."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(_module, _inputs, output) -> None:
            shapes.setdefault(name, tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else ())

        return hook

    hooks = [layer.register_forward_hook(record(name)) for name, layer in layers.items()]
    try:
        device = next(network.parameters()).device
        with torch.no_grad():
            network.eval()(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def _stages(network: nn.Module) -> dict[str, nn.Module]:
    """The network's stages in forward order: timm's feature stages (`feature_info`) where it has them, else
    its children with the blocks of its `features` (torchvision's EfficientNet, ConvNeXt, DenseNet, VGG)."""
    feature_info = getattr(network, "feature_info", None)
    if isinstance(feature_info, list) and feature_info:
        return {info["module"]: network.get_submodule(info["module"]) for info in feature_info}
    stages = {}
    for name, child in network.named_children():
        if name == "features" and isinstance(child, nn.Sequential):
            stages.update({f"features.{inner}": block for inner, block in child.named_children()})
        else:
            stages[name] = child
    return stages


def stage_grids(network: nn.Module, image_size: int) -> dict[str, tuple[int, int]]:
    """The spatial grid of each stage whose output is still a grid, in forward order."""
    shapes = _grids(network, _stages(network), image_size)
    return {name: shape[1:] for name, shape in shapes.items() if len(shape) == 3 and max(shape[1:]) > 1}


def _describe(grids: dict[str, tuple[int, int]]) -> str:
    return ", ".join(f"{name} ({h}x{w})" for name, (h, w) in grids.items())


def choose_layer(network: nn.Module, image_size: int, name: str | None = None) -> tuple[str, tuple[int, int]]:
    """The layer named by `layer=NAME`, or the deepest stage whose grid is at least MIN_GRID a side."""
    grids = stage_grids(network, image_size)
    if name is None:
        fine = [stage for stage, grid in grids.items() if min(grid) >= MIN_GRID]
        if fine:
            return fine[-1], grids[fine[-1]]
        finest = max(grids, key=lambda stage: min(grids[stage]))
        log.warning("no layer has a %dx%d grid at %d px; using the finest, %s", MIN_GRID, MIN_GRID, image_size, finest)
        return finest, grids[finest]
    name = str(name)  # layer=0 reaches here as an int
    try:
        layer = network.get_submodule(name)
    except AttributeError:
        raise UserError(
            f"layer={name} is not a layer of this network: use one of {_describe(grids)}, "
            f"or a block inside one (e.g. {next(reversed(grids))}.0)"
        ) from None
    shape = _grids(network, {name: layer}, image_size).get(name, ())
    if len(shape) != 3:
        raise UserError(f"layer={name} gives no spatial grid (output shape {shape}): use one of {_describe(grids)}")
    return name, shape[1:]


def class_maps(network: nn.Module, batch: torch.Tensor, classes: np.ndarray, layer: str, method: str) -> np.ndarray:
    """Maps (N, H, W) in [0, 1] of the evidence for the given class of each image, at the input's size.

    EigenCAM ignores the class: it is the first principal component of the layer's activations.
    """
    check_method(method)
    maps = []
    with METHODS[method](model=network, target_layers=[network.get_submodule(layer)]) as cam:
        for start in range(0, len(batch), CHUNK):
            targets = [ClassifierOutputTarget(int(k)) for k in classes[start : start + CHUNK]]
            maps.append(cam(input_tensor=batch[start : start + CHUNK], targets=targets))
    return np.concatenate(maps) if maps else np.empty((0, *batch.shape[2:]), dtype=np.float32)
