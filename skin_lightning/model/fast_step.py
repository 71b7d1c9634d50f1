"""The whole training step replayed as one CUDA graph, so a small model trains at the GPU's pace.

At the recipe's size (ResNet-50, 84 px, batch 32) a step is several hundred short kernels, and
launching them one by one from Python takes longer than running them: the GPU waits for the CPU.
Captured once into a CUDA graph, the same kernels (zero_grad, forward, loss, backward, optimiser
step) are replayed with one launch. The numbers are those of the eager step; only the launching
changes. A graph reads and writes fixed memory, so inputs are copied into static buffers, the
learning rate lives in a device tensor that schedulers fill in place, and the optimiser must keep
its state on the device (fused SGD, fused and capturable AdamW).
"""

import contextlib
import logging
from collections.abc import Callable, Mapping

import lightning as L
import torch
from torch import nn

from skin_lightning.errors import UserError

log = logging.getLogger(__name__)

AUTOCAST = {"bf16-mixed": torch.bfloat16, "32-true": None, "32": None}


class WholeStep:
    """zero_grad, forward, loss, backward and optimiser step on static input buffers.

    On a CUDA device the first `warmup` calls run eagerly on a side stream (so that lazily made
    state, such as momentum buffers and library workspaces, exists before capture), the next one
    captures the step and every call replays it. Elsewhere the same step runs eagerly on the same
    buffers, which lets a CPU test check this path against Lightning's own loop. Every call is a
    real training step on the batch it is given.
    """

    def __init__(
        self,
        network: nn.Module,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        optimizer: torch.optim.Optimizer,
        precision: str,
        warmup: int = 3,
    ):
        self.network, self.loss, self.optimizer = network, loss, optimizer
        self.dtype = AUTOCAST[precision]
        self.warmup = warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self.outputs: tuple[torch.Tensor, torch.Tensor] | None = None

    def _step(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.inputs
        self.optimizer.zero_grad(set_to_none=False)
        # the autocast cache would hand the capture weights cast before it: a replay would then use stale copies
        autocast = (
            torch.autocast(images.device.type, dtype=self.dtype, cache_enabled=False)
            if self.dtype
            else contextlib.nullcontext()
        )
        with autocast:
            logits = self.network(images).float()
            loss = self.loss(logits, labels)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), logits.detach().softmax(dim=1)

    def _prepare_cuda(self, device: torch.device) -> None:
        """Learning rates become device tensors: a float would be baked into the graph at capture."""
        for group in self.optimizer.param_groups:
            group["lr"] = torch.tensor(float(group["lr"]), device=device)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Trains on one batch; returns its loss and softmax probabilities (copies, safe to keep)."""
        if self.inputs is None:
            self.inputs = (images.clone(), labels.clone())
            if images.device.type == "cuda":
                self._prepare_cuda(images.device)
        else:
            self.inputs[0].copy_(images)
            self.inputs[1].copy_(labels)
        self.calls += 1
        if images.device.type != "cuda":
            self.outputs = self._step()
        elif self.graph is not None:
            self.graph.replay()
        elif self.calls <= self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.outputs = self._step()
            torch.cuda.current_stream().wait_stream(side)
        else:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.outputs = self._step()
            self.graph.replay()
        loss, probs = self.outputs
        return loss.clone(), probs.clone()


def _blockers(trainer: L.Trainer) -> list[str]:
    """What keeps a run on Lightning's own loop: settings the static step does not implement."""
    blocked = [
        (
            f"trainer.precision={trainer.precision} (it supports {', '.join(AUTOCAST)})",
            str(trainer.precision) not in AUTOCAST,
        ),
        ("several processes (DDP)", trainer.world_size > 1),
        ("trainer.gradient_clip_val is set", trainer.gradient_clip_val is not None),
        ("trainer.accumulate_grad_batches > 1", trainer.accumulate_grad_batches != 1),
    ]
    return [reason for reason, applies in blocked if applies]


def use_fast_step(model: Mapping, trainer: L.Trainer) -> bool:
    """model.fast_step: auto uses it on one CUDA device; true anywhere; false never. Says why not."""
    setting = model["fast_step"]
    device = trainer.strategy.root_device
    chosen = setting is True or (setting == "auto" and device.type == "cuda")
    reasons = _blockers(trainer) if chosen else []
    if reasons and setting is True:
        raise UserError(
            f"model.fast_step=true cannot be used with {'; '.join(reasons)}: use model.fast_step=auto or false"
        )
    if reasons:
        log.info("model.fast_step=auto: Lightning's own training loop, because of %s", "; ".join(reasons))
    chosen = chosen and not reasons
    if chosen:
        log.info(
            "model.fast_step: the whole training step %s",
            "as one CUDA graph" if device.type == "cuda" else "on static buffers",
        )
    elif model["compile"] and device.type == "cuda":
        log.warning(
            "model.compile=true on Lightning's own loop: at small steps it can run slower than eager, its kernels "
            "still launched one by one; it pays inside the fast step (model.fast_step)"
        )
    return chosen


def optimizer_settings(fast: bool, device: torch.device) -> dict[str, bool]:
    """What a captured step needs of the optimiser, where its class takes it: state on the device, updated by
    single kernels (fused, capturable), which is also the fastest anyway."""
    return {"fused": True, "capturable": True} if fast and device.type == "cuda" else {}
