"""Does bf16 cost accuracy? The same short real-data run trained in fp32 and in bf16-mixed, side by side.

    python benchmarks/precision_accuracy.py --data ../shared/data/isic84by84/Train

A seeded subset of the Train folder is linked (never copied) into a temporary Train/Test layout, and both
runs see the same split, initial weights, sampling order and augmentation draws: only the precision differs.
Weights are random (model.weights=none), so the absolute numbers are those of a short run from scratch.
"""

import argparse
import csv
import random
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skin_lightning.cli import CONFIG_DIR
from skin_lightning.train import train


def linked_subset(train_dir: Path, root: Path, per_class: int, test_per_class: int, seed: int) -> Path:
    """Up to per_class training and test_per_class test images a class, disjoint, as symbolic links."""
    rng = random.Random(seed)
    for class_dir in sorted(p for p in train_dir.iterdir() if p.is_dir()):
        images = sorted(class_dir.iterdir())
        rng.shuffle(images)
        test, kept = images[:test_per_class], images[test_per_class : test_per_class + per_class]
        for split, chosen in (("Test", test), ("Train", kept)):
            (root / split / class_dir.name).mkdir(parents=True)
            for image in chosen:
                (root / split / class_dir.name / image.name).symlink_to(image.resolve())
    return root


def last_logged(metrics_csv: Path, column: str) -> float:
    with open(metrics_csv, newline="") as handle:
        values = [row[column] for row in csv.DictReader(handle) if row.get(column)]
    return float(values[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="a Train folder with one sub-folder of JPEGs per class"
    )
    parser.add_argument(
        "--per-class", type=int, default=150, help="training images a class (fewer where a class has fewer)"
    )
    parser.add_argument("--test-per-class", type=int, default=40)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="extra config overrides, e.g. data.batch_size=64")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="skin_precision_") as tmp:
        root = linked_subset(args.data, Path(tmp) / "data", args.per_class, args.test_per_class, seed=0)
        for precision in ("32-true", "bf16-mixed"):
            output_dir = Path(tmp) / precision
            overrides = [
                "experiment=v4_selective",
                "optim.lr=0.01",
                f"model.arch={args.arch}",
                "model.weights=none",
                f"data.root={root}",
                "logger=csv",
                f"output_dir={output_dir}",
                f"trainer.max_epochs={args.epochs}",
                "trainer.accelerator=cpu",
                f"trainer.precision={precision}",
                "trainer.enable_progress_bar=false",
                *args.overrides,
            ]
            with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
                cfg = compose(config_name="train", overrides=overrides)
            started = time.perf_counter()
            summary = train(cfg)
            seconds = time.perf_counter() - started
            val = last_logged(output_dir / "csv" / "metrics.csv", "val/balanced_accuracy")
            results.append((precision, val, summary["balanced_accuracy"], seconds))
            print(
                f"{precision}: val balanced accuracy {val:.4f}, "
                f"test {summary['balanced_accuracy']:.4f}, {seconds:.0f} s",
                flush=True,
            )
    print(
        f"\n{args.arch}, weights none, {args.epochs} epochs, <= {args.per_class} training images a class, "
        f"experiment=v4_selective optim.lr=0.01 {' '.join(args.overrides)}\n"
    )
    print("| precision | val balanced accuracy (last epoch) | test balanced accuracy (best checkpoint) | seconds |")
    print("|---|---:|---:|---:|")
    for precision, val, test, seconds in results:
        print(f"| {precision} | {val:.4f} | {test:.4f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
