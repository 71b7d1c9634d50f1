"""Training throughput of this project against the course scripts' loop and the bare network, in one run.

    python benchmarks/throughput.py --data ../shared/data/isic84by84/Train
    python benchmarks/throughput.py --data /data/ISIC84by84/Train --e2e-epochs 20 --compare-epochs 3   # on a GPU

For each shape (84 px batch 32, the recipe; on a GPU also 224 px batch 128), over a fixed number of batches
after a warm-up:
  1. the course scripts' loop: torchvision ImageFolder + per-image PIL transforms of v4, DataLoader without
     workers, WeightedRandomSampler, fp32;
  2. this project, experiment=v4_selective, on Lightning's own loop with DataLoaders (model.fast_step=false,
     data.on_device=false), timed inside Lightning's fit;
  3. this project's fast path (model.fast_step and data.on_device: on a GPU the whole step as one CUDA graph
     and the images in GPU memory; on a CPU the same static step without a graph);
  4. the ceiling: the same network's eager forward, backward and SGD step on random in-memory tensors at the
     precision that (2) resolved to;
  5. on a GPU, that step captured once as a CUDA graph and replayed: what the card can do at this shape.
Then, on request: loader-only images/s from large JPEGs decoded per image against the prepared cache
(--jpegs), an end-to-end run (process start to reports written, validation every epoch, test) of
experiment=v4_selective for --e2e-epochs, and the same short run on both paths with its test balanced
accuracy and interval (--compare-epochs). The end-to-end runs hold out a tenth of each class as Test.
Weights are random (model.weights=none): no download, and the speed does not depend on them.
"""

import argparse
import json
import os
import platform
import random
import subprocess
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
from skin_lightning.model.networks import torchvision_network
from skin_lightning.prepare import prepare
from skin_lightning.train import train

CUDA = torch.cuda.is_available()
PLAIN = ["model.fast_step=false", "data.on_device=false"]
FAST = ["model.fast_step=auto", "data.on_device=auto"] if CUDA else ["model.fast_step=true", "data.on_device=true"]


