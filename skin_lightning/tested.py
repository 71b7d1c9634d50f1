"""What `train` evaluates after fit: the tested checkpoint, its network, and the splits as the evaluation reads them."""

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from skin_lightning.data.datamodule import SkinDataModule, keep_batch
from skin_lightning.model.checkpoints import checkpoint_epoch
from skin_lightning.model.inference import TrainedModel, load_checkpoint
from skin_lightning.model.module import SkinClassifier
from skin_lightning.model.networks import network_name
from skin_lightning.results.evaluation import Split

log = logging.getLogger(__name__)


def tested_checkpoint(trainer: L.Trainer) -> str | None:
    """The best checkpoint, or None when there is none (validation off or never run): the last weights are tested."""
    best = next((cb.best_model_path for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)), "")
    if best:
        return best
    log.warning("no best checkpoint (validation was off or never ran): testing the last weights")
    return None


def which_weights(checkpoint: str | None, current_epoch: int) -> str:
    """Which weights are tested, for the test figure's title: "best checkpoint (epoch 3)", rarely the last epoch."""
    if checkpoint:
        return f"{Path(checkpoint).stem} checkpoint (epoch {checkpoint_epoch(checkpoint)})"
    return f"last weights (epoch {current_epoch})"


def tested_model(checkpoint: str | None, module: SkinClassifier) -> TrainedModel:
    """The tested network: the checkpoint loaded as `evaluate` loads it, or the module's last weights."""
    if checkpoint:
        return load_checkpoint(Path(checkpoint))
    hparams = module.hparams
    return TrainedModel(
        module.net.eval(),
        list(hparams.classes),
        hparams.preprocessing["image_size"],
        network_name(hparams.model),
        hparams.class_counts,
    )


def datamodule_split(datamodule: SkinDataModule, split: str) -> Split:
    """A split of the datamodule, every image once in order, read in batches from wherever the datamodule keeps it."""
    images = datamodule.splits[split]
    batches = DataLoader(images, batch_size=datamodule.cfg["batch_size"], collate_fn=keep_batch)
    return Split(lambda: (batch[0] for batch in batches), images.labels, images.samples.paths)
