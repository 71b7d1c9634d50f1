"""Entry point: compose the config, then datamodule -> module -> trainer -> fit -> test -> reports."""

import logging
from pathlib import Path

import hydra
import lightning as L
import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from skin_lightning.cli import CONFIG_DIR, reported
from skin_lightning.config import check_config, check_inputs
from skin_lightning.console import EpochLine, settings_that_differ
from skin_lightning.data.augment import preprocessing
from skin_lightning.data.datamodule import SkinDataModule
from skin_lightning.model.callbacks import ReseedEveryEpoch, StopOnNonFiniteLoss
from skin_lightning.model.checkpoints import AtomicCheckpointIO, resume_path
from skin_lightning.model.hardware import resolve_precision
from skin_lightning.model.inference import TrainedModel, check_tta, predict_probs
from skin_lightning.model.metrics import HEADLINE
from skin_lightning.model.module import SkinClassifier
from skin_lightning.model.networks import network_name
from skin_lightning.model.tensorboard import ConfusionFigures, RunTensorBoard, compared_settings
from skin_lightning.results.logit_adjustment import check_logit_adjustment
from skin_lightning.results.posthoc import posthoc_test_probs
from skin_lightning.results.reports import write_reports
from skin_lightning.results.tables import VALIDATION_PREDICTIONS, write_predictions

log = logging.getLogger(__name__)
# what the console's first line compares with the defaults: a run's settings, not where it writes
RUN_SETTINGS = ("seed", "data", "augment", "sampler", "loss", "optim", "model", "trainer", "tta", "logit_adjustment")


def _checkpoint_to_test(trainer: L.Trainer) -> str | None:
    best = next((cb.best_model_path for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)), "")
    if best:
        return best
    log.warning("no best checkpoint (validation was off or never ran): testing the last weights")
    return None


def validation_scores(
    trainer: L.Trainer, module: SkinClassifier, datamodule: SkinDataModule, checkpoint: str, data: DictConfig
) -> dict | None:
    """Validation scores of the tested checkpoint, so a sweep summary can average them over folds or seeds.

    Loggers are off for this extra pass: it would otherwise add a point to the training curves.
    None when validation is switched off (trainer.limit_val_batches=0).
    """
    loggers, trainer.loggers = trainer.loggers, []
    try:
        results = trainer.validate(module, datamodule=datamodule, ckpt_path=checkpoint, verbose=False)
    finally:
        trainer.loggers = loggers
    if not results:
        return None
    (logged,) = results
    return {
        "images": len(datamodule.samples("val")),
        "fold": data.fold,
        "folds": data.folds if data.fold is not None else None,
        **{name: float(logged[f"val/{name}"]) for name in HEADLINE if f"val/{name}" in logged},
    }


def tested_model(cfg: DictConfig, module: SkinClassifier, datamodule: SkinDataModule) -> TrainedModel:
    """The tested checkpoint's network, for predictions made outside Lightning."""
    return TrainedModel(
        module.net.eval(),
        datamodule.classes,
        cfg.data.image_size,
        network_name(cfg.model),
        module.hparams.class_counts,
    )


