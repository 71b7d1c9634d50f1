"""Shared fixtures: the generated demo data, the real images when present, and config composition."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from skin_lightning.cli import CONFIG_DIR
from skin_lightning.data.demo import make_demo_dataset
from skin_lightning.train import train

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_84 = SHARED_DATA / "isic84by84" / "Train"
REAL_ISIC2019 = SHARED_DATA / "isic2019_sample"

# One intra-op thread: the tests' batches are tiny, and on a shared 2-core machine a second thread waiting for a
# busy core made every convolution up to 40 times slower. Processes the tests start inherit it (train_env).
TORCH_THREADS = "1"
torch.set_num_threads(int(TORCH_THREADS))

# Small enough for a CPU test: tiny images, two batches of each stage, no downloads.
FAST = [
    "model.weights=none",
    "data.image_size=32",
    "data.batch_size=8",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
]
# a network as a test builds it: no download, every layer trained (the YAML defaults are imagenet and false)
FROM_SCRATCH = {"weights": "none", "freeze_backbone": False}


def pytest_collection_modifyitems(config, items) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device: torch.cuda.is_available() is False on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def compose_config(name: str, overrides: list[str]):
    """A composed entry-point config (train, evaluate, predict, explain, export), as its command line would make it."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def compose_train(overrides: list[str]):
    return compose_config("train", overrides)


def target(group: str, choice: str) -> str:
    """The `_target_` of a config group's choice: what tells a composed config's choice apart."""
    return OmegaConf.load(Path(CONFIG_DIR) / group / f"{choice}.yaml")._target_


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("data") / "demo")


@pytest.fixture
def real_train() -> Path:
    if not REAL_84.is_dir():
        pytest.skip(f"real images not found at {REAL_84}")
    return REAL_84


@pytest.fixture
def real_isic2019() -> Path:
    if not REAL_ISIC2019.is_dir():
        pytest.skip(f"real images not found at {REAL_ISIC2019}")
    return REAL_ISIC2019


@pytest.fixture(scope="session")
def demo_checkpoint(demo_root, tmp_path_factory) -> Path:
    """A ResNet-18 trained for two FAST batches on the demo data: weights that load, not a useful model."""
    run = tmp_path_factory.mktemp("demo_run")
    train(compose_train([*FAST, "experiment=demo", f"data.root={demo_root}", f"output_dir={run}", "logger=csv"]))
    return run / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="session")
def timm_checkpoint(demo_root, tmp_path_factory):
    """A timm ConvNeXt trained for two batches on the fast step, in channels_last."""
    run = tmp_path_factory.mktemp("timm_run")
    overrides = [*FAST, "experiment=demo", "model=timm", "model.name=test_convnext", "model.fast_step=true"]
    train(compose_train([*overrides, f"data.root={demo_root}", f"output_dir={run}", "logger=csv"]))
    return run / "checkpoints" / "best.ckpt"


def run_train(overrides: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m skin_lightning.train` in a fresh process, with this checkout and tests/probes.py importable."""
    return subprocess.run(
        [sys.executable, "-m", "skin_lightning.train", *overrides],
        cwd=cwd, env=train_env(), capture_output=True, text=True, timeout=timeout,
    )


def train_env() -> dict:
    repo = Path(__file__).resolve().parents[1]
    path = os.pathsep.join([str(repo), str(repo / "tests")])
    return {**os.environ, "OMP_NUM_THREADS": TORCH_THREADS, "PYTHONPATH": path, "HYDRA_FULL_ERROR": "0"}
