"""The package's shape: imports run one way (entry points -> results -> model -> data), small modules,
and one registry of choices per config group."""

import ast
from pathlib import Path

import pytest
import yaml

from skin_lightning.cli import CONFIG_DIR
from skin_lightning.config import GROUP_KEYS, group_choices
from skin_lightning.model.module import OPTIMIZERS

PACKAGE = Path(__file__).resolve().parents[1] / "skin_lightning"
LAYERS = {"data": 0, "model": 1, "results": 2}  # a layer may import its own and lower ones
SHARED = {"errors"}  # imported from every layer
ENTRY_POINTS = {"train", "evaluate", "predict", "explain", "export", "prepare", "summary"}


def modules() -> dict[str, Path]:
    return {
        ".".join(path.relative_to(PACKAGE).with_suffix("").parts): path
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py"
    }


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("skin_lightning."):
            names.add(node.module.removeprefix("skin_lightning."))
        elif isinstance(node, ast.Import):
            names |= {
                alias.name.removeprefix("skin_lightning.")
                for alias in node.names
                if alias.name.startswith("skin_lightning.")
            }
    return names


def layer(module: str) -> int:
    """data 0, model 1, results 2, top-level 3; shared leaf modules -1."""
    top = module.split(".")[0]
    return -1 if module in SHARED else LAYERS.get(top, 3)


def test_imports_run_one_way():
    wrong = []
    for name, path in modules().items():
        for target in imported(path):
            if layer(target) > layer(name):
                wrong.append(f"{name} imports {target}")
            if name in ENTRY_POINTS and target in ENTRY_POINTS:
                wrong.append(f"entry point {name} imports entry point {target}")
    assert not wrong, wrong


def test_the_layout_has_the_three_layers_and_the_entry_points():
    found = set(modules())
    assert {
        "data.layouts",
        "data.split",
        "data.images",
        "data.cache",
        "data.demo",
        "data.augment",
        "data.datamodule",
    } <= found
    assert {
        "model.networks",
        "model.module",
        "model.metrics",
        "model.callbacks",
        "model.checkpoints",
        "model.inference",
    } <= found
    assert {
        "results.scores",
        "results.tables",
        "results.figures",
        "results.stats",
        "results.comparisons",
        "results.sweep",
    } <= found
    assert ENTRY_POINTS <= found


def test_no_module_is_over_300_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > 300}
    assert not long, long


@pytest.mark.parametrize("group", sorted(GROUP_KEYS))
def test_each_group_folder_is_its_registry(group):
    """Every file of a group names itself, so the folder alone lists the choices check_config accepts."""
    choices = group_choices(group)
    assert len(choices) >= 2
    for choice in choices:
        content = yaml.safe_load((Path(CONFIG_DIR) / group / f"{choice}.yaml").read_text())
        assert content[GROUP_KEYS[group]] == choice, (group, choice)


def test_the_code_implements_every_optimizer_choice():
    assert set(group_choices("optim")) == set(OPTIMIZERS)