def split_images(datamodule: SkinDataModule, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels, _ = datamodule.splits[split].__getitems__(list(range(len(datamodule.samples(split)))))
    return images.numpy(), labels.numpy()


def tta_and_adjustment(
    cfg: DictConfig, module: SkinClassifier, datamodule: SkinDataModule, indices: np.ndarray
) -> tuple[np.ndarray, dict]:
    """Test probabilities with `tta` and post-hoc `logit_adjustment`, through evaluate's function.

    Run outside Lightning on the tested checkpoint's network, so the sweep summary compares these
    predictions; the test/* scalars that Lightning logged are those of the plain model.
    """
    probs, _, notes = posthoc_test_probs(
        tested_model(cfg, module, datamodule),
        lambda split: split_images(datamodule, split),
        cfg.tta,
        cfg.logit_adjustment,
        cfg.data.batch_size,
        module.device,
    )
    return probs[indices], notes


def write_validation_predictions(path: Path, cfg: DictConfig, module: SkinClassifier, datamodule: SkinDataModule):
    """The tested checkpoint's probabilities on the validation split: a k-fold sweep's out-of-fold predictions,
    which `skin_lightning.audit labels_from=...` ranks for likely label errors."""
    if not len(datamodule.samples("val")):
        return
    images, labels = split_images(datamodule, "val")
    model = tested_model(cfg, module, datamodule)
    probs = predict_probs(model, images, cfg.data.batch_size, "none", module.device)
    write_predictions(path, datamodule.samples("val").paths, labels, probs, datamodule.classes)


def train(cfg: DictConfig) -> dict:
    check_config(cfg)
    check_inputs(cfg)
    check_tta(cfg.tta)
    check_logit_adjustment(cfg.logit_adjustment)
    log.info("settings that differ from the defaults: %s", " ".join(settings_that_differ(cfg, RUN_SETTINGS)) or "none")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.output_dir)
    checkpoint_dir = OmegaConf.select(cfg, "callbacks.checkpoint.dirpath", default=str(output_dir / "checkpoints"))
    resume = resume_path(cfg.resume, Path(checkpoint_dir))
    output_dir.mkdir(parents=True, exist_ok=True)

    datamodule = SkinDataModule(cfg.data, cfg.augment, cfg.sampler, cfg.seed, output_dir)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = SkinClassifier(
        classes=datamodule.classes,
        class_counts=datamodule.class_counts,
        preprocessing=preprocessing(cfg.data.image_size),
        **{key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("model", "loss", "optim")},
    )
    callbacks = [instantiate(callback) for callback in cfg.callbacks.values()]
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    callbacks += [
        RunTensorBoard(compared_settings(cfg, choices), datamodule.classes),
        ConfusionFigures(datamodule.classes),
        EpochLine(),
    ]
    loggers = [instantiate(logger) for logger in cfg.logger.values()]
    trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_args["precision"] = resolve_precision(trainer_args["precision"], trainer_args["accelerator"])
    trainer = L.Trainer(
        **trainer_args,
        callbacks=[ReseedEveryEpoch(cfg.seed), StopOnNonFiniteLoss(), *callbacks],
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
    )

    trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    checkpoint = _checkpoint_to_test(trainer)
    extra = {"checkpoint": checkpoint or "last weights", "precision": trainer_args["precision"]}
    extra["split_seed"] = cfg.data.split_seed  # the test and validation images, whatever the training seed
    scores = validation_scores(trainer, module, datamodule, checkpoint, cfg.data) if checkpoint else None
    if scores:
        extra["validation"] = scores
    trainer.test(module, datamodule=datamodule, ckpt_path=checkpoint)
    if not trainer.is_global_zero:
        return {}

    probs, labels, indices = module.test_predictions()
    if cfg.tta != "none" or cfg.logit_adjustment is not None:
        probs, notes = tta_and_adjustment(cfg, module, datamodule, indices)
        extra.update(notes)
    test_paths = datamodule.samples("test").paths
    write_validation_predictions(output_dir / VALIDATION_PREDICTIONS, cfg, module, datamodule)
    twins, copies_left_out = datamodule.test_twins()
    summary = write_reports(
        output_dir,
        probs,
        labels,
        [test_paths[i] for i in indices],
        datamodule.classes,
        extra,
        twins=[twins[i] for i in indices],
        copies_left_out=copies_left_out,
    )
    log.info(
        "test balanced accuracy %.4f, accuracy %.4f; reports in %s",
        summary["balanced_accuracy"],
        summary["accuracy"],
        output_dir,
    )
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the tested checkpoint's validation balanced accuracy: the number a hyperparameter search maximizes."""
    with reported(Path(cfg.output_dir)):
        return train(cfg).get("validation", {}).get("balanced_accuracy")


if __name__ == "__main__":
    main()
