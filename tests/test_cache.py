"""The decoded-image cache: its key, its atomic write, its reuse, and the prepare command that builds it."""

import os
import subprocess
import sys

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

import skin_lightning.data.cache as cache
from skin_lightning.cli import CONFIG_DIR
from skin_lightning.data.datamodule import SkinDataModule
from skin_lightning.data.images import decode_image
from skin_lightning.errors import UserError
from skin_lightning.prepare import prepare

from conftest import FAST, compose_train


def write_image(path, value: int, size: int = 12):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def files(tmp_path):
    return [write_image(tmp_path / "images" / f"{i}.png", 40 * i) for i in range(4)]


def no_decoding(*args, **kwargs):
    raise AssertionError("the cache was decoded again")


def test_key_follows_file_list_sizes_mtimes_and_image_size(files):
    key = cache.cache_key(files, 8)
    assert cache.cache_key(list(reversed(files)), 8) == key
    assert cache.cache_key(files, 9) != key
    assert cache.cache_key(files[:-1], 8) != key
    stat = os.stat(files[0])
    os.utime(files[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = cache.cache_key(files, 8)
    assert touched != key
    with open(files[1], "ab") as handle:
        handle.write(b"\0")
    os.utime(files[1], ns=(os.stat(files[1]).st_atime_ns, stat.st_mtime_ns))
    assert cache.cache_key(files, 8) != touched


def test_disk_cache_is_built_once_then_memory_mapped(files, tmp_path, monkeypatch):
    built = cache.decoded_store(files, 8, "disk", tmp_path / "cache")
    target = cache.cache_file(files, 8, tmp_path / "cache")
    assert sorted(p.name for p in target.parent.iterdir()) == sorted(
        [target.name, target.with_suffix(".bad.json").name]
    )
    monkeypatch.setattr(cache, "decode_into", no_decoding)
    reused = cache.decoded_store(files, 8, "disk", tmp_path / "cache")
    assert isinstance(reused.images, np.memmap) and reused.images.shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(reused.images, built.images)
    assert reused.images[reused.rows([files[3]])][0, 0, 0, 0] == 120


def test_changed_data_set_rebuilds(files, tmp_path):
    first = cache.decoded_store(files, 8, "disk", tmp_path / "cache")
    write_image(files[2], 200)
    second = cache.decoded_store(files, 8, "disk", tmp_path / "cache")
    assert first.images[first.rows([files[2]])][0, 0, 0, 0] == 80
    assert second.images[second.rows([files[2]])][0, 0, 0, 0] == 200
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_interrupted_build_leaves_no_file_that_a_later_run_would_read(files, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    target = cache.cache_file(files, 8, cache_dir)
    decode_into = cache.decode_into

    def interrupted(paths, size, store, **kwargs):
        decode_into(paths[:2], size, store)
        assert not target.exists() and len(list(cache_dir.glob(".*.tmp"))) == 1
        raise KeyboardInterrupt

    monkeypatch.setattr(cache, "decode_into", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.decoded_store(files, 8, "disk", cache_dir)
    assert list(cache_dir.iterdir()) == []
    monkeypatch.setattr(cache, "decode_into", decode_into)
    store = cache.decoded_store(files, 8, "disk", cache_dir)
    assert target.exists() and store.images[store.rows([files[3]])][0, 0, 0, 0] == 120


def test_unreadable_files_are_remembered_by_the_cache(files, tmp_path, monkeypatch):
    broken = tmp_path / "images" / "broken.png"
    broken.write_bytes(b"not an image")
    first = cache.decoded_store(files + [broken], 8, "disk", tmp_path / "cache")
    monkeypatch.setattr(cache, "decode_into", no_decoding)
    second = cache.decoded_store(files + [broken], 8, "disk", tmp_path / "cache")
    assert [e.path for e in first.bad] == [e.path for e in second.bad] == [broken]


def test_unwritable_cache_dir_names_the_key(files, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(UserError, match=r"data.cache_dir=.*a_file/cache"):
        cache.decoded_store(files, 8, "disk", blocker / "cache")


def setup_datamodule(overrides):
    cfg = compose_train(overrides)
    datamodule = SkinDataModule(cfg.data, cfg.augment, cfg.sampler, cfg.seed)
    datamodule.setup("fit")
    return datamodule


@pytest.mark.slow
def test_every_cache_mode_gives_the_same_batches(demo_root, tmp_path):
    base = ["experiment=demo", f"data.root={demo_root}", f"data.cache_dir={tmp_path / 'cache'}", *FAST]
    batches = {}
    for mode in ("none", "memory", "disk"):
        datamodule = setup_datamodule([*base, f"data.cache={mode}"])
        batches[mode] = {split: datamodule.splits[split].__getitems__([0, 5, 3]) for split in ("train", "val", "test")}
    for split in ("train", "val", "test"):
        for mode in ("memory", "disk"):
            for got, expected in zip(batches[mode][split], batches["none"][split]):
                assert torch_equal(got, expected), (mode, split)


def torch_equal(a, b) -> bool:
    return bool((a == b).all()) and a.shape == b.shape


def test_prepare_builds_the_cache_that_training_reads(demo_root, tmp_path, monkeypatch):
    overrides = [
        "experiment=demo",
        f"data.root={demo_root}",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"output_dir={tmp_path / 'run'}",
        *FAST,
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="prepare", overrides=overrides)
    assert prepare(cfg) > 0
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    monkeypatch.setattr(cache, "decode_into", no_decoding)
    datamodule = setup_datamodule([*overrides, "data.cache=disk"])
    assert isinstance(datamodule.splits["train"].images, np.memmap)


def test_jobs_of_a_sweep_decode_into_memory_once(demo_root, monkeypatch):
    overrides = ["experiment=demo", f"data.root={demo_root}", "data.cache=memory", *FAST]
    first = setup_datamodule(overrides)
    monkeypatch.setattr(cache, "decode_into", no_decoding)
    second = setup_datamodule([*overrides, "seed=7"])
    assert second.splits["train"].images is first.splits["train"].images


def test_large_jpeg_decodes_at_reduced_scale_to_the_same_pixels(tmp_path):
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (16, 16, 3)), np.ones((64, 64, 1))).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "large.jpg", quality=95)
    with Image.open(tmp_path / "large.jpg") as image:
        full = np.asarray(image.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float64)
    fast = decode_image(tmp_path / "large.jpg", 64)
    assert fast.shape == (64, 64, 3) and np.abs(fast - full).mean() < 2.0


DECODE_WITH_SIGTERM_IGNORED = """
import signal, sys
from pathlib import Path
import numpy as np
signal.signal(signal.SIGTERM, lambda signum, frame: print("SIGTERM ignored", flush=True))  # as submitit's job does
from skin_lightning.data.images import decode_image, decode_into, shared_store
paths = sorted(Path(sys.argv[1]).rglob("*.jpg"))[:1024]
for _ in range(5):
    store = shared_store(len(paths), 16)
    assert not decode_into(paths, 16, store, workers=2)
print(int(np.array_equal(store[-1], decode_image(paths[-1], 16))))
"""


@pytest.mark.slow
def test_forked_decoding_ends_in_a_process_that_ignores_sigterm(demo_root, tmp_path):
    """A submitit (SLURM) job ignores SIGTERM; the decoding processes forked from it used to outlive the
    pool's terminate() and hang the job before its first epoch."""
    script = tmp_path / "decode.py"
    script.write_text(DECODE_WITH_SIGTERM_IGNORED)
    result = subprocess.run(
        [sys.executable, str(script), str(demo_root)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["1"]  # the rows were decoded, and no worker needed a SIGTERM
