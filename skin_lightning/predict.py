"""Entry point: class probabilities for image files or folders, one CSV row per file.

An unreadable file gets a row with its error instead of stopping the run, so one bad upload never
costs the predictions of all the others.
"""

import csv
import logging
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, ListConfig

from skin_lightning.cli import CONFIG_DIR, reported
from skin_lightning.data.images import decode_all
from skin_lightning.data.layouts import IMAGE_SUFFIXES, ISIC_LABELS
from skin_lightning.errors import UserError
from skin_lightning.model.inference import check_tta, load_checkpoint, predict_probs, resolve_device

log = logging.getLogger(__name__)


def find_images(inputs: list[str]) -> list[Path]:
    """Files as given (whatever their suffix, so a misnamed one is reported, not skipped); folders searched."""
    found: list[Path] = []
    for entry in map(Path, inputs):
        if entry.is_dir():
            found += sorted(
                p
                for p in entry.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            )
        elif entry.is_file():
            found.append(entry)
        else:
            raise UserError(
                f"input={entry} does not exist: pass an image file, a folder of images, or a list [a.jpg,folder]"
            )
    if not found:
        raise UserError(f"input={','.join(inputs)} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    return found


def write_predictions(
    path: Path, files: list[Path], probs: np.ndarray, good: np.ndarray, errors: dict[Path, str], classes: list[str]
) -> None:
    rows = iter(probs)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "predicted", *(f"prob_{cls}" for cls in classes), "error"])
        for file, decoded in zip(files, good):
            if decoded:
                row = next(rows)
                writer.writerow([str(file), classes[int(row.argmax())], *(f"{p:.6f}" for p in row), ""])
            else:
                writer.writerow([str(file), "", *([""] * len(classes)), errors[file]])


def write_isic_submission(path: Path, files: list[Path], probs: np.ndarray, classes: list[str]) -> None:
    """The ISIC 2019 challenge columns; a class the model does not predict (always UNK) gets probability 0."""
    columns = [classes.index(name) if name in classes else None for name in ISIC_LABELS]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", *ISIC_LABELS])
        for file, row in zip(files, probs):
            writer.writerow([file.stem, *(f"{row[k]:.6f}" if k is not None else "0.0" for k in columns)])


def predict(cfg: DictConfig) -> Path:
    check_tta(cfg.tta)
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = load_checkpoint(Path(cfg.ckpt_path), cfg.image_size)
    files = find_images(list(cfg.input) if isinstance(cfg.input, ListConfig) else [str(cfg.input)])
    images, good, bad = decode_all(files, model.image_size, desc="decoding")
    errors = {error.path: error.reason for error in bad}
    probs = predict_probs(model, images, cfg.batch_size, cfg.tta, resolve_device(cfg.device))
    table = output_dir / "predictions.csv"
    write_predictions(table, files, probs, good, errors, model.classes)
    if cfg.isic_csv:
        write_isic_submission(
            output_dir / "isic_submission.csv", [f for f, ok in zip(files, good) if ok], probs, model.classes
        )
    if bad:
        log.warning(
            "%d of %d files could not be read; their errors are in the error column of %s", len(bad), len(files), table
        )
    log.info("predicted %d images: %s", int(good.sum()), table)
    return table


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    with reported(Path(cfg.output_dir)):
        predict(cfg)


if __name__ == "__main__":
    main()
