"""A trained checkpoint outside Lightning: its network, class names and input size, and predictions.

Evaluation, prediction, explanation and export all start here, so they load a checkpoint the same
safe way (torch.load with weights_only=True, the network rebuilt without downloading weights) and
feed it images exactly as training did (augment.to_model_input).
"""

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from skin_lightning.data.augment import IMAGENET_MEAN, IMAGENET_STD, to_model_input
from skin_lightning.data.layouts import Samples
from skin_lightning.errors import UserError
from skin_lightning.model.checkpoints import read_checkpoint
from skin_lightning.model.networks import make_network, network_name

log = logging.getLogger(__name__)

TTA_CHOICES = ("none", "flips", "dihedral")


@dataclass(frozen=True)
class TrainedModel:
    network: nn.Module
    classes: list[str]
    image_size: int
    arch: str
    class_counts: list[int] | None = None  # of the training split, for post-hoc logit adjustment


def load_checkpoint(path: Path, image_size: int | None = None) -> TrainedModel:
    """`image_size` is needed only for checkpoints saved before the input size was recorded in them."""
    path = Path(path)
    checkpoint = read_checkpoint(path)
    try:
        hparams, state = checkpoint["hyper_parameters"], checkpoint["state_dict"]
        classes, model = list(hparams["classes"]), hparams["model"]
    except (KeyError, TypeError) as error:
        raise UserError(
            f"ckpt_path={path} is not a skin_lightning training checkpoint ({type(error).__name__}: {error})"
        ) from error
    stored = hparams.get("preprocessing") or {}
    if stored and (tuple(stored["mean"]) != IMAGENET_MEAN or tuple(stored["std"]) != IMAGENET_STD):
        raise UserError(
            f"ckpt_path={path} was trained with normalisation {stored['mean']}/{stored['std']}, "
            "which this version cannot reproduce"
        )
    size = image_size or stored.get("image_size")
    if size is None:
        raise UserError(
            f"ckpt_path={path} does not record its input size: "
            "pass image_size=N (the data.image_size it was trained with)"
        )
    if image_size and stored.get("image_size") not in (None, image_size):
        log.warning("image_size=%d overrides the %d the checkpoint was trained at", image_size, stored["image_size"])
    # the checkpoint holds the weights: nothing is downloaded or read from the file the network started from
    network = make_network(model, len(classes), **({"weights": "none"} if "weights" in model else {}))
    weights = {key.removeprefix("net."): value for key, value in state.items() if key.startswith("net.")}
    try:
        network.load_state_dict(weights)
    except RuntimeError as error:
        raise UserError(
            f"ckpt_path={path}: its weights do not fit a {network_name(model)} with {len(classes)} classes: {error}"
        ) from error
    # to_model_input hands over channels_last batches; a network in the same layout runs several times faster on CPU
    network = network.to(memory_format=torch.channels_last).eval()
    return TrainedModel(network, classes, int(size), network_name(model), hparams.get("class_counts"))


def to_checkpoint_labels(
    samples: Samples, data_classes: list[str], model_classes: list[str], source: str
) -> np.ndarray:
    """Data labels -> indices into the checkpoint's classes, matched by name."""
    present = sorted({data_classes[label] for label in samples.labels})
    unknown = [name for name in present if name not in model_classes]
    if unknown:
        raise UserError(
            f"{source} has images of class(es) {', '.join(unknown)} that the checkpoint does not know "
            f"(it predicts {', '.join(model_classes)}); remove them or evaluate a checkpoint trained on them"
        )
    mapping = np.array([model_classes.index(name) if name in model_classes else -1 for name in data_classes])
    return mapping[np.asarray(samples.labels, dtype=np.int64)]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise UserError(f"device={name} is not a torch device: use auto, cpu or cuda") from error


def check_tta(tta: str) -> None:
    if tta not in TTA_CHOICES:
        raise UserError(f"tta={tta} is invalid: expected one of {', '.join(TTA_CHOICES)}")


def tta_views(batch: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """The symmetries a dermoscopy image has no preferred orientation under: flips, then also 90-degree turns."""
    views = [batch]
    if tta in ("flips", "dihedral"):
        views += [batch.flip(3), batch.flip(2), batch.flip(2, 3)]
    if tta == "dihedral":
        turned = batch.transpose(2, 3)
        views += [turned, turned.flip(3), turned.flip(2), turned.flip(2, 3)]
    return views


@torch.inference_mode()
def predict_batches(
    model: TrainedModel, batches: Iterable[torch.Tensor], tta: str = "none", device: torch.device | None = None
) -> np.ndarray:
    """Class probabilities of uint8 NHWC batches, averaged over the TTA views.

    Batches rather than one array, so a split is read batch by batch where it is kept (a data loader, the
    decoded store) instead of being copied whole first.
    """
    device = device or torch.device("cpu")
    network = model.network.to(device)
    out = []
    for images in batches:
        batch = to_model_input(torch.as_tensor(images).to(device))
        probs = torch.stack([network(view).float().softmax(dim=1) for view in tta_views(batch, tta)]).mean(dim=0)
        out.append(probs.cpu().numpy())
    return np.concatenate(out) if out else np.empty((0, len(model.classes)), dtype=np.float32)


def array_batches(images: np.ndarray, batch_size: int) -> Iterator[torch.Tensor]:
    """Consecutive batches of an array of images, without copying them."""
    return (torch.from_numpy(images[start : start + batch_size]) for start in range(0, len(images), batch_size))


def predict_probs(
    model: TrainedModel, images: np.ndarray, batch_size: int = 64, tta: str = "none", device: torch.device | None = None
) -> np.ndarray:
    """Class probabilities of uint8 NHWC images, averaged over the TTA views."""
    return predict_batches(model, array_batches(images, batch_size), tta, device)
