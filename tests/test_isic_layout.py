"""The official ISIC 2019 layout: one-hot tables, UNK rows, missing files, test split or hold-out."""

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skin_lightning.data.datamodule import SkinDataModule
from skin_lightning.data.layouts import ISIC_LABELS, read_folder_layout, read_isic2019_layout
from skin_lightning.errors import UserError

HEADER = "image," + ",".join(ISIC_LABELS)


def one_hot(label: str) -> str:
    return ",".join("1.0" if name == label else "0.0" for name in ISIC_LABELS)


def write_split(
    root: Path, folder: str, table: str, rows: list[tuple[str, str]], lines: list[str] | None = None
) -> None:
    """Tiny JPEGs for every row plus the ground-truth table (or `lines` as the table, verbatim)."""
    (root / folder).mkdir(parents=True, exist_ok=True)
    for image, _ in rows:
        Image.new("RGB", (8, 8), (120, 80, 60)).save(root / folder / f"{image}.jpg")
    body = lines if lines is not None else [f"{image},{one_hot(label)}" for image, label in rows]
    (root / table).write_text("\n".join([HEADER, *body]) + "\n")


def write_training(root: Path, rows: list[tuple[str, str]], lines: list[str] | None = None) -> Path:
    write_split(root, "ISIC_2019_Training_Input", "ISIC_2019_Training_GroundTruth.csv", rows, lines)
    return root


def rows_of(counts: dict[str, int], prefix: str = "ISIC_") -> list[tuple[str, str]]:
    return [(f"{prefix}{label}_{k:03d}", label) for label, count in counts.items() for k in range(count)]


def test_reads_one_hot_rows_and_leaves_out_unk(tmp_path, caplog):
    rows = rows_of({"MEL": 3, "NV": 4, "DF": 2, "UNK": 2})
    root = write_training(tmp_path, rows)
    with caplog.at_level(logging.INFO):
        layout = read_isic2019_layout(root)
    assert layout.classes == ["AK", "BCC", "BKL", "DF", "MEL", "NV", "SCC", "VASC"]
    assert layout.test is None
    assert len(layout.train) == 9
    named = {path.stem: layout.classes[label] for path, label in zip(layout.train.paths, layout.train.labels)}
    assert named == {image: label for image, label in rows if label != "UNK"}
    assert "left out 2 rows labelled UNK" in caplog.text


def test_class_order_matches_the_folder_layout(tmp_path, demo_root):
    root = write_training(tmp_path, rows_of({"MEL": 1}))
    assert read_isic2019_layout(root).classes == read_folder_layout(demo_root).classes


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ISIC_bad,1.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0", "line 3 (ISIC_bad) is not one-hot"),
        ("ISIC_bad,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0", "line 3 (ISIC_bad) is not one-hot"),
        ("ISIC_bad,0.5,0.5,0.0,0.0,0.0,0.0,0.0,0.0,0.0", "line 3 (ISIC_bad) is not one-hot"),
        ("ISIC_bad,yes,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0", "line 3 (ISIC_bad): MEL='yes' is not a number"),
        ("ISIC_good," + one_hot("NV"), "line 3: image ISIC_good is listed twice"),
    ],
)
def test_bad_rows_are_named(tmp_path, line, message):
    rows = [("ISIC_good", "NV"), ("ISIC_bad", "MEL")]
    root = write_training(tmp_path, rows, lines=[f"ISIC_good,{one_hot('NV')}", line])
    with pytest.raises(UserError, match="ISIC_2019_Training_GroundTruth.csv") as error:
        read_isic2019_layout(root)
    assert message in str(error.value)


def test_missing_image_and_missing_column_are_named(tmp_path):
    root = write_training(tmp_path, [("ISIC_1", "NV"), ("ISIC_2", "MEL")])
    (root / "ISIC_2019_Training_Input" / "ISIC_2.jpg").unlink()
    with pytest.raises(UserError, match=r"1 images listed in .*GroundTruth.csv are not in .*\n  line 3: ISIC_2"):
        read_isic2019_layout(root)
    (root / "ISIC_2019_Training_GroundTruth.csv").write_text("image,MEL,NV\nISIC_1,0.0,1.0\n")
    with pytest.raises(UserError, match="lacks the column.*BCC, AK, BKL, DF, VASC, SCC, UNK"):
        read_isic2019_layout(root)
    with pytest.raises(UserError, match="ISIC_2019_Training_GroundTruth.csv does not exist"):
        read_isic2019_layout(tmp_path / "ISIC_2019_Training_Input")


def datamodule(root: Path, split_seed: int = 0) -> SkinDataModule:
    data = {"layout": "isic2019", "root": str(root), "test_fraction": 0.25, "test_per_class": None,
            "split_seed": split_seed, "val_fraction": 0.2, "fold": None, "duplicates": "ignore"}
    return SkinDataModule(data, None, None, seed=0)


def test_official_test_split_is_used_when_present(tmp_path):
    root = write_training(tmp_path, rows_of({"MEL": 5, "NV": 5}))
    write_split(root, "ISIC_2019_Test_Input", "ISIC_2019_Test_GroundTruth.csv", rows_of({"BCC": 2, "UNK": 1}, "ISIC_T"))
    splits = datamodule(root).read_splits()
    assert sorted(path.stem for path in splits["test"].paths) == ["ISIC_TBCC_000", "ISIC_TBCC_001"]
    assert len(splits["train"]) + len(splits["val"]) == 10


def test_hold_out_is_stratified_seeded_and_disjoint(tmp_path):
    root = write_training(tmp_path, rows_of({"MEL": 20, "NV": 40, "DF": 4}))
    splits = datamodule(root).read_splits()
    classes = read_isic2019_layout(root).classes
    test_counts = np.bincount(splits["test"].labels, minlength=len(classes))
    assert {classes[k]: int(n) for k, n in enumerate(test_counts) if n} == {"MEL": 5, "NV": 10, "DF": 1}
    names = [{p.name for p in split.paths} for split in splits.values()]
    assert sum(map(len, names)) == 64 and len(set.union(*names)) == 64
    assert splits["test"].paths == datamodule(root).read_splits()["test"].paths
    assert splits["test"].paths != datamodule(root, split_seed=1).read_splits()["test"].paths


def test_real_sample(real_isic2019):
    layout = read_isic2019_layout(real_isic2019)
    counts = dict(zip(layout.classes, np.bincount(layout.train.labels).tolist()))
    assert counts == {"AK": 67, "BCC": 250, "BKL": 250, "DF": 29, "MEL": 250, "NV": 250, "SCC": 94, "VASC": 51}
    assert layout.test is None
