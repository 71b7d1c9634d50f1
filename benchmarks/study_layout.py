"""A Train/Test folder layout of symbolic links for the imbalance study, carved out of one Train folder.

    python benchmarks/study_layout.py ../shared/data/isic84by84/Train /tmp/isic_study \
        --test-per-class 50 --largest 600 --power 0.5

Test gets `--test-per-class` images of every class (balanced, like the course data's own Test split, which is
held back). Train keeps round(largest * (n / n_max)^power) of a class's remaining n images, so a CPU can run the
study on a long tail of the same shape: power 1 shrinks every class alike, 0.5 also flattens the tail (ISIC's
92:1 becomes about 12:1), 0 caps every class at `largest`. Which images go where is drawn with `--seed`; no
image is copied.
"""

import argparse
import random
from pathlib import Path

from skin_lightning.data.layouts import IMAGE_SUFFIXES


def link_study_layout(
    train_dir: Path, root: Path, test_per_class: int, largest: int, power: float, seed: int
) -> dict[str, tuple[int, int]]:
    """Returns (train, test) image counts per class."""
    images = {}
    for class_dir in sorted(p for p in train_dir.iterdir() if p.is_dir()):
        images[class_dir.name] = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        random.Random(f"{seed}/{class_dir.name}").shuffle(images[class_dir.name])
    most = max(len(found) for found in images.values()) - test_per_class
    counts = {}
    for name, found in images.items():
        test, rest = found[:test_per_class], found[test_per_class:]
        train = rest[: min(len(rest), round(largest * (len(rest) / most) ** power))]
        for split, chosen in (("Test", test), ("Train", train)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for image in chosen:
                (folder / image.name).symlink_to(image.resolve())
        counts[name] = (len(train), len(test))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_dir", type=Path, help="a folder of class folders, e.g. ../shared/data/isic84by84/Train")
    parser.add_argument("root", type=Path, help="where ROOT/Train and ROOT/Test are made; must not exist")
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--largest", type=int, default=600, help="training images of the largest class")
    parser.add_argument("--power", type=float, default=0.5, help="1: every class shrunk alike; 0: a cap of --largest")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.root.exists():
        parser.error(f"{args.root} exists: pick a new folder")
    counts = link_study_layout(args.train_dir, args.root, args.test_per_class, args.largest, args.power, args.seed)
    for name, (train, test) in counts.items():
        print(f"{name}: {train} train, {test} test")


if __name__ == "__main__":
    main()
