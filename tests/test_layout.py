"""The package's shape: imports run one way (entry points -> results -> model -> data), small modules,
and the conf/ folder as the one registry of the swappable parts."""

import ast
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from skin_lightning.cli import CONFIG_DIR
from skin_lightning.model.networks import network_config
from skin_lightning.parts import check_settings

from conftest import compose_train

PACKAGE = Path(__file__).resolve().parents[1] / "skin_lightning"
LAYERS = {"data": 0, "model": 1, "results": 2}  # a layer may import its own and lower ones
SHARED = {"errors", "parts"}  # imported from every layer
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


# the groups whose every file builds a part from its `_target_`
PART_GROUPS = ("loss", "optim", "optim/scheduler", "sampler", "model")


@pytest.mark.parametrize(
    "group, choice",
    [(group, path.stem) for group in PART_GROUPS for path in sorted((Path(CONFIG_DIR) / group).glob("*.yaml"))],
)
def test_each_part_file_names_a_callable_that_takes_its_settings(group, choice):
    """A new file in one of these folders is a new choice: no list of names anywhere else needs it."""
    cfg = compose_train([f"{group}={choice}", "data.root=/anywhere"])
    node = OmegaConf.to_container(OmegaConf.select(cfg, group.replace("/", ".")), resolve=True)
    if group == "model":
        node = network_config(node)
    check_settings(node, group.replace("/", "."), skip=("scheduler",))
