"""trainer.precision=auto, channels_last and model.compile."""

import pytest
import torch
from omegaconf import OmegaConf

import skin_lightning.model.hardware as hardware
from skin_lightning.model.module import SkinClassifier

from conftest import compose_train


@pytest.mark.parametrize(
    "accelerator, cuda, cuda_bf16, cpu_bf16, expected",
    [
        ("auto", True, True, False, "bf16-mixed"),
        ("gpu", True, False, True, "16-mixed"),
        ("cpu", True, True, False, "32-true"),
        ("auto", False, False, True, "bf16-mixed"),
        ("auto", False, False, False, "32-true"),
    ],
)
def test_auto_precision_follows_the_hardware(monkeypatch, accelerator, cuda, cuda_bf16, cpu_bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: cuda_bf16)
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: cpu_bf16)
    assert hardware.resolve_precision("auto", accelerator) == expected


@pytest.mark.parametrize("chosen", ["32-true", "bf16-mixed", 16])
def test_explicit_precision_is_kept(chosen):
    assert hardware.resolve_precision(chosen, "cpu") == chosen


def test_cpu_bf16_is_read_from_cpu_flags(monkeypatch):
    monkeypatch.setattr(hardware.Path, "read_text", lambda self: "flags\t: fpu sse2 avx512f avx512_bf16 amx_tile")
    assert hardware.cpu_has_bf16()
    monkeypatch.setattr(hardware.Path, "read_text", lambda self: "flags\t: fpu sse2 avx2")
    assert not hardware.cpu_has_bf16()


def classifier(*overrides) -> SkinClassifier:
    cfg = compose_train(["model.arch=resnet18", "model.weights=none", *overrides])
    model, loss = (OmegaConf.to_container(cfg[key]) for key in ("model", "loss"))
    return SkinClassifier(["a", "b"], [3, 4], model=model, loss=loss, optim={})


def test_channels_last_and_compile_keep_plain_checkpoint_keys():
    plain = classifier("model.channels_last=false")
    compiled = classifier("model.compile=true")
    assert compiled.net._compiled_call_impl is not None and plain.net._compiled_call_impl is None
    assert compiled.net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert compiled.state_dict().keys() == plain.state_dict().keys()
