"""Bad images, bad folders and bad overrides: each decoded correctly or stopped with a clear message.

An unknown Test class, a missing Test folder and a class missing from Test are in test_split_and_layout.py.
"""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skin_lightning.data.datamodule import SkinDataModule
from skin_lightning.data.images import BadImageError, decode_image
from skin_lightning.data.layouts import read_folder_layout
from skin_lightning.errors import UserError
from skin_lightning.train import train

from conftest import FAST, compose_train, run_train

SIZE = 32


def png(path: Path, width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> Path:
    """A PNG written chunk by chunk, for the kinds Pillow cannot save (16-bit RGB, a lying header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )
    return path


def halves(left, right, mode="RGB", size=(40, 40)) -> Image.Image:
    image = Image.new(mode, size, left)
    image.paste(Image.new(mode, (size[0] // 2, size[1]), right), (size[0] // 2, 0))
    return image


def good_jpeg(path: Path, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def truncated_jpeg(folder: Path) -> Path:
    data = good_jpeg(folder / "whole.jpg").read_bytes()
    path = folder / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    return path


def zero_bytes(folder: Path) -> Path:
    path = folder / "empty.jpg"
    path.touch()
    return path


def text_file(folder: Path) -> Path:
    path = folder / "notes.jpg"
    path.write_text("lesion on the left forearm, see photo\n")
    return path


def one_pixel(folder: Path) -> Path:
    path = folder / "dot.png"
    Image.new("RGB", (1, 1), (200, 100, 50)).save(path)
    return path


def bomb(folder: Path, side: int) -> Path:
    """A header claiming side x side pixels over one row of data: Pillow reads the size before decoding."""
    return png(folder / f"bomb{side}.png", side, side, 8, 0, b"\x00" + bytes(side))


@pytest.mark.parametrize(
    "make, reason",
    [
        (truncated_jpeg, "image file is truncated"),
        (zero_bytes, "empty file (0 bytes)"),
        (text_file, "cannot identify image file: not an image Pillow can read"),
        (one_pixel, "1x1 pixels, too small to show a lesion"),
        (lambda folder: bomb(folder, 10_000), "10000x10000 pixels, over Pillow's decompression-bomb limit"),
        (lambda folder: bomb(folder, 20_000), "could be decompression bomb"),
    ],
    ids=["truncated_jpeg", "zero_bytes", "text_named_jpg", "1x1", "over_bomb_limit", "twice_bomb_limit"],
)
def test_unreadable_images_are_reported_with_path_and_reason(tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(BadImageError) as caught:
        decode_image(path, SIZE)
    assert caught.value.path == path
    assert reason in caught.value.reason
    assert str(path) in str(caught.value)


def assert_halves(pixels: np.ndarray, left, right, tolerance: int = 6) -> None:
    assert pixels.shape == (SIZE, SIZE, 3) and pixels.dtype == np.uint8
    np.testing.assert_allclose(pixels[:, : SIZE // 2 - 2].reshape(-1, 3).mean(0), left, atol=tolerance)
    np.testing.assert_allclose(pixels[:, SIZE // 2 + 2 :].reshape(-1, 3).mean(0), right, atol=tolerance)


def test_png_with_alpha_shows_black_where_transparent(tmp_path):
    image = halves((220, 30, 30, 255), (0, 255, 0, 0), mode="RGBA")  # the hidden half stores green
    image.save(tmp_path / "alpha.png")
    assert_halves(decode_image(tmp_path / "alpha.png", SIZE), (220, 30, 30), (0, 0, 0))


def test_palette_with_transparency_shows_black_where_transparent(tmp_path):
    image = halves((220, 30, 30), (0, 255, 0)).quantize(2)
    green = next(i for i, colour in enumerate(np.reshape(image.getpalette()[:6], (2, 3))) if colour[1] == 255)
    image.save(tmp_path / "palette.png", transparency=green)
    assert_halves(decode_image(tmp_path / "palette.png", SIZE), (220, 30, 30), (0, 0, 0))


def test_grayscale_and_palette_become_rgb(tmp_path):
    halves(60, 200, mode="L").save(tmp_path / "gray.png")
    assert_halves(decode_image(tmp_path / "gray.png", SIZE), (60, 60, 60), (200, 200, 200), tolerance=1)
    halves((220, 30, 30), (20, 40, 200)).quantize(2).save(tmp_path / "palette.png")
    assert_halves(decode_image(tmp_path / "palette.png", SIZE), (220, 30, 30), (20, 40, 200))


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    halves((0, 255, 255, 0), (255, 255, 0, 0), mode="CMYK").save(tmp_path / "cmyk.jpg", quality=95)  # red, blue
    assert_halves(decode_image(tmp_path / "cmyk.jpg", SIZE), (255, 0, 0), (0, 0, 255), tolerance=12)


def test_sixteen_bit_grayscale_is_scaled_not_clipped_to_white(tmp_path):
    levels = np.full((SIZE, SIZE), 40_000, dtype=">u2")
    levels[:, SIZE // 2 :] = 10_000
    png(tmp_path / "gray16.png", SIZE, SIZE, 16, 0, b"".join(b"\x00" + row.tobytes() for row in levels))
    assert Image.open(tmp_path / "gray16.png").mode.startswith("I;16")
    assert_halves(decode_image(tmp_path / "gray16.png", SIZE), (156, 156, 156), (39, 39, 39), tolerance=1)


def test_sixteen_bit_rgb_keeps_its_colour(tmp_path):
    pixels = np.empty((SIZE, SIZE, 3), dtype=">u2")
    pixels[:, : SIZE // 2] = (40_000, 20_000, 10_000)
    pixels[:, SIZE // 2 :] = (10_000, 20_000, 40_000)
    png(tmp_path / "rgb16.png", SIZE, SIZE, 16, 2, b"".join(b"\x00" + row.tobytes() for row in pixels))
    assert_halves(decode_image(tmp_path / "rgb16.png", SIZE), (156, 78, 39), (39, 78, 156), tolerance=1)


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (40, 40), (20, 40, 200))
    stored.paste(Image.new("RGB", (40, 20), (220, 30, 30)), (0, 0))  # red top, blue bottom as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: display rotated 90 degrees clockwise
    stored.save(tmp_path / "turned.jpg", exif=exif, quality=95)
    # upright, the stored top is on the right
    assert_halves(decode_image(tmp_path / "turned.jpg", SIZE), (20, 40, 200), (220, 30, 30), tolerance=12)


def folder_with_bad_images(root: Path) -> list[Path]:
    """Two classes of good JPEGs plus four bad files spread over Train and Test."""
    for split, count in (("Train", 8), ("Test", 3)):
        for name in ("A", "B"):
            (root / split / name).mkdir(parents=True)
            for k in range(count):
                good_jpeg(root / split / name / f"{name}{k}.jpg", seed=k)
    bad = [truncated_jpeg(root / "Train" / "A"), zero_bytes(root / "Train" / "B"), text_file(root / "Train" / "B")]
    bad.append(one_pixel(root / "Test" / "A"))
    (root / "Train" / "A" / "whole.jpg").unlink()
    return bad


def datamodule(root: Path, output_dir: Path, *overrides: str) -> SkinDataModule:
    cfg = compose_train([f"data.root={root}", "data.val_fraction=0.25", *overrides])
    return SkinDataModule(cfg.data, cfg.augment, cfg.sampler, cfg.seed, output_dir)


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_bad_images_stop_the_run_with_the_full_list(tmp_path, cache):
    bad = folder_with_bad_images(tmp_path / "data")
    with pytest.raises(UserError) as caught:
        datamodule(tmp_path / "data", tmp_path, f"data.cache={cache}").setup("fit")
    message = str(caught.value)
    assert message.startswith("4 images could not be read")
    assert all(str(path) in message for path in bad)
    assert "data.on_bad_image=skip" in message
    assert not (tmp_path / "split.csv").exists()


@pytest.mark.slow
def test_skip_trains_without_bad_images_and_lists_them(tmp_path):
    bad = folder_with_bad_images(tmp_path / "data")
    cfg = compose_train(
        [
            *FAST,
            f"data.root={tmp_path / 'data'}",
            "data.val_fraction=0.25",
            "data.cache=none",
            "data.num_workers=0",
            "data.on_bad_image=skip",
            "data.batch_size=4",
            "model.arch=resnet18",
            f"output_dir={tmp_path / 'run'}",
            "logger=csv",
        ]
    )
    summary = train(cfg)
    listing = (tmp_path / "run" / "bad_images.tsv").read_text().splitlines()
    assert listing[0] == "path\treason"
    assert sorted(line.split("\t")[0] for line in listing[1:]) == sorted(map(str, bad))
    used = (tmp_path / "run" / "split.csv").read_text()
    assert not any(str(path) in used for path in bad)
    assert summary["num_images"] == 6  # seven test files, one of them 1x1


def make_classes(split: Path, *names: str) -> None:
    for name in names:
        (split / name).mkdir(parents=True)
        good_jpeg(split / name / "x.jpg")


@pytest.mark.parametrize(
    "build, expected",
    [
        (
            lambda root: (
                make_classes(root / "Train", "A", "B"),
                (root / "Train" / "C").mkdir(),
                make_classes(root / "Test", "A", "B"),
            ),
            "class folder {root}/Train/C has no images",
        ),
        (lambda root: make_classes(root / "Test", "A"), "{root}/Train does not exist"),
        (
            lambda root: (
                make_classes(root / "Train", "A"),
                make_classes(root / "Test", "A"),
                good_jpeg(root / "Train" / "stray.jpg"),
            ),
            "{root}/Train/stray.jpg lies directly in Train/",
        ),
    ],
    ids=["empty_class_folder", "missing_train", "file_directly_under_train"],
)
def test_bad_folder_layouts_are_named(tmp_path, build, expected):
    build(tmp_path)
    with pytest.raises(UserError) as caught:
        read_folder_layout(tmp_path)
    assert expected.format(root=tmp_path) in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize(
    "override, message",
    [
        ("augment=nope", "Could not find 'augment/nope'"),
        ("data.val_fraction=2", "data.val_fraction=2 is invalid: expected a number in [0, 1)"),
    ],
)
def test_wrong_override_stops_before_any_data_is_read(tmp_path, override, message):
    root = tmp_path / "demo"
    result = run_train(
        ["experiment=demo", f"data.root={root}", f"hydra.run.dir={tmp_path / 'run'}", override], cwd=tmp_path
    )
    output = result.stdout + result.stderr  # Hydra's log of our error goes to stdout, its own errors to stderr
    assert result.returncode == 1
    assert message in output
    assert "Traceback" not in output
    assert not root.exists()  # the demo data was never written, so nothing was decoded either
    assert not (tmp_path / "run" / "split.csv").exists()
