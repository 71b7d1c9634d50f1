"""Entry point: compose the config, then fit -> evaluate the tested checkpoint once -> report."""

import logging
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from skin_lightning.cli import CONFIG_DIR, reported
from skin_lightning.config import check_config, check_inputs
from skin_lightning.console import EpochLine, settings_that_differ
from skin_lightning.data.augment import preprocessing
from skin_lightning.data.datamodule import SkinDataModule
from skin_lightning.model.callbacks import ReseedEveryEpoch, StopOnNonFiniteLoss
from skin_lightning.model.checkpoints import AtomicCheckpointIO, resume_path
from skin_lightning.model.hardware import resolve_precision
from skin_lightning.model.inference import check_tta
from skin_lightning.model.module import SkinClassifier
from skin_lightning.model.tensorboard import ConfusionFigures, RunTensorBoard, log_tested, run_status
from skin_lightning.results.evaluation import evaluate_tested
from skin_lightning.results.logit_adjustment import check_logit_adjustment
from skin_lightning.run_settings import compared_settings
from skin_lightning.tested import datamodule_split, tested_checkpoint, tested_model, which_weights

log = logging.getLogger(__name__)
# what the console's first line compares with the defaults: a run's settings, not where it writes
RUN_SETTINGS = ("seed", "data", "augment", "sampler", "loss", "optim", "model", "trainer", "tta", "logit_adjustment")


def fit(cfg: DictConfig) -> tuple[L.Trainer, SkinClassifier, SkinDataModule]:
    """Builds the datamodule, module and trainer from the config and trains."""
    check_config(cfg)
    check_inputs(cfg)
    check_tta(cfg.tta)
    check_logit_adjustment(cfg.logit_adjustment)
    differing = settings_that_differ(cfg, RUN_SETTINGS)
    log.info("settings that differ from the defaults: %s", " ".join(differing) or "none")
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
    callbacks += [
        RunTensorBoard(compared_settings(cfg, differing), datamodule.classes),
        ConfusionFigures(datamodule.classes),
        EpochLine(),
    ]
    trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_args["precision"] = resolve_precision(trainer_args["precision"], trainer_args["accelerator"])
    trainer = L.Trainer(
        **trainer_args,
        callbacks=[ReseedEveryEpoch(cfg.seed), StopOnNonFiniteLoss(), *callbacks],
        logger=[instantiate(logger) for logger in cfg.logger.values()] or False,
        plugins=[AtomicCheckpointIO()],
    )
    with run_status(trainer, ends_run=False):
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    return trainer, module, datamodule


def evaluate(cfg: DictConfig, trainer: L.Trainer, module: SkinClassifier, datamodule: SkinDataModule) -> dict:
    """The tested checkpoint's one evaluation (results.evaluation), on the first process alone: under DDP the
    other processes return after fit, and this one predicts every image of each split, outside Lightning."""
    checkpoint = tested_checkpoint(trainer)
    validating = trainer.limit_val_batches != 0 and len(datamodule.samples("val")) > 0
    twins, copies_left_out = datamodule.test_twins()
    with run_status(trainer, ends_run=True):
        summary = evaluate_tested(
            tested_model(checkpoint, module),
            datamodule_split(datamodule, "test"),
            datamodule_split(datamodule, "val") if validating else None,
            tta=cfg.tta,
            logit_adjustment=cfg.logit_adjustment,
            device=trainer.strategy.root_device,
            output_dir=Path(cfg.output_dir),
            extra={
                "checkpoint": checkpoint or "last weights",
                "training precision": str(trainer.precision),
                "split_seed": cfg.data.split_seed,  # the test and validation images, whatever the training seed
            },
            validation_notes={"fold": cfg.data.fold, "folds": cfg.data.folds if cfg.data.fold is not None else None},
            twins=twins,
            copies_left_out=copies_left_out,
        )
        log_tested(trainer, summary, which_weights(checkpoint, trainer.current_epoch))
    return summary


def train(cfg: DictConfig) -> dict:
    trainer, module, datamodule = fit(cfg)
    if not trainer.is_global_zero:
        return {}
    summary = evaluate(cfg, trainer, module, datamodule)
    log.info("test balanced accuracy %.4f; reports in %s", summary["balanced_accuracy"], cfg.output_dir)
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the tested checkpoint's validation balanced accuracy: the number a hyperparameter search maximizes."""
    with reported(Path(cfg.output_dir)):
        return train(cfg).get("validation", {}).get("balanced_accuracy")


if __name__ == "__main__":
    main()