def compose_config(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def clocks() -> tuple[float, float]:
    """Wall time and this process's CPU time (all threads): the second hardly moves when other work shares the cores."""
    if CUDA:
        torch.cuda.synchronize()
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
        if batch_idx + 1 == trainer.num_training_batches:
            BatchTimer.measured = rates(self.images, self.started)


def seed_loop(data: Path, arch: str, size: int, batch: int, warmup: int, batches: int) -> tuple[float, float]:
    """The course scripts' v4 loop, kept as they wrote it: per-image PIL work in the main process, fp32."""
    resize = [transforms.Resize(size)] if size != 84 else []
    recipe = transforms.Compose(
        [
            *resize,
            transforms.RandomRotation(30),
            transforms.RandomHorizontalFlip(),
            transforms.RandomVerticalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    device = torch.device("cuda" if CUDA else "cpu")
    dataset = torchvision.datasets.ImageFolder(str(data), transform=recipe)
    counts = np.bincount(dataset.targets)
    weights = 1.0 / counts[np.asarray(dataset.targets)]
    sampler = WeightedRandomSampler(torch.as_tensor(weights), num_samples=len(dataset), replacement=True)
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=0)
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


def link_layout(train_dir: Path, root: Path, test_share: float, per_class: int | None = None) -> Path:
    """ROOT/Train and ROOT/Test as links to the given class folders: every tenth image (test_share 0.1) of a
    class goes to Test, at least one; per_class keeps only the first images of each class."""
    for class_dir in sorted(p for p in train_dir.iterdir() if p.is_dir()):
        files = sorted(class_dir.iterdir())[:per_class]
        every = max(1, round(1 / test_share))
        for index, image in enumerate(files):
            split = "Test" if index % every == every - 1 or (index == 0 and len(files) < every) else "Train"
            (root / split / class_dir.name).mkdir(parents=True, exist_ok=True)
            (root / split / class_dir.name / image.name).symlink_to(image.resolve())
    return root


def project_training(
    root: Path, work: Path, arch: str, size: int, batch: int, warmup: int, batches: int, path: list[str]
) -> tuple[tuple[float, float], str]:
    cfg = compose_config(
        "train",
        [
            "experiment=v4_selective",
            *path,
            f"data.root={root}",
            f"data.image_size={size}",
            f"data.batch_size={batch}",
            f"model.arch={arch}",
            "model.weights=none",
            "logger=csv",
            f"output_dir={work / 'train'}",
            "trainer.max_epochs=1",
            f"trainer.limit_train_batches={warmup + batches}",
            "trainer.limit_val_batches=0",
            "trainer.num_sanity_val_steps=0",
            "trainer.enable_progress_bar=false",
            "~callbacks.checkpoint",
            "+callbacks.timer._target_=__main__.BatchTimer",
            f"+callbacks.timer.warmup={warmup}",
        ],
    )
    train(cfg)
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    return BatchTimer.measured, str(precision)


def ceilings(
    arch: str, size: int, batch: int, precision: str, warmup: int, batches: int
) -> dict[str, tuple[float, float]]:
    """Forward, backward and step on one random batch already in memory: what the network alone can do,
    launched op by op ("eager") and, on a GPU, replayed as one captured CUDA graph ("graph")."""
    device = torch.device("cuda" if CUDA else "cpu")
    model = torchvision_network(arch, 8, weights="none", freeze_backbone=False)
    model = model.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, fused=CUDA or None)
    inputs = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 8, (batch,), device=device)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)

    def step() -> None:
        optimizer.zero_grad(set_to_none=False)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None, cache_enabled=False):
            logits = model(inputs)
        F.cross_entropy(logits.float(), labels).backward()
        optimizer.step()

    def timed(run) -> tuple[float, float]:
        for _ in range(warmup):
            run()
        started = clocks()
        for _ in range(batches):
            run()
        return rates(batches * batch, started)

    measured = {"eager": timed(step)}
    if CUDA:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        measured["graph"] = timed(graph.replay)
    return measured


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
    base = ["experiment=v4_selective", *PLAIN, f"data.root={root}", f"data.cache_dir={work / 'cache'}"]
    base.append(f"output_dir={work / 'prepare'}")
    prepared = prepare(compose_config("prepare", base))
    return {
        "jpeg": loader_rate([*base, "data.cache=none"], 5.0),
        "cache": loader_rate([*base, "data.cache=disk"], 2.0),
        "prepare": prepared,
    }


