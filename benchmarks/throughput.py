"""Training and loading throughput of this project against the course scripts' loop, on one machine, in one run.

    python benchmarks/throughput.py --data ../shared/data/isic84by84/Train

Measures, each over a fixed number of batches after a warm-up (so the run stays within minutes on a CPU):
  1. the course scripts' loop: torchvision ImageFolder + per-image PIL transforms of v4, DataLoader without
     workers, WeightedRandomSampler, fp32;
  2. this project's training for experiment=v4_selective (decoded once, batched augmentation, auto precision),
     timed inside Lightning's fit;
  3. the ceiling: the same network's forward, backward and SGD step on random in-memory tensors at the
     precision that (2) resolved to;
  4. loader-only images/s from large JPEGs (made by upscaling real images) decoded per image
     (data.cache=none) against the cache built by `skin_lightning.prepare` (data.cache=disk).
Weights are random (model.weights=none): no download, and the speed does not depend on them.
"""

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from hydra import compose, initialize_config_dir
from PIL import Image
from torch.utils.data import DataLoader, WeightedRandomSampler
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skin_lightning.cli import CONFIG_DIR
from skin_lightning.data.augment import IMAGENET_MEAN, IMAGENET_STD
from skin_lightning.data.datamodule import SkinDataModule
from skin_lightning.model.hardware import resolve_precision
from skin_lightning.model.networks import build_network
from skin_lightning.prepare import prepare
from skin_lightning.train import train

BATCH = 32  # the v4 recipe's batch size


