"""Data without a test split of its own (a folder with Train/ alone): one is held out of Train, drawn with
data.split_seed, so the training seed changes the training and not the images it is tested on."""

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from skin_lightning.data.datamodule import SkinDataModule
from skin_lightning.data.split import carve_test_split
from skin_lightning.errors import UserError
from skin_lightning.train import train

from conftest import FAST, compose_train


@pytest.fixture(scope="module")
def train_only(demo_root, tmp_path_factory) -> Path:
    """The demo's Train folder alone, the usual shape of a user's own data."""
    root = tmp_path_factory.mktemp("own") / "data"
    shutil.copytree(demo_root / "Train", root / "Train")
    return root


def splits_of(root: Path, *overrides: str) -> dict[str, list[str]]:
    cfg = compose_train([f"data.root={root}", "data.duplicates=ignore", *overrides])
    splits = SkinDataModule(cfg.data, None, None, cfg.seed).read_splits()
    return {name: sorted(map(str, samples.paths)) for name, samples in splits.items()}


def test_the_training_seed_moves_neither_the_test_nor_the_validation_images(train_only):
    first, second = splits_of(train_only, "seed=1"), splits_of(train_only, "seed=2")
    assert first == second
    assert len(first["test"]) == 222  # data.test_fraction=0.2 of each class of the 1,110 images
    assert splits_of(train_only, "seed=1", "data.split_seed=5")["test"] != first["test"]
    drawn_with_the_seed = splits_of(train_only, "seed=2", "data.split_seed=${seed}")
    assert drawn_with_the_seed["test"] != splits_of(train_only, "seed=1", "data.split_seed=${seed}")["test"]


def test_a_count_per_class_gives_a_balanced_test_split(train_only):
    test = splits_of(train_only, "data.test_per_class=10")["test"]
    by_class = Counter(Path(path).parent.name for path in test)
    assert by_class == dict.fromkeys(("AK", "BCC", "BKL", "DF", "MEL", "NV", "SCC", "VASC"), 10)
    with pytest.raises(UserError, match=r"data.test_per_class=25 .* DF \(25\), VASC \(25\) has fewer"):
        splits_of(train_only, "data.test_per_class=25")


def test_copies_stay_on_one_side_of_the_carved_test_split():
    labels = np.repeat([0, 1], 40)
    groups = np.arange(80) // 4  # clusters of four copies
    # a share of 10 images a class is reached with three whole clusters; a count of 8 with two
    for per_class, held_per_class in ((None, 12), (8, 8)):
        kept, held = carve_test_split(labels, ["A", "B"], 0.25, per_class, seed=3, groups=groups)
        assert not set(groups[kept]) & set(groups[held])
        assert np.bincount(labels[held]).tolist() == [held_per_class, held_per_class]


@pytest.mark.slow
def test_a_train_only_folder_trains_and_records_its_split_seed(train_only, tmp_path):
    run = tmp_path / "run"
    overrides = ["experiment=demo", "data=folder", f"data.root={train_only}", f"output_dir={run}", "logger=csv"]
    train(compose_train([*FAST, *overrides]))
    with open(run / "split.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    tested = [row["path"] for row in rows if row["split"] == "test"]
    assert tested and all(Path(path).parts[-3] == "Train" for path in tested)
    assert {row["split_seed"] for row in rows} == {"0"}
    assert json.loads((run / "metrics.json").read_text())["split_seed"] == 0
