"""One source for every default, the YAML: parts built from the composed defaults do what it says, and take no
default of their own where it has one."""

from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from skin_lightning.data.datamodule import SkinDataModule
from skin_lightning.model.fast_step import use_fast_step
from skin_lightning.model.module import SkinClassifier

from conftest import compose_train


def classifier(model: dict, cfg) -> SkinClassifier:
    parts = {key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("loss", "optim")}
    return SkinClassifier(classes=["a", "b"], class_counts=[3, 4], model=model, **parts)


def on(device: str, precision: str = "32-true") -> SimpleNamespace:
    """The trainer settings use_fast_step reads: one process, no clipping or accumulation."""
    strategy = SimpleNamespace(root_device=torch.device(device))
    return SimpleNamespace(
        strategy=strategy, precision=precision, world_size=1, gradient_clip_val=None, accumulate_grad_batches=1
    )


def test_the_default_model_is_built_as_its_yaml_says():
    cfg = compose_train(["data.root=/data", "model.arch=resnet18", "model.weights=none"])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    assert (model["channels_last"], model["compile"], model["fast_step"]) == (True, False, "auto")
    weight = classifier(model, cfg).net.conv1.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert not classifier({**model, "channels_last": False}, cfg).net.conv1.weight.is_contiguous(
        memory_format=torch.channels_last
    )
    # fast_step=auto: the whole step on one CUDA device, Lightning's loop on a CPU
    assert use_fast_step(model, on("cuda")) and not use_fast_step(model, on("cpu"))
    for key in ("channels_last", "compile"):
        with pytest.raises(KeyError, match=key):  # no default in code to fall back on
            classifier({name: value for name, value in model.items() if name != key}, cfg)
    with pytest.raises(KeyError, match="fast_step"):
        use_fast_step({name: value for name, value in model.items() if name != "fast_step"}, on("cpu"))


def test_the_default_data_on_device_setting_reaches_the_datamodule(demo_root):
    cfg = compose_train([f"data.root={demo_root}", "data.image_size=16"])
    assert cfg.data.on_device == "auto"
    datamodule = SkinDataModule(cfg.data, cfg.augment, cfg.sampler, cfg.seed)
    datamodule.setup("fit")
    assert datamodule._device_images() is None  # auto, without a trainer on a GPU: DataLoaders
    assert isinstance(datamodule.train_dataloader(), torch.utils.data.DataLoader)
    data = {name: value for name, value in OmegaConf.to_container(cfg.data).items() if name != "on_device"}
    without = SkinDataModule(data, cfg.augment, cfg.sampler, cfg.seed)
    without.splits = datamodule.splits
    with pytest.raises(KeyError, match="on_device"):
        without._device_images()
