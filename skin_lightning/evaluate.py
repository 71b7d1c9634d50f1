"""Entry point: a checkpoint's full report on the test split of a data set, without training.

The data set may use another layout than the checkpoint was trained on; labels are matched to the
checkpoint's classes by name, so the class order of the data never has to agree.
"""

import logging
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from skin_lightning.cli import CONFIG_DIR, reported
from skin_lightning.data.datamodule import SkinDataModule
from skin_lightning.data.images import decode_all, report_bad_images
from skin_lightning.errors import UserError
from skin_lightning.model.inference import check_tta, load_checkpoint, resolve_device, to_checkpoint_labels
from skin_lightning.results.logit_adjustment import check_logit_adjustment
from skin_lightning.results.posthoc import posthoc_test_probs
from skin_lightning.results.reports import write_reports

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
    kept_paths: dict[str, list] = {}

    def images_of(split: str) -> tuple[np.ndarray, np.ndarray]:
        samples = splits[split]
        labels = to_checkpoint_labels(samples, datamodule.classes, model.classes, f"data.root={cfg.data.root}")
        images, good, bad = decode_all(samples.paths, model.image_size, desc=f"decoding {split}")
        listing = "bad_images.tsv" if split == "test" else f"bad_images_{split}.tsv"
        report_bad_images(bad, cfg.data.on_bad_image, output_dir / listing)
        kept_paths[split] = [path for path, keep in zip(samples.paths, good) if keep]
        return images, labels[good]

    probs, labels, notes = posthoc_test_probs(
        model, images_of, cfg.tta, cfg.logit_adjustment, cfg.data.batch_size, device
    )
    paths = kept_paths["test"]
    extra = {
        "checkpoint": str(cfg.ckpt_path),
        "data": f"{cfg.data.layout} {cfg.data.root}",
        "image_size": model.image_size,
        **notes,
    }
    summary = write_reports(output_dir, probs, labels, paths, model.classes, extra, cfg.calibration_bins)
    log.info(
        "balanced accuracy %.4f, accuracy %.4f, ECE %.4f on %d images; reports in %s",
        summary["balanced_accuracy"],
        summary["accuracy"],
        summary["calibration"]["ece"],
        len(paths),
        output_dir,
    )
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with reported(Path(cfg.output_dir)):
        evaluate(cfg)


if __name__ == "__main__":
    main()
