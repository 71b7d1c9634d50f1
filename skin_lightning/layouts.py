"""Layout readers: turn a data folder into (path, label) lists and the class names.

Class names and their order always come from the training data; every other split is
checked against them, so a label can never silently mean a different class.
"""

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
    classes: list[str]
    train: Samples
    test: Samples


def _visible(entries):
    return sorted(e for e in entries if not e.name.startswith("."))


def _class_folders(split_dir: Path) -> dict[str, list[Path]]:
    if not split_dir.is_dir():
        raise UserError(
            f"{split_dir} does not exist: data.root must hold Train/<CLASS>/*.jpg and Test/<CLASS>/*.jpg"
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
            split_dir, len(ignored), "/".join(IMAGE_SUFFIXES), ignored[0],
        )
    return folders


def _to_samples(folders: dict[str, list[Path]], classes: list[str]) -> Samples:
    paths, labels = [], []
    for name, images in folders.items():
        paths += images
        labels += [classes.index(name)] * len(images)
    return Samples(paths, labels)


def read_folder_layout(root: Path) -> Layout:
    """ROOT/Train/<CLASS>/* and ROOT/Test/<CLASS>/*, the layout of the ISIC84by84 course data."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data.root={root} does not exist or is not a folder")
    train = _class_folders(root / "Train")
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
