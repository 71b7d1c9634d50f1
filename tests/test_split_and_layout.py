"""The validation split and the folder layout reader."""

import csv
import logging

import numpy as np
import pytest
from PIL import Image

from skin_lightning.data.layouts import read_folder_layout
from skin_lightning.data.split import stratified_split
from skin_lightning.errors import UserError


def make_layout(root, train: dict, test: dict):
    for split, counts in (("Train", train), ("Test", test)):
        for name, count in counts.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.new("RGB", (8, 8), (i, 0, 0)).save(folder / f"{name}_{i}.png")
    return root


def test_split_is_stratified_disjoint_and_seeded():
    labels = [0] * 500 + [1] * 100 + [2] * 10 + [3] * 2
    kept, held = stratified_split(labels, 0.2, seed=7)
    assert len(np.intersect1d(kept, held)) == 0
    assert sorted(np.concatenate([kept, held])) == list(range(len(labels)))
    counts = np.bincount(np.asarray(labels)[held], minlength=4)
    assert counts.tolist() == [100, 20, 2, 1]
    again_kept, again_held = stratified_split(labels, 0.2, seed=7)
    assert np.array_equal(held, again_held) and np.array_equal(kept, again_kept)
    assert not np.array_equal(held, stratified_split(labels, 0.2, seed=8)[1])


def test_zero_fraction_holds_nothing_out():
    kept, held = stratified_split([0, 0, 1, 1], 0.0, seed=0)
    assert len(held) == 0 and len(kept) == 4


def test_layout_reads_classes_from_train(tmp_path):
    root = make_layout(tmp_path, {"NV": 3, "AK": 2, "MEL": 1}, {"AK": 1, "MEL": 1, "NV": 1})
    (root / "Train" / "NV" / ".hidden.jpg").write_bytes(b"")
    (root / "Train" / "AK" / "UPPER.JPG").write_bytes((root / "Train" / "AK" / "AK_0.png").read_bytes())
    layout = read_folder_layout(root)
    assert layout.classes == ["AK", "MEL", "NV"]
    assert np.bincount(layout.train.labels).tolist() == [3, 1, 3]
    assert all(p.parent.name == layout.classes[k] for p, k in zip(layout.train.paths, layout.train.labels))
    assert len(layout.test) == 3


def test_unknown_test_class_is_named(tmp_path):
    root = make_layout(tmp_path, {"AK": 1, "NV": 1}, {"AK": 1, "XYZ": 1})
    with pytest.raises(UserError, match="XYZ"):
        read_folder_layout(root)


def test_class_missing_from_test_warns(tmp_path, caplog):
    root = make_layout(tmp_path, {"AK": 1, "NV": 1}, {"AK": 1})
    with caplog.at_level(logging.WARNING):
        read_folder_layout(root)
    assert "no images of class NV" in caplog.text


def test_bad_paths_are_named(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_folder_layout(tmp_path / "nowhere")
    make_layout(tmp_path, {"AK": 1}, {})
    assert read_folder_layout(tmp_path).test is None  # a test split is then held out of Train


def test_split_csv_lists_every_image_once(tmp_path, demo_root):
    from skin_lightning.data.datamodule import SkinDataModule

    from conftest import compose_train

    cfg = compose_train(["experiment=demo", f"data.root={demo_root}", "data.image_size=16", f"output_dir={tmp_path}"])
    datamodule = SkinDataModule(cfg.data, cfg.augment, cfg.sampler, cfg.seed, tmp_path)
    datamodule.setup()
    with open(tmp_path / "split.csv") as handle:
        rows = list(csv.DictReader(handle))
    by_split = {s: {r["path"] for r in rows if r["split"] == s} for s in ("train", "val", "test")}
    assert len(rows) == sum(len(v) for v in by_split.values())
    assert not by_split["train"] & by_split["val"] and not by_split["test"] & (by_split["train"] | by_split["val"])
    assert len(by_split["val"]) == len(datamodule.samples("val")) > 0
    assert all(r["label"] == r["path"].split("/")[-2] for r in rows)
