"""A training run's console: the settings that differ from the defaults, one line per epoch, none of the library
warnings a user can do nothing about, and every other warning still shown."""

import re

import pytest

from conftest import FAST, run_train

# what each filter removes, as the libraries print it
FILTERED = (
    "is deprecated, use `isinstance(treespec, TreeSpec)",  # Lightning's pytree helper on a newer torch
    "is not supported by the model summary",  # bf16 weights in Lightning's model summary
    "No positive samples in targets",  # torchmetrics' ROC on a validation batch without some class
    "does not have many workers",  # Lightning's advice for loaders of images already in memory
    "Tip: For seamless cloud logging",  # Lightning's advertisement
    "was configured so 100% of the batches",  # Lightning repeating a default
)


@pytest.fixture(scope="module")
def console(tmp_path_factory, demo_root) -> str:
    """A demo-sized run whose one validation batch lacks classes, with a logging interval longer than its epoch:
    Lightning's warning about that interval is one a user can act on, so it must still show."""
    run = tmp_path_factory.mktemp("console")
    overrides = [
        *FAST, "experiment=demo", f"data.root={demo_root}", f"hydra.run.dir={run}", "trainer.max_epochs=2",
        "trainer.limit_val_batches=1", "trainer.log_every_n_steps=50", "seed=3",
    ]
    result = run_train(overrides, cwd=run)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def test_a_run_prints_none_of_the_filtered_warnings(console):
    shown = [text for text in FILTERED if text in console]
    assert not shown, console


def test_a_warning_a_user_can_act_on_still_shows(console):
    assert "is smaller than the logging interval Trainer(log_every_n_steps=50)" in console


def test_the_console_names_the_settings_and_each_epoch(console):
    (settings,) = re.findall(r"settings that differ from the defaults: (.*)", console)
    assert settings.split()[:1] == ["experiment=demo"]
    assert {"augment=selective", "sampler=oversample", "model.arch=resnet18", "seed=3", "trainer.max_epochs=2"} <= set(
        settings.split()
    )
    epochs = re.findall(r"epoch (\d)/2, validation: loss [\d.]+, balanced accuracy [\d.]+, macro F1 [\d.]+", console)
    assert epochs == ["1", "2"]
