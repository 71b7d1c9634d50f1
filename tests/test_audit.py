"""The data audit: copies found (exact, brightness-, contrast- and colour-shifted), look-alikes kept apart, splits
that keep clusters whole, conflicts dropped and listed, test scores without the leaked images, likely label errors."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skin_lightning.audit import audit
from skin_lightning.config import check_config
from skin_lightning.data import audit as audit_module
from skin_lightning.data.copies import audit_pixels, find_copies, perceptual_hashes
from skin_lightning.data.datamodule import SkinDataModule
from skin_lightning.data.images import decode_image
from skin_lightning.data.split import stratified_folds, stratified_split
from skin_lightning.errors import UserError
from skin_lightning.results.scores import score
from skin_lightning.train import train

from conftest import FAST, compose_config, compose_train

SHIFTS = {
    "exact": lambda x: x,
    "brighter": lambda x: x + 30,
    "contrast": lambda x: 0.75 * x + 40,
    "colour": lambda x: x * np.array([1.12, 0.95, 0.8]) + np.array([0, 10, 5]),
}


def shifted(image: np.ndarray, shift) -> np.ndarray:
    return np.clip(np.round(shift(image.astype(np.float64))), 0, 255).astype(np.uint8)


def demo_images(demo_root: Path, name: str, count: int) -> list[Path]:
    return sorted((demo_root / "Train" / name).glob("*.jpg"))[:count]


def test_copies_under_a_brightness_contrast_or_colour_shift_are_found_and_look_alikes_are_not(demo_root):
    # eight pictures of one class: the same kind of lesion on the same skin, so they look alike
    sources = [decode_image(path, 64) for path in demo_images(demo_root, "NV", 8)]
    images = list(sources) + [shifted(sources[k], shift) for k, shift in enumerate(SHIFTS.values())]
    pixels = audit_pixels(np.stack(images))
    found = find_copies(pixels, perceptual_hashes(pixels))
    for k, name in enumerate(SHIFTS):
        copy = len(sources) + k
        assert found.cluster[k] >= 0 and found.cluster[k] == found.cluster[copy], name
    assert (found.cluster[4 : len(sources)] == -1).all()
    assert len(np.unique(found.cluster[found.cluster >= 0])) == len(SHIFTS)
    assert found.residual[0] == pytest.approx(0, abs=0.5)  # the exact copy


@pytest.fixture
def real_copies(real_train):
    """Two byte-identical pictures under two labels, and three small-field look-alikes of different lesions."""
    return {
        "copy": [real_train / "MEL" / "ISIC_0067502.jpg", real_train / "NV" / "ISIC_0067980.jpg"],
        "look-alikes": [
            real_train / "BCC" / "ISIC_0057569.jpg",
            real_train / "BCC" / "ISIC_0064424.jpg",
            real_train / "NV" / "ISIC_0071406.jpg",
        ],
    }


def test_real_copies_are_found_and_real_look_alikes_inside_the_dermoscope_circle_are_not(real_copies):
    paths = real_copies["copy"] + real_copies["look-alikes"]
    images = [decode_image(path, 84) for path in paths]
    images.append(shifted(images[0], SHIFTS["colour"]))
    pixels = audit_pixels(np.stack(images))
    found = find_copies(pixels, perceptual_hashes(pixels))
    assert found.cluster[0] == found.cluster[1] == found.cluster[5] >= 0
    assert (found.cluster[2:5] == -1).all()


def test_grouped_split_and_folds_keep_every_group_on_one_side():
    labels = np.repeat(np.arange(4), 40)
    groups = np.arange(len(labels))
    within = np.arange(len(labels)) % 40
    triples = within < 30  # the first 30 images of every class come as ten groups of three copies
    groups[triples] = 1000 + (np.arange(len(labels)) // 3)[triples]
    kept, held = stratified_split(labels, 0.25, seed=3, groups=groups)
    assert not set(groups[kept]) & set(groups[held])
    assert abs(len(held) - 40) <= 4
    folds = stratified_folds(labels, 5, seed=3, groups=groups)
    assert sorted(np.concatenate(folds)) == list(range(len(labels)))
    for a in range(5):
        for b in range(a + 1, 5):
            assert not set(groups[folds[a]]) & set(groups[folds[b]])
    # without copies the split is the image-by-image split of older runs
    assert [h.tolist() for h in stratified_folds(labels, 5, 3)] == [
        h.tolist() for h in stratified_folds(labels, 5, 3, groups=np.arange(len(labels)))
    ]


@pytest.fixture
def leaky_root(demo_root, tmp_path) -> Path:
    """The demo set plus copies: 6 test images copied (brightened) into Train, 4 Train copies inside Train, one
    Train picture copied under another label (a conflict), and one test picture copied into Train under two labels."""
    root = tmp_path / "leaky"
    shutil.copytree(demo_root, root)
    for k, path in enumerate(sorted((root / "Test" / "MEL").glob("*.jpg"))[:6]):
        Image.fromarray(shifted(decode_image(path, 64), SHIFTS["brighter"])).save(
            root / "Train" / "MEL" / f"leak_{k}.png"
        )
    for k, path in enumerate(demo_images(root, "BCC", 4)):
        Image.fromarray(shifted(decode_image(path, 64), SHIFTS["colour"])).save(root / "Train" / "BCC" / f"dup_{k}.png")
    source = demo_images(root, "NV", 1)[0]
    shutil.copy(source, root / "Train" / "MEL" / "conflict.jpg")
    test_bcc = sorted((root / "Test" / "BCC").glob("*.jpg"))[0]
    for name in ("BCC", "NV"):  # a test picture whose only copies in Train carry two labels: both left out
        shutil.copy(test_bcc, root / "Train" / name / "left_out.jpg")
    return root


def read_split(path: Path) -> dict[str, str]:
    """Split of every image, by its path."""
    with open(path, newline="") as handle:
        return {row["path"]: row["split"] for row in csv.DictReader(handle)}


@pytest.mark.slow
def test_a_run_keeps_copies_on_one_side_drops_conflicts_and_scores_the_test_split_without_leaked_images(
    leaky_root, tmp_path
):
    run = tmp_path / "run"
    summary = train(
        compose_train([*FAST, "experiment=demo", f"data.root={leaky_root}", f"output_dir={run}", "logger=csv"])
    )
    splits = read_split(run / "split.csv")
    for k, source in enumerate(demo_images(leaky_root, "BCC", 4)):
        assert splits[str(source)] == splits[str(leaky_root / "Train" / "BCC" / f"dup_{k}.png")] != "test"
    with open(run / "label_conflicts.csv", newline="") as handle:
        dropped = {Path(row["path"]).name for row in csv.DictReader(handle)}
    assert dropped == {"conflict.jpg", demo_images(leaky_root, "NV", 1)[0].name, "left_out.jpg"}
    assert str(leaky_root / "Train" / "MEL" / "conflict.jpg") not in splits

    without = summary["without_training_copies"]
    assert without["excluded_images"] == 6
    assert without["copies_left_out_of_training"] == 1
    with open(run / "test_predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    leaked = sorted((leaky_root / "Test" / "MEL").glob("*.jpg"))[:6]
    marked = {row["path"]: row["training_copy"] for row in rows if row["training_copy"]}
    assert marked == {str(path): str(leaky_root / "Train" / "MEL" / f"leak_{k}.png") for k, path in enumerate(leaked)}
    classes = summary["classes"]
    keep = [row for row in rows if not row["training_copy"]]
    probs = np.array([[float(row[f"prob_{c}"]) for c in classes] for row in keep])
    labels = np.array([classes.index(row["true"]) for row in keep])
    expected, _ = score(probs, labels, classes, 15)
    assert without["num_images"] == len(keep) == summary["num_images"] - 6
    assert without["balanced_accuracy"] == pytest.approx(expected["balanced_accuracy"])
    assert without["intervals"]["balanced_accuracy"] == pytest.approx(expected["intervals"]["balanced_accuracy"])
    report = (run / "report.md").read_text()
    assert "Test images with a copy in the training data (train or validation split): 6, each named" in report
    assert "1 more test images have copies in Train only among the images left out as label conflicts" in report


def test_ignore_keeps_the_image_by_image_split_of_older_runs(leaky_root, tmp_path):
    cfg = compose_train(["experiment=demo", f"data.root={leaky_root}", "data.duplicates=ignore"])
    module = SkinDataModule(cfg.data, cfg.augment, cfg.sampler, cfg.seed, tmp_path)
    module.setup("fit")
    assert not (tmp_path / "label_conflicts.csv").exists()
    assert any(path.name == "conflict.jpg" for path in module.samples("train").paths + module.samples("val").paths)


@pytest.mark.parametrize(("key", "value"), [("data.duplicates", "drop"), ("data.label_conflicts", "yes")])
def test_a_bad_duplicates_setting_is_one_message_naming_its_key(key, value):
    cfg = compose_train(["experiment=demo", "data.root=/nowhere", f"{key}={value}"])
    with pytest.raises(UserError, match=f"^{key}={value} is invalid: expected one of "):
        check_config(cfg)


@pytest.mark.slow
def test_the_audit_command_writes_its_report_and_a_sweep_computes_it_once(leaky_root, tmp_path, monkeypatch):
    out = tmp_path / "audit"
    cfg = compose_config(
        "audit",
        [f"data.root={leaky_root}", f"output_dir={out}", "data.cache=disk", f"data.cache_dir={tmp_path / 'cache'}"],
    )
    calls = []
    real = audit_module.run_audit
    monkeypatch.setattr(audit_module, "run_audit", lambda *a: calls.append(1) or real(*a))
    audit_module._last_audit.clear()
    result = audit(cfg)
    assert calls == [1] and result["clusters"] == 6 + 4 + 1 + 1
    with open(out / "audit.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["cluster_splits"] for row in rows} == {"Train", "Train+Test"}
    assert rows[0]["label_conflict"] == "True"  # conflicts first, for a person to check
    # the run's 6 test images with a copy in training, and the one whose copies are left out as a conflict
    assert sum(row["cluster_splits"] == "Train+Test" and row["split"] == "Test" for row in rows) == 6 + 1
    text = (out / "audit.md").read_text()
    assert "| Test | MEL | 25 | 6 | 6 | 0 | 6 | 0 |" in text
    assert Image.open(out / "copies.png").size[1] > 100
    assert list((tmp_path / "cache").glob("audit-*.npz"))
    audit_module._last_audit.clear()  # a new process: the disk file is read, nothing is computed again
    audit(cfg)
    assert calls == [1]


def test_an_audit_without_copies_writes_no_blank_montage(tmp_path):
    root, rng = tmp_path / "data", np.random.default_rng(0)
    for name in ("A", "B"):
        (root / "Train" / name).mkdir(parents=True)
        for k in range(4):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / "Train" / name / f"{k}.png")
    out = tmp_path / "audit"
    assert audit(compose_config("audit", [f"data.root={root}", f"output_dir={out}"]))["clusters"] == 0
    assert not (out / "copies.png").exists()
    assert "there is no copies.png" in (out / "audit.md").read_text()


@pytest.mark.slow
def test_a_train_only_folder_is_audited(real_train, tmp_path):
    root = tmp_path / "train_only"
    (root / "Train").mkdir(parents=True)
    for name in ("MEL", "NV"):
        (root / "Train" / name).symlink_to(real_train / name)
    cfg = compose_config("audit", [f"data.root={root}", f"output_dir={tmp_path / 'out'}"])
    audit(cfg)
    with open(tmp_path / "out" / "audit.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    conflicts = {row["path"].rsplit("/", 1)[1] for row in rows if row["label_conflict"] == "True"}
    assert {"ISIC_0067502.jpg", "ISIC_0067980.jpg", "ISIC_0071017.jpg", "ISIC_0069013.jpg"} <= conflicts


def write_fold_predictions(sweep: Path, paths, labels, probs, classes, folds: int) -> None:
    for fold, members in enumerate(np.array_split(np.arange(len(paths)), folds)):
        job = sweep / f"{fold}_data.fold-{fold}"
        job.mkdir(parents=True)
        with open(job / "val_predictions.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "true", "predicted", *(f"prob_{c}" for c in classes)])
            for i in members:
                writer.writerow([paths[i], classes[labels[i]], classes[probs[i].argmax()], *probs[i]])


@pytest.mark.slow
def test_likely_label_errors_are_the_flipped_labels(demo_root, tmp_path):
    """Truth known: a tenth of the demo's Train labels flipped, and the out-of-fold probabilities of a simulated
    model that is right about nine images in ten (logits: 3 on the true class plus unit noise), ranked by cleanlab
    through the audit command."""
    cfg = compose_train(["experiment=demo", f"data.root={demo_root}"])
    layout = SkinDataModule(cfg.data, None, None, 0).read_layout()
    paths, truth = layout.train.paths, np.asarray(layout.train.labels)
    classes = len(layout.classes)
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(paths), len(paths) // 10, replace=False)
    given = truth.copy()
    given[flipped] = (truth[flipped] + rng.integers(1, classes, len(flipped))) % classes
    logits = 3.0 * np.eye(classes)[truth] + rng.normal(size=(len(paths), classes))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    fold_of = rng.permutation(len(paths)) % 5
    order = np.argsort(fold_of, kind="stable")
    write_fold_predictions(
        tmp_path / "sweep", [str(paths[i]) for i in order], given[order], probs[order], layout.classes, 5
    )
    out = tmp_path / "audit"
    audit(compose_config("audit", [f"data.root={demo_root}", f"output_dir={out}", f"labels_from={tmp_path / 'sweep'}"]))
    with open(out / "label_issues.csv", newline="") as handle:
        found = {row["path"] for row in csv.DictReader(handle)}
    truly = {str(paths[i]) for i in flipped}
    recall, precision = len(found & truly) / len(truly), len(found & truly) / len(found)
    assert recall >= 0.8 and precision >= 0.6, (recall, precision)
    assert "## Likely label errors" in (out / "audit.md").read_text()
    assert (out / "label_issues.png").exists()


def test_labels_from_a_folder_without_fold_predictions_says_what_to_run(demo_root, tmp_path):
    cfg = compose_config("audit", [f"data.root={demo_root}", f"output_dir={tmp_path}", f"labels_from={tmp_path}"])
    with pytest.raises(UserError, match="no val_predictions.csv under it. Point it at the folder of a k-fold sweep"):
        audit(cfg)


@pytest.mark.slow
def test_a_fold_job_writes_its_out_of_fold_predictions(demo_root, tmp_path):
    run = tmp_path / "run"
    train(
        compose_train(
            [
                *FAST,
                "experiment=demo",
                f"data.root={demo_root}",
                f"output_dir={run}",
                "logger=csv",
                "data.fold=1",
                "data.folds=3",
            ]
        )
    )
    with open(run / "val_predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    split = read_split(run / "split.csv")
    assert len(rows) == sum(value == "val" for value in split.values())
    assert json.loads((run / "metrics.json").read_text())["validation"]["fold"] == 1
