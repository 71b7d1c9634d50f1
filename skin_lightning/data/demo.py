"""A generated, seeded stand-in for ISIC84by84, so the whole pipeline runs offline in minutes.

Each class has its own lesion colour, size, border irregularity and texture, with enough
per-image variation that the task is learnable but not trivial, and the class counts are
imbalanced the way ISIC 2019's are.
"""

import logging
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

# name: (train count, lesion RGB, radius, border irregularity, dot density)
DEMO_CLASSES = {
    "AK": (50, (0.80, 0.45, 0.40), 0.22, 0.05, 0.00),
    "BCC": (150, (0.85, 0.60, 0.65), 0.20, 0.10, 0.02),
    "BKL": (120, (0.55, 0.40, 0.25), 0.26, 0.04, 0.00),
    "DF": (25, (0.60, 0.35, 0.30), 0.14, 0.02, 0.00),
    "MEL": (200, (0.25, 0.15, 0.12), 0.28, 0.25, 0.03),
    "NV": (500, (0.45, 0.28, 0.18), 0.20, 0.03, 0.00),
    "SCC": (40, (0.75, 0.50, 0.45), 0.24, 0.15, 0.05),
    "VASC": (25, (0.70, 0.15, 0.20), 0.16, 0.08, 0.00),
}
TEST_PER_CLASS = 25
IMAGE_SIZE = 64
COMPLETE_MARKER = ".complete"


def draw_lesion(
    rng: np.random.Generator, colour, radius: float, irregularity: float, dots: float, size: int
) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    skin = np.array([0.86, 0.68, 0.58]) + rng.normal(0, 0.04, 3)
    image = skin + rng.normal(0, 0.03, (size, size, 3))
    cy, cx = 0.5 + rng.normal(0, 0.06, 2)
    angle = np.arctan2(yy - cy, xx - cx)
    lobes = rng.integers(3, 8)
    phase = rng.uniform(0, 2 * np.pi)
    edge = radius * rng.uniform(0.8, 1.2) * (1 + irregularity * np.sin(lobes * angle + phase))
    distance = np.hypot((yy - cy) * rng.uniform(0.8, 1.2), xx - cx)
    inside = np.clip((edge - distance) / 0.02, 0, 1)[..., None]
    lesion = np.array(colour) + rng.normal(0, 0.05, 3) + rng.normal(0, 0.04, (size, size, 3))
    if dots:
        lesion = lesion - 0.3 * (rng.random((size, size, 1)) < dots)
    image = (1 - inside) * image + inside * lesion
    for _ in range(rng.integers(3, 7)):  # hairs: each picture its own, as real ones are (the audit tells them apart)
        y0, x0, bend, slope = rng.uniform(0, 1, 4)
        hair = np.abs(yy - (y0 + (slope - 0.5) * (xx - x0) + 0.3 * (bend - 0.5) * (xx - x0) ** 2)) < 0.6 / size
        image[hair] *= 0.35
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def make_demo_dataset(root: Path, seed: int = 0) -> Path:
    """Write the demo set under `root` once; a crash mid-way leaves no half-written folder."""
    root = Path(root)
    if (root / COMPLETE_MARKER).exists():
        return root
    staging = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    rng = np.random.default_rng(seed)
    log.info("writing the demo data set to %s", root)
    for name, (train_count, colour, radius, irregularity, dots) in DEMO_CLASSES.items():
        for split, count in (("Train", train_count), ("Test", TEST_PER_CLASS)):
            folder = staging / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = draw_lesion(rng, colour, radius, irregularity, dots, IMAGE_SIZE)
                Image.fromarray(pixels).save(folder / f"demo_{name}_{index:04d}.jpg", quality=95)
    (staging / COMPLETE_MARKER).touch()
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging.rename(root)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (root / COMPLETE_MARKER).exists():
            raise
    return root
