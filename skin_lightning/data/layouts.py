"""Layout readers: turn a data folder into (path, label) lists and the class names.

Class names and their order always come from the training data; every other split is
checked against them, so a label can never silently mean a different class.
"""

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from skin_lightning.errors import UserError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Samples:
    paths: list[Path]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices) -> "Samples":
        return Samples([self.paths[i] for i in indices], [self.labels[i] for i in indices])


@dataclass(frozen=True)
class Layout:
    """`test` is None when the data set has no test split of its own (one is then held out of train)."""

    classes: list[str]
    train: Samples
    test: Samples | None


def _visible(entries):
    return sorted(e for e in entries if not e.name.startswith("."))


def _class_folders(split_dir: Path) -> dict[str, list[Path]]:
    if not split_dir.is_dir():
        raise UserError(
            f"{split_dir} does not exist: data.root must hold Train/<CLASS>/*.jpg (and Test/<CLASS>/*.jpg, or a "
            "test split is held out of Train)"
        )
    folders: dict[str, list[Path]] = {}
    ignored: list[Path] = []
    for entry in _visible(split_dir.iterdir()):
        if not entry.is_dir():
            raise UserError(
                f"{entry} lies directly in {split_dir.name}/: images must be inside a class folder "
                f"({split_dir.name}/<CLASS>/{entry.name}); move or delete it"
            )
        images = []
        for path in _visible(entry.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(path)
            else:
                ignored.append(path)
        if not images:
            raise UserError(f"class folder {entry} has no images ({', '.join(IMAGE_SUFFIXES)})")
        folders[entry.name] = images
    if not folders:
        raise UserError(f"{split_dir} has no class folders: expected {split_dir}/<CLASS>/*.jpg")
    if ignored:
        log.warning(
            "%s: ignored %d entries that are not %s images, e.g. %s",
            split_dir,
            len(ignored),
            "/".join(IMAGE_SUFFIXES),
            ignored[0],
        )
    return folders


def _to_samples(folders: dict[str, list[Path]], classes: list[str]) -> Samples:
    paths, labels = [], []
    for name, images in folders.items():
        paths += images
        labels += [classes.index(name)] * len(images)
    return Samples(paths, labels)


def existing_root(root) -> Path:
    """data.root as a Path, or the error that names it: checked before any slow work (a weights download)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data.root={root} does not exist or is not a folder")
    return root


def read_folder_layout(root: Path) -> Layout:
    """ROOT/Train/<CLASS>/* and ROOT/Test/<CLASS>/*, the layout of the ISIC84by84 course data.

    A root without Test/ (the usual shape of a user's own data) gives a layout without a test split: training
    holds one out of Train (data.test_fraction or data.test_per_class), the audit reads Train alone.
    """
    root = existing_root(root)
    train = _class_folders(root / "Train")
    if not (root / "Test").exists():
        log.info("%s has no Test folder: a test split is held out of Train", root)
        classes = sorted(train)
        return Layout(classes, _to_samples(train, classes), None)
    test = _class_folders(root / "Test")
    classes = sorted(train)
    unknown = sorted(set(test) - set(classes))
    if unknown:
        raise UserError(
            f"{root / 'Test'} has class folders that Train does not: {', '.join(unknown)} "
            f"(Train classes: {', '.join(classes)}); rename or remove them"
        )
    missing = sorted(set(classes) - set(test))
    if missing:
        log.warning("%s has no images of class %s: their test metrics are undefined", root / "Test", ", ".join(missing))
    return Layout(classes, _to_samples(train, classes), _to_samples(test, classes))


ISIC_LABELS = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
ISIC_UNKNOWN = "UNK"
ISIC_SPLITS = {
    "train": ("ISIC_2019_Training_Input", "ISIC_2019_Training_GroundTruth.csv"),
    "test": ("ISIC_2019_Test_Input", "ISIC_2019_Test_GroundTruth.csv"),
}


def _one_hot_label(row: dict, table: Path, line: int) -> str:
    values = {}
    for name in ISIC_LABELS:
        try:
            values[name] = float(row[name])
        except (TypeError, ValueError):
            raise UserError(f"{table} line {line} ({row['image']}): {name}={row[name]!r} is not a number") from None
    hot = [name for name, value in values.items() if value == 1.0]
    if len(hot) != 1 or any(value not in (0.0, 1.0) for value in values.values()):
        shown = ",".join(f"{name}={row[name]}" for name in ISIC_LABELS)
        raise UserError(
            f"{table} line {line} ({row['image']}) is not one-hot ({shown}): every row needs exactly one 1 "
            "and zeros elsewhere; fix or remove the row"
        )
    return hot[0]


def _isic_split(root: Path, folder: str, table: str, classes: list[str]) -> Samples:
    images_dir, table_path = root / folder, root / table
    if not images_dir.is_dir():
        raise UserError(
            f"{images_dir} does not exist: data.layout=isic2019 expects {folder}/ next to {table} in data.root"
        )
    files = {path.stem: path for path in _visible(images_dir.iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES}
    with open(table_path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing_columns = [name for name in ("image", *ISIC_LABELS) if name not in (reader.fieldnames or [])]
        if missing_columns:
            raise UserError(
                f"{table_path} lacks the column(s) {', '.join(missing_columns)}: the header must be "
                f"image,{','.join(ISIC_LABELS)}"
            )
        paths, labels, seen, absent, unknown = [], [], set(), [], 0
        for line, row in enumerate(reader, start=2):
            image = row["image"].strip()
            if image in seen:
                raise UserError(f"{table_path} line {line}: image {image} is listed twice; keep one row per image")
            seen.add(image)
            label = _one_hot_label(row, table_path, line)
            if label == ISIC_UNKNOWN:
                unknown += 1
            elif image not in files:
                absent.append(f"line {line}: {image}")
            else:
                paths.append(files[image])
                labels.append(classes.index(label))
    if absent:
        shown = "\n  ".join(absent[:20]) + (f"\n  ... and {len(absent) - 20} more" if len(absent) > 20 else "")
        raise UserError(
            f"{len(absent)} images listed in {table_path} are not in {images_dir}:\n  {shown}\n"
            "Restore the files or remove their rows."
        )
    if unknown:
        log.info("%s: left out %d rows labelled %s (no such class to learn)", table_path, unknown, ISIC_UNKNOWN)
    if not paths:
        raise UserError(f"{table_path} lists no images of a known class")
    return Samples(paths, labels)


def read_isic2019_layout(root: Path) -> Layout:
    """The official ISIC 2019 files: image folders plus one-hot ground-truth tables.

    Classes are the table's columns minus UNK, sorted like folder names, so a model trained on
    this layout and one trained on ISIC84by84 folders have the same class order.
    """
    root = existing_root(root)
    classes = sorted(name for name in ISIC_LABELS if name != ISIC_UNKNOWN)
    folder, table = ISIC_SPLITS["train"]
    if not (root / table).is_file():
        raise UserError(
            f"{root / table} does not exist: data.root must hold {table} and {folder}/ (data.layout=isic2019)"
        )
    train = _isic_split(root, folder, table, classes)
    test_folder, test_table = ISIC_SPLITS["test"]
    if (root / test_table).is_file():
        return Layout(classes, train, _isic_split(root, test_folder, test_table, classes))
    log.info("%s has no %s: a test split is held out of the training rows", root, test_table)
    return Layout(classes, train, None)