def end_to_end(root: Path, run_dir: Path, arch: str, epochs: int, path: list[str]) -> dict:
    """`python -m skin_lightning.train` for experiment=v4_selective, timed from process start to exit."""
    command = [
        sys.executable,
        "-m",
        "skin_lightning.train",
        "experiment=v4_selective",
        *path,
        f"data.root={root}",
        f"model.arch={arch}",
        "model.weights=none",
        f"trainer.max_epochs={epochs}",
        f"hydra.run.dir={run_dir}",
    ]
    started = time.perf_counter()
    path_entries = [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path_entries))},
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-5000:], flush=True)
        return {"seconds": seconds, "failed": True}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    low, high = metrics["intervals"]["balanced_accuracy"]
    decoding = next(
        (
            line.split(" - ")[-1]
            for line in (result.stdout + result.stderr).splitlines()
            if "images/s) into memory" in line
        ),
        "",
    )
    return {
        "seconds": seconds,
        "balanced_accuracy": metrics["balanced_accuracy"],
        "low": low,
        "high": high,
        "images": metrics["num_images"],
        "decoding": decoding,
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name() if CUDA else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def shape_rows(args, work: Path, size: int, batch: int) -> dict[str, tuple[float, float]]:
    # larger shapes: fewer images a class (their store is large), as many timed images, a shorter warm-up
    small = size <= 96
    root = link_layout(args.data, work / f"linked{size}", 0.1, None if small else args.per_class_large)
    batches = args.batches if small else max(5, args.batches * 32 // batch)
    warmup = args.warmup if small else max(2, args.warmup // 4)
    rows = {"seed": seed_loop(root / "Train", args.arch, size, batch, warmup, batches)}
    print(f"{size} px (1) done: {rows['seed'][0]:.1f} images/s", flush=True)
    rows["project"], precision = project_training(
        root, work / f"eager{size}", args.arch, size, batch, warmup, batches, [*PLAIN, *args.overrides]
    )
    print(f"{size} px (2) done: {rows['project'][0]:.1f} images/s", flush=True)
    rows["fast"], _ = project_training(
        root, work / f"fast{size}", args.arch, size, batch, warmup, batches, [*FAST, *args.overrides]
    )
    print(f"{size} px (3) done: {rows['fast'][0]:.1f} images/s", flush=True)
    for name, rate in ceilings(args.arch, size, batch, precision, warmup, batches).items():
        rows[name] = rate
    print(f"{size} px (4, 5) done: {rows['eager'][0]:.1f}, {rows.get('graph', (0,))[0]:.1f} images/s", flush=True)
    rows["precision"] = precision
    return rows


def print_tables(args, shapes: dict, loading: dict | None, runs: dict) -> None:
    extra = f"; rows 2 and 3 with {' '.join(args.overrides)}" if args.overrides else ""
    print(
        f"\n{machine()}\n{args.warmup} warm-up batches (a quarter at shapes above 96 px), then timed batches; "
        f"random weights{extra}; "
        f"load average at end: {load()}\n"
    )
    print("| shape | # | measurement | images/s | images per CPU-second |\n|---|---|---|---:|---:|")
    for (size, batch), rows in shapes.items():
        labels = [
            ("1", "seed", "course scripts' loop: ImageFolder + PIL v4 transforms, no workers, fp32"),
            ("2", "project", f"this project, v4_selective, Lightning loop + DataLoaders, {rows['precision']}"),
            ("3", "fast", f"this project, v4_selective, fast path ({' '.join(FAST)})"),
            ("4", "eager", f"ceiling: bare {args.arch} step, eager, random tensors"),
            ("5", "graph", f"ceiling: bare {args.arch} step as one CUDA graph"),
        ]
        for number, key, label in labels:
            if key in rows:
                print(f"| {size} px, batch {batch} | {number} | {label} | {rows[key][0]:,.1f} | {rows[key][1]:,.1f} |")
    if loading:
        for number, key, label in [
            ("6a", "jpeg", f"loader only: {args.jpegs} 1024-px JPEGs decoded per image (data.cache=none)"),
            ("6b", "cache", "loader only: the same images from the prepared cache (data.cache=disk)"),
            ("", "prepare", "prepare: decoding the 1024-px JPEGs into the cache"),
        ]:
            print(f"| 84 px | {number} | {label} | {loading[key]:,.1f} | |")
    print("\n| shape | ratio | of images/s | target |\n|---|---|---:|---:|")
    for (size, batch), rows in shapes.items():
        ratios = [("(2) / (1): project vs course loop", "project", "seed", "")]
        if CUDA and size <= 96:
            ratios += [
                ("(3) / (5): fast path vs one-graph ceiling", "fast", "graph", ">= 0.75x"),
                ("(3) / (2): fast path vs Lightning loop", "fast", "project", ">= 3.5x"),
            ]
        elif CUDA:
            ratios += [("(3) / (4): fast path vs eager ceiling", "fast", "eager", ">= 0.9x")]
        else:
            ratios += [
                ("(3) / (2): fast path vs Lightning loop", "fast", "project", "no slower"),
                ("(2) / (4): project vs ceiling", "project", "eager", ""),
            ]
        for label, one, other, target in ratios:
            ratio = f"{rows[one][0] / rows[other][0]:.2f}x" if rows[other][0] else "n/a"
            print(f"| {size} px, batch {batch} | {label} | {ratio} | {target} |")
    if loading:
        print(f"| 84 px | (6b) / (6a): cache vs JPEG loader | {loading['cache'] / loading['jpeg']:.1f}x | >= 20x |")
    if runs:
        print(
            "\n| end-to-end run (experiment=v4_selective, model.weights=none) | epochs | seconds "
            "| test balanced accuracy [95% interval] |\n|---|---:|---:|---|"
        )
        for (name, epochs), run in runs.items():
            score = (
                "failed"
                if run.get("failed")
                else f"{run['balanced_accuracy']:.4f} [{run['low']:.4f}, {run['high']:.4f}] on {run['images']} images"
            )
            print(f"| {name} | {epochs} | {run['seconds']:.1f} | {score} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a Train folder with a sub-folder of JPEGs per class")
    parser.add_argument("--arch", default="resnet50", help="the v4 recipe's network (default resnet50)")
    parser.add_argument("--warmup", type=int, default=3, help="batches run before timing starts")
    parser.add_argument(
        "--batches", type=int, default=15, help="batches timed at 84 px (fewer, as many images, at larger shapes)"
    )
    parser.add_argument(
        "--shapes",
        default="84:32,224:128" if CUDA else "84:32",
        help="size:batch pairs (default: the recipe; on a GPU also 224:128); empty: none",
    )
    parser.add_argument(
        "--per-class-large",
        type=int,
        default=2000,
        help="images per class for shapes above 96 px (their store is large)",
    )
    parser.add_argument(
        "--jpegs",
        type=int,
        default=0 if CUDA else 300,
        help="1024-px JPEGs generated for the loader rows (0: skip them)",
    )
    parser.add_argument(
        "--e2e-epochs", type=int, default=0, help="time a whole fast-path run of this many epochs (0: skip)"
    )
    parser.add_argument(
        "--compare-epochs",
        type=int,
        default=0,
        help="run both paths this many epochs with one seed and compare test scores (0: skip)",
    )
    parser.add_argument(
        "--overrides", nargs="*", default=[], help="extra config overrides for rows 2 and 3, e.g. model.compile=true"
    )
    args = parser.parse_args()
    if not args.data.is_dir():
        parser.error(f"--data {args.data} is not a folder")
    print(f"machine: {machine()}\nload average at start: {load()}", flush=True)
    shapes, runs, loading = {}, {}, None
    with tempfile.TemporaryDirectory(prefix="skin_benchmark_") as tmp:
        work = Path(tmp)
        if args.e2e_epochs or args.compare_epochs:
            root = link_layout(args.data, work / "held_out", 0.1)
        if args.e2e_epochs:
            runs[("fast path", args.e2e_epochs)] = end_to_end(root, work / "e2e", args.arch, args.e2e_epochs, FAST)
            print(f"end-to-end: {runs[('fast path', args.e2e_epochs)]}", flush=True)
        for pair in filter(None, args.shapes.split(",")):
            size, batch = (int(part) for part in pair.split(":"))
            shapes[(size, batch)] = shape_rows(args, work, size, batch)
        if args.compare_epochs:
            for name, path in (("Lightning loop + DataLoaders", PLAIN), ("fast path", FAST)):
                runs[(name, args.compare_epochs)] = end_to_end(
                    root, work / f"compare_{len(runs)}", args.arch, args.compare_epochs, path
                )
                print(f"{name}: {runs[(name, args.compare_epochs)]}", flush=True)
        if args.jpegs:
            loading = loaders(args.data, work, args.jpegs)
    print_tables(args, shapes, loading, runs)


if __name__ == "__main__":
    main()
