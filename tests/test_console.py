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
        *FAST, f"data.root={demo_root}", "augment=selective", "sampler=oversample", "model.arch=resnet18",
        f"hydra.run.dir={run}", "trainer.max_epochs=2", "trainer.limit_val_batches=1", "trainer.log_every_n_steps=50",
        "seed=3",
    ]
    result = run_train(overrides, cwd=run)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr, demo_root


@pytest.mark.slow
def test_a_run_prints_none_of_the_filtered_warnings(console):
    text, _ = console
    shown = [line for line in FILTERED if line in text]
    assert not shown, text


@pytest.mark.slow
def test_a_warning_a_user_can_act_on_still_shows(console):
    text, _ = console
    assert "is smaller than the logging interval Trainer(log_every_n_steps=50)" in text
    # Lightning's summary prints a FLOPs count it never measured; the next lines say so
    assert "Total FLOPs" in text and "the model summary's Total FLOPs reads 0: Lightning counts FLOPs only" in text


@pytest.mark.slow
def test_the_console_names_the_settings_and_each_epoch(console):
    """The group choices first, then the values; data.cache_dir follows data.root, so it is not listed."""
    text, demo_root = console
    (settings,) = re.findall(r"settings that differ from the defaults: (.*)", text)
    assert set(settings.split()[:2]) == {"augment=selective", "sampler=oversample"}
    assert {f"data.root={demo_root}", "model.arch=resnet18", "model.weights=none", "seed=3",
            "trainer.max_epochs=2"} <= set(settings.split())
    assert "data.cache_dir" not in settings
    epochs = re.findall(r"epoch (\d)/2, validation: loss [\d.]+, balanced accuracy [\d.]+, macro F1 [\d.]+", text)
    assert epochs == ["1", "2"]
