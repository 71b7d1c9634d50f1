"""Entry point: decode a data set into the disk cache ahead of training, e.g. on a machine with many cores.

It composes the training config with the same overrides, so the cache it builds is exactly the one
`train` (with data.cache=disk) looks for: same files, same image size, same data.cache_dir.
"""

import logging
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from skin_lightning.cli import CONFIG_DIR, reported
from skin_lightning.config import check_config
from skin_lightning.data.datamodule import SkinDataModule

log = logging.getLogger(__name__)


def prepare(cfg: DictConfig) -> float:
    """Returns images per second over the whole preparation (listing, decoding, writing)."""
    cfg.data.cache = "disk"
    check_config(cfg)
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    datamodule = SkinDataModule(cfg.data, cfg.augment, cfg.sampler, cfg.seed, cfg.output_dir)
    datamodule.prepare_data()
    started = time.perf_counter()
    datamodule.setup("fit")
    seconds = time.perf_counter() - started
    count = sum(len(datamodule.samples(split)) for split in ("train", "val", "test"))
    rate = count / seconds
    log.info(
        "%d images of %d px ready in %s after %.1f s (%.0f images/s); "
        "train with data.cache=disk and the same data overrides to use them",
        count,
        cfg.data.image_size,
        cfg.data.cache_dir,
        seconds,
        rate,
    )
    return rate


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="prepare")
def main(cfg: DictConfig) -> None:
    with reported(Path(cfg.output_dir)):
        prepare(cfg)


if __name__ == "__main__":
    main()
