"""Entry point: class activation maps for chosen images or a checkpoint's worst-classified test images.

Each overlay shows the evidence for the class the model predicted, so a wrong answer can be traced
to what it looked at (the lesion, a ruler, a vignette) rather than guessed at. The map is read at a
layer whose grid still resolves something at the checkpoint's image size (see cam.py), and the
figure names that layer and grid so that nobody reads more precision into it than it has.
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
from pytorch_grad_cam.utils.image import show_cam_on_image
from torch.utils.tensorboard import SummaryWriter

from skin_lightning.cli import CONFIG_DIR, reported
from skin_lightning.data.augment import to_model_input
from skin_lightning.data.datamodule import SkinDataModule
from skin_lightning.data.images import decode_all, report_bad_images
from skin_lightning.errors import UserError
from skin_lightning.model.cam import check_method, choose_layer, class_maps
from skin_lightning.model.inference import (
    TrainedModel,
    load_checkpoint,
    predict_probs,
    resolve_device,
    to_checkpoint_labels,
)

log = logging.getLogger(__name__)


def overlays_of(images: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Each map in colour over its image (N, H, W, 3 in [0, 1]), the image weighted so the lesion stays visible."""
    pixels = images.astype(np.float32) / 255
    return (
        np.stack(
            [show_cam_on_image(pixel, heat, use_rgb=True, image_weight=0.6) for pixel, heat in zip(pixels, maps)]
        ).astype(np.float32)
        / 255
    )


def overlay_grid(
    images: np.ndarray,
    overlays: np.ndarray,
    titles: list[str],
    captions: list[str],
    heading: str,
    grid: tuple[int, int],
) -> plt.Figure:
    """Each image beside its overlay, up to four pairs a row (fewer images, a narrower figure); thin lines on the
    overlay mark the layer's grid cells, the finest detail the map can hold however smooth its colours look."""
    pairs_per_row = min(4, len(images))
    rows = -(-len(images) // pairs_per_row)
    figure, axes = plt.subplots(rows, 2 * pairs_per_row, figsize=(4 * pairs_per_row, 2.6 * rows + 0.4), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for k, (image, overlay, title, caption) in enumerate(zip(images, overlays, titles, captions)):
        left, right = (
            axes[k // pairs_per_row, 2 * (k % pairs_per_row)],
            axes[k // pairs_per_row, 2 * (k % pairs_per_row) + 1],
        )
        left.imshow(image)
        left.set_title(title, fontsize=7)
        right.imshow(overlay)
        height, width = image.shape[:2]
        for line in np.arange(1, grid[0]) * height / grid[0] - 0.5:
            right.axhline(line, color="white", linewidth=0.3, alpha=0.5)
        for line in np.arange(1, grid[1]) * width / grid[1] - 0.5:
            right.axvline(line, color="white", linewidth=0.3, alpha=0.5)
        right.set_title(caption, fontsize=7)
    figure.suptitle(heading, fontsize=9)
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
    check_method(cfg.method)
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = load_checkpoint(Path(cfg.ckpt_path), cfg.image_size)
    device = resolve_device(cfg.device)
    network = model.network.to(device)
    layer, grid = choose_layer(network, model.image_size, cfg.layer)
    where, cell = f"{layer}, {grid[0]}x{grid[1]}", model.image_size / grid[0]
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
    log.info(
        "%s at %s (one cell = %.0f px of a %d px image) for %d images",
        cfg.method,
        where,
        cell,
        model.image_size,
        len(order),
    )
    maps = class_maps(
        network, to_model_input(torch.from_numpy(images[order]).to(device)), predicted[order], layer, cfg.method
    )
    titles, captions = [], []
    for k, heat in zip(order, maps):
        truth = f"true {model.classes[labels[k]]}\n" if labels is not None else ""
        titles.append(f"{paths[k].name}\n{truth}predicted {model.classes[predicted[k]]} p={probs[k, predicted[k]]:.2f}")
        evidence = "" if heat.max() > 0 else "\nno positive evidence here"
        captions.append(f"{cfg.method}, {where}{evidence}")
    overlays = overlays_of(images[order], maps)
    target = "the activations' main pattern, whatever the class" if cfg.method == "eigencam" else "the predicted class"
    heading = f"{cfg.method} for {target} at {where} (one cell = {cell:.0f} px of {model.image_size} px)"
    figure = overlay_grid(images[order], overlays, titles, captions, heading, grid)
    path = output_dir / f"{cfg.method}.png"
    figure.savefig(path, dpi=120)
    with SummaryWriter(str(output_dir / "tensorboard")) as writer:
        writer.add_figure(f"{cfg.method}/grid", figure)
        writer.add_images(f"{cfg.method}/overlays", overlays, dataformats="NHWC")
        writer.add_text(f"{cfg.method}/layer", where)
    plt.close(figure)
    log.info("%s of %d images: %s (and TensorBoard in %s)", cfg.method, len(order), path, output_dir / "tensorboard")
    return path


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="explain")
def main(cfg: DictConfig) -> None:
    with reported(Path(cfg.output_dir)):
        explain(cfg)


if __name__ == "__main__":
    main()