def compose_config(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def clocks() -> tuple[float, float]:
    """Wall time and this process's CPU time (all threads): the second hardly moves when other work shares the cores."""
    synchronize()
    return time.perf_counter(), time.process_time()


def rates(images: int, started: tuple[float, float]) -> tuple[float, float]:
    """Images per wall second and per CPU second of this process since `started`."""
    wall, cpu = clocks()
    return images / (wall - started[0]), images / (cpu - started[1])


class BatchTimer(L.Callback):
    """Images per second of the training batches after `warmup`: loading, augmentation, step, logging."""

    measured: tuple[float, float] = (0.0, 0.0)

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.images = 0
        self.started = (0.0, 0.0)

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.started = clocks()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if batch_idx >= self.warmup:
            self.images += len(batch[1])
            BatchTimer.measured = rates(self.images, self.started)


def seed_loop(data: Path, arch: str, warmup: int, batches: int, device: torch.device) -> tuple[float, float]:
    """The course scripts' v4 loop, kept as they wrote it: per-image PIL work in the main process, fp32."""
    recipe = transforms.Compose([
        transforms.RandomRotation(30),
        transforms.RandomHorizontalFlip(),
        transforms.RandomVerticalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
    dataset = torchvision.datasets.ImageFolder(str(data), transform=recipe)
    counts = np.bincount(dataset.targets)
    weights = 1.0 / counts[np.asarray(dataset.targets)]
    sampler = WeightedRandomSampler(torch.as_tensor(weights), num_samples=len(dataset), replacement=True)
    loader = DataLoader(dataset, batch_size=BATCH, sampler=sampler, num_workers=0)
    model = torchvision.models.get_model(arch, weights=None)
    model.fc = torch.nn.Linear(model.fc.in_features, len(dataset.classes))
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    started, images = clocks(), 0
    for step, (inputs, labels) in enumerate(loader):
        if step == warmup:
            started = clocks()
        inputs, labels = inputs.to(device), labels.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            images += len(labels)
        if step + 1 == warmup + batches:
            break
    return rates(images, started)


def link_layout(train_dir: Path, root: Path, test_per_class: int) -> Path:
    """ROOT/Train -> the given folder; ROOT/Test holds a few links a class (the project needs a Test split)."""
    root.mkdir(parents=True)
    (root / "Train").symlink_to(train_dir.resolve())
    for class_dir in sorted(p for p in train_dir.iterdir() if p.is_dir()):
        (root / "Test" / class_dir.name).mkdir(parents=True)
        for image in sorted(class_dir.iterdir())[:test_per_class]:
            (root / "Test" / class_dir.name / image.name).symlink_to(image.resolve())
    return root


def project_training(root: Path, work: Path, arch: str, warmup: int, batches: int) -> tuple[tuple[float, float], str]:
    cfg = compose_config("train", [
        "experiment=v4_selective",
        f"data.root={root}",
        f"model.arch={arch}",
        "model.weights=none",
        "logger=csv",
        f"output_dir={work / 'train'}",
        "trainer.max_epochs=1",
        f"trainer.limit_train_batches={warmup + batches}",
        "trainer.limit_val_batches=0",
        "trainer.limit_test_batches=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        "~callbacks.checkpoint",
        "~callbacks.lr_monitor",
        "+callbacks.timer._target_=__main__.BatchTimer",
        f"+callbacks.timer.warmup={warmup}",
    ])
    train(cfg)
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    return BatchTimer.measured, str(precision)


def ceiling(arch: str, precision: str, warmup: int, batches: int, device: torch.device) -> tuple[float, float]:
    """Forward, backward and step on one random batch already in memory: what the network alone can do."""
    model = build_network(arch, 8).to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    inputs = torch.randn(BATCH, 3, 84, 84, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 8, (BATCH,), device=device)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    started = clocks()
    for step in range(warmup + batches):
        if step == warmup:
            started = clocks()
        optimizer.zero_grad()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(inputs)
        F.cross_entropy(logits.float(), labels).backward()
        optimizer.step()
    return rates(batches * BATCH, started)


def large_jpegs(train_dir: Path, root: Path, count: int, size: int) -> Path:
    """Upscaled copies of real images, as large as ISIC 2019's originals, in the folder layout."""
    classes = sorted(p for p in train_dir.iterdir() if p.is_dir())
    rng = random.Random(0)
    for index in range(count):
        class_dir = classes[index % len(classes)]
        split = "Test" if index % 10 == 9 else "Train"
        source = rng.choice(sorted(class_dir.iterdir()))
        target = root / split / class_dir.name / f"{index:04d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(source) as image:
            image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(target, quality=90)
    return root


def loader_rate(overrides: list[str], min_seconds: float) -> float:
    """Iterate the training loader (uint8 batches, no model) until min_seconds have passed.

    Timing starts after the first batch, so starting worker processes is not counted against decoding.
    """
    cfg = compose_config("train", overrides)
    datamodule = SkinDataModule(cfg.data, cfg.augment, cfg.sampler, cfg.seed)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    epoch = iter(loader)
    next(epoch)
    images, started = 0, time.perf_counter()
    while time.perf_counter() - started < min_seconds:
        for pixels, _, _ in epoch:
            images += len(pixels)
        epoch = iter(loader)
    return images / (time.perf_counter() - started)


def loaders(train_dir: Path, work: Path, count: int) -> dict[str, float]:
    root = large_jpegs(train_dir, work / "large", count, 1024)
    base = ["experiment=v4_selective", f"data.root={root}", f"data.cache_dir={work / 'cache'}"]
    base.append(f"output_dir={work / 'prepare'}")
    prepared = prepare(compose_config("prepare", base))
    return {
        "jpeg": loader_rate([*base, "data.cache=none"], 5.0),
        "cache": loader_rate([*base, "data.cache=disk"], 2.0),
        "prepare": prepared,
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a Train folder with a sub-folder of JPEGs per class")
    parser.add_argument("--arch", default="resnet50", help="the v4 recipe's network (default resnet50)")
    parser.add_argument("--warmup", type=int, default=3, help="batches run before timing starts")
    parser.add_argument("--batches", type=int, default=15, help="batches timed in (1), (2) and (3)")
    parser.add_argument("--jpegs", type=int, default=300, help="1024-px JPEGs generated for (4)")
    args = parser.parse_args()
    if not args.data.is_dir():
        parser.error(f"--data {args.data} is not a folder")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"machine: {machine()}\nload average at start: {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="skin_benchmark_") as tmp:
        work = Path(tmp)
        training = {"seed": seed_loop(args.data, args.arch, args.warmup, args.batches, device)}
        print(f"(1) done: {training['seed'][0]:.1f} images/s", flush=True)
        root = link_layout(args.data, work / "linked", test_per_class=4)
        training["project"], precision = project_training(root, work, args.arch, args.warmup, args.batches)
        print(f"(2) done: {training['project'][0]:.1f} images/s", flush=True)
        training["ceiling"] = ceiling(args.arch, precision, args.warmup, args.batches, device)
        print(f"(3) done: {training['ceiling'][0]:.1f} images/s", flush=True)
        loading = loaders(args.data, work, args.jpegs)
    print(f"\n{machine()}\nbatch {BATCH}, {args.warmup} warm-up + {args.batches} timed batches, random weights; "
          f"load average at end: {load()}\n")
    print("| # | measurement | images/s | images per CPU-second |\n|---|---|---:|---:|")
    for number, key, label in [
        ("1", "seed", f"course scripts' loop: ImageFolder + PIL v4 transforms, no workers, fp32, {args.arch}"),
        ("2", "project", f"this project, experiment=v4_selective, {args.arch}, {precision}"),
        ("3", "ceiling", f"ceiling: {args.arch} on random in-memory tensors, {precision}"),
    ]:
        print(f"| {number} | {label} | {training[key][0]:,.1f} | {training[key][1]:,.1f} |")
    for number, key, label in [
        ("4a", "jpeg", f"loader only: {args.jpegs} 1024-px JPEGs decoded per image (data.cache=none)"),
        ("4b", "cache", "loader only: the same images from the prepared cache (data.cache=disk)"),
        ("", "prepare", "prepare: decoding the 1024-px JPEGs into the cache"),
    ]:
        print(f"| {number} | {label} | {loading[key]:,.1f} | |")
    print("\n| ratio | of images/s | of images per CPU-second | target |\n|---|---:|---:|---:|")
    for label, one, other, target in [
        ("(2) / (1): project vs course loop", "project", "seed", 1.8),
        ("(2) / (3): project vs ceiling", "project", "ceiling", 0.9),
    ]:
        wall, cpu = (training[one][i] / training[other][i] for i in (0, 1))
        print(f"| {label} | {wall:.2f}x | {cpu:.2f}x | >= {target}x |")
    print(f"| (4b) / (4a): cache vs JPEG loader | {loading['cache'] / loading['jpeg']:.1f}x | | >= 20x |")

if __name__ == "__main__":
    main()
