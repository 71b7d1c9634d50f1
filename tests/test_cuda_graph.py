"""The fast step captured as one CUDA graph trains exactly as the eager step does: same losses, same weights."""

import copy

import pytest
import torch

from skin_lightning.model.fast_step import WholeStep
from skin_lightning.model.losses import cross_entropy
from skin_lightning.model.networks import torchvision_network

from conftest import FROM_SCRATCH

STEPS = 6  # two warm-up steps on a side stream, the capture, then three replays


def optimizer_of(name: str, network: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimisers a captured step runs with (fast_step.optimizer_settings): state on the device."""
    if name == "sgd":
        return torch.optim.SGD(network.parameters(), lr=0.05, momentum=0.9, fused=True)
    return torch.optim.AdamW(network.parameters(), lr=1e-3, weight_decay=0.05, fused=True, capturable=True)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_captured_step_gives_the_eager_steps_losses_and_weights(name, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    device = torch.device("cuda")
    torch.manual_seed(0)
    eager = torchvision_network("resnet18", 4, **FROM_SCRATCH).to(device, memory_format=torch.channels_last)
    captured = copy.deepcopy(eager)
    eager_loss, captured_loss = cross_entropy([5, 3, 2, 1]).to(device), cross_entropy([5, 3, 2, 1]).to(device)
    step = WholeStep(captured, captured_loss, optimizer_of(name, captured), "32-true", warmup=2)
    eager_optimizer = optimizer_of(name, eager)
    generator = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        images = torch.randn(8, 3, 32, 32, generator=generator).to(device, memory_format=torch.channels_last)
        labels = torch.randint(0, 4, (8,), generator=generator).to(device)
        loss, probs = step(images, labels)
        eager_optimizer.zero_grad(set_to_none=False)
        logits = eager(images).float()
        expected = eager_loss(logits, labels)
        expected.backward()
        eager_optimizer.step()
        torch.testing.assert_close(loss, expected.detach(), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(probs, logits.detach().softmax(dim=1), rtol=1e-4, atol=1e-5)
    assert step.graph is not None, "the step was never captured"
    for (key, weight), expected in zip(captured.state_dict().items(), eager.state_dict().values()):
        torch.testing.assert_close(weight, expected, rtol=1e-4, atol=1e-5, msg=key)
