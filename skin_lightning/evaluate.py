"""Entry point: a checkpoint's full report on the test split of a data set, without training.

The data set may use another layout than the checkpoint was trained on; labels are matched to the
checkpoint's classes by name, so the class order of the data never has to agree.
"""

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from skin_lightning.cli import CONFIG_DIR, reported
from skin_lightning.data.datamodule import SkinDataModule
from skin_lightning.data.images import decode_all, report_bad_images
from skin_lightning.errors import UserError
from skin_lightning.model.inference import (
    array_batches,
    check_tta,
    load_checkpoint,
    resolve_device,
    to_checkpoint_labels,
)
from skin_lightning.results.evaluation import Split, evaluate_tested
from skin_lightning.results.logit_adjustment import check_logit_adjustment

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict:
    if OmegaConf.is_missing(cfg.data, "root"):
        raise UserError("data.root is not set: pass data.root=/path/to/data (its test split is evaluated)")
    check_tta(cfg.tta)
    check_logit_adjustment(cfg.logit_adjustment)
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = load_checkpoint(Path(cfg.ckpt_path), cfg.image_size)

    datamodule = SkinDataModule(cfg.data, None, None, cfg.seed)
    datamodule.prepare_data()
    splits = datamodule.read_splits()
    device = resolve_device(cfg.device)

    if cfg.logit_adjustment is not None and model.class_counts is None:
        raise UserError(
            f"ckpt_path={cfg.ckpt_path} does not record its training class counts, which logit_adjustment needs"
        )

    def split(name: str) -> Split:
        samples = splits[name]
        labels = to_checkpoint_labels(samples, datamodule.classes, model.classes, f"data.root={cfg.data.root}")
        images, good, bad = decode_all(samples.paths, model.image_size, desc=f"decoding {name}")
        listing = "bad_images.tsv" if name == "test" else f"bad_images_{name}.tsv"
        report_bad_images(bad, cfg.data.on_bad_image, output_dir / listing)
        paths = [path for path, keep in zip(samples.paths, good) if keep]
        return Split(lambda: array_batches(images, cfg.data.batch_size), labels[good], paths)

    test = split("test")
    summary = evaluate_tested(
        model,
        test,
        # the validation split of data.root, by data.val_fraction and data.split_seed, for logit_adjustment=auto's
        # tau alone: it is the checkpoint's own validation split only if it was trained on this data with this split
        split("val") if cfg.logit_adjustment == "auto" else None,
        tta=cfg.tta,
        logit_adjustment=cfg.logit_adjustment,
        device=device,
        output_dir=output_dir,
        extra={
            "checkpoint": str(cfg.ckpt_path),
            "data": f"{cfg.data.layout} {cfg.data.root}",
            "image_size": model.image_size,
        },
        bins=cfg.calibration_bins,
    )
    log.info(
        "balanced accuracy %.4f, accuracy %.4f, ECE %.4f on %d images; reports in %s",
        summary["balanced_accuracy"],
        summary["accuracy"],
        summary["calibration"]["ece"],
        len(test.paths),
        output_dir,
    )
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with reported(Path(cfg.output_dir)):
        evaluate(cfg)


if __name__ == "__main__":
    main()
