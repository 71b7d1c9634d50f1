"""The package installs any way pip does: the wheel carries every config and the console scripts."""

import os
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("train", "evaluate", "predict", "explain", "export", "prepare", "summary", "audit")


@pytest.mark.slow
def test_the_wheel_holds_the_configs_and_runs_from_outside_the_checkout(tmp_path):
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("skin_lightning-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
        entry_points = archive.read(info).decode()
        metadata = Parser().parsestr(archive.read(info.replace("entry_points.txt", "METADATA")).decode())
        archive.extractall(tmp_path / "site")
    configs = {str(p.relative_to(REPO)) for p in (REPO / "skin_lightning" / "conf").rglob("*.yaml")}
    assert len(configs) > 30 and configs <= names
    assert {
        "skin_lightning/data/datamodule.py",
        "skin_lightning/model/module.py",
        "skin_lightning/results/scores.py",
    } <= names
    for name in SCRIPTS:
        assert f"skin-{name} = skin_lightning.{name}:main" in entry_points
    requires = metadata.get_all("Requires-Dist")
    assert "numpy>=2" in requires and "torch<=2.14.1,>=2.6" in requires

    # from another folder, with only the unpacked wheel importable: the configs are found inside the package
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    composed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import runpy, sys, skin_lightning; print(skin_lightning.__file__); "
            "sys.argv = ['skin-train', 'experiment=demo', '--cfg', 'job']; "
            "runpy.run_module('skin_lightning.train', run_name='__main__')",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert composed.returncode == 0, composed.stderr[-2000:]
    assert composed.stdout.startswith(str(tmp_path / "site" / "skin_lightning"))
    assert "arch: resnet18" in composed.stdout and "layout: demo" in composed.stdout
