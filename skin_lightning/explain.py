"""Entry point: Grad-CAM overlays for chosen images or a checkpoint's worst-classified test images.

Each overlay shows the evidence for the class the model predicted, so a wrong answer can be traced
to what it looked at (the lesion, a ruler, a vignette) rather than guessed at.
"""

import logging
from pathlib import Path

import hydra
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from omegaconf import DictConfig, ListConfig
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from skin_lightning.cli import CONFIG_DIR, reported
from skin_lightning.data.augment import to_model_input
from skin_lightning.data.datamodule import SkinDataModule
from skin_lightning.data.images import decode_all, report_bad_images
from skin_lightning.errors import UserError
from skin_lightning.model.inference import (
    TrainedModel,
    load_checkpoint,
    predict_probs,
    resolve_device,
    to_checkpoint_labels,
)

log = logging.getLogger(__name__)


def target_layer(network: nn.Module) -> nn.Module:
    """The last block whose output still has a spatial grid: ResNet's layer4, or the end of `features`."""
    if hasattr(network, "layer4"):
        return network.layer4[-1]
    if hasattr(network, "features"):
        return network.features[-1]
    convolutions = [module for module in network.modules() if isinstance(module, nn.Conv2d)]
    if not convolutions:
        raise UserError(f"{type(network).__name__} has no convolution for Grad-CAM to explain")
    return convolutions[-1]


def grad_cam(model: TrainedModel, images: np.ndarray, classes: np.ndarray, device: torch.device) -> np.ndarray:
    """Overlays (N, H, W, 3) in [0, 1] of the Grad-CAM map for the given class of each image."""
    network = model.network.to(device)
    batch = to_model_input(torch.from_numpy(images).to(device))
    with GradCAM(model=network, target_layers=[target_layer(network)]) as cam:
        maps = cam(input_tensor=batch, targets=[ClassifierOutputTarget(int(k)) for k in classes])
    pixels = images.astype(np.float32) / 255
    overlays = [show_cam_on_image(pixel, heat, use_rgb=True) for pixel, heat in zip(pixels, maps)]
    return np.stack(overlays).astype(np.float32) / 255


def overlay_grid(images: np.ndarray, overlays: np.ndarray, titles: list[str]) -> plt.Figure:
    """Each image beside its overlay, four pairs a row."""
    pairs_per_row = 4
    rows = -(-len(images) // pairs_per_row)
    figure, axes = plt.subplots(rows, 2 * pairs_per_row, figsize=(4 * pairs_per_row, 2.6 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for k, (image, overlay, title) in enumerate(zip(images, overlays, titles)):
        row, column = k // pairs_per_row, 2 * (k % pairs_per_row)
        left, right = axes[row, column], axes[row, column + 1]
        left.imshow(image)
        left.set_title(title, fontsize=7)
        right.imshow(overlay)
        right.set_title("Grad-CAM", fontsize=7)
    figure.tight_layout()
    return figure


def _chosen(cfg: DictConfig, model: TrainedModel) -> tuple[list[Path], np.ndarray | None]:
    """The files to explain and, for test images, their labels in the checkpoint's classes."""
    if isinstance(cfg.images, ListConfig):
        return [Path(path) for path in cfg.images], None
    if cfg.images != "worst":
        raise UserError(f"images={cfg.images} is invalid: use worst, or a list of image files images=[a.jpg,b.jpg]")
    datamodule = SkinDataModule(cfg.data, None, None, cfg.seed)
    datamodule.prepare_data()
    samples = datamodule.read_splits()["test"]
    return samples.paths, to_checkpoint_labels(samples, datamodule.classes, model.classes, f"data.root={cfg.data.root}")


def explain(cfg: DictConfig) -> Path:
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = load_checkpoint(Path(cfg.ckpt_path), cfg.image_size)
    device = resolve_device(cfg.device)
    paths, labels = _chosen(cfg, model)
    images, good, bad = decode_all(paths, model.image_size, desc="decoding")
    report_bad_images(bad, "error" if labels is None else cfg.data.on_bad_image, output_dir / "bad_images.tsv")
    paths = [path for path, keep in zip(paths, good) if keep]
    probs = predict_probs(model, images, device=device)
    predicted = probs.argmax(axis=1)
    order = np.arange(len(paths))
    if labels is not None:
        labels = labels[good]
        order = np.argsort(probs[order, labels])[: cfg.count]
    titles = []
    for k in order:
        truth = f"true {model.classes[labels[k]]}\n" if labels is not None else ""
        titles.append(f"{paths[k].name}\n{truth}predicted {model.classes[predicted[k]]} {probs[k, predicted[k]]:.2f}")
    overlays = grad_cam(model, images[order], predicted[order], device)
    figure = overlay_grid(images[order], overlays, titles)
    grid = output_dir / "gradcam.png"
    figure.savefig(grid, dpi=120)
    with SummaryWriter(str(output_dir / "tensorboard")) as writer:
        writer.add_figure("gradcam/grid", figure)
        writer.add_images("gradcam/overlays", overlays, dataformats="NHWC")
    plt.close(figure)
    log.info("Grad-CAM of %d images: %s (and TensorBoard in %s)", len(order), grid, output_dir / "tensorboard")
    return grid


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="explain")
def main(cfg: DictConfig) -> None:
    with reported(Path(cfg.output_dir)):
        explain(cfg)


if __name__ == "__main__":
    main()
