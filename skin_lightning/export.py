"""Entry point: a checkpoint as one ONNX or TorchScript file that needs neither this package nor Lightning.

The file includes the normalisation and the softmax, so a server only resizes the image to the
recorded size and passes its RGB bytes; the class names and size travel inside the file.
"""

import json
import logging
from pathlib import Path

import hydra
import onnx
import torch
from omegaconf import DictConfig
from torch import nn

from skin_lightning.cli import CONFIG_DIR, reported
from skin_lightning.data.augment import to_model_input
from skin_lightning.errors import UserError
from skin_lightning.model.inference import TrainedModel, load_checkpoint

log = logging.getLogger(__name__)

FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}


class Deployable(nn.Module):
    """uint8 NHWC RGB images -> class probabilities, exactly as evaluation computes them without TTA."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(to_model_input(images)).float().softmax(dim=1)


def model_metadata(model: TrainedModel) -> dict[str, str]:
    return {
        "classes": json.dumps(model.classes),
        "image_size": str(model.image_size),
        "input": "uint8 RGB images, shape (batch, image_size, image_size, 3)",
        "output": "class probabilities, shape (batch, len(classes))",
        "arch": model.arch,
    }


def export_model(model: TrainedModel, fmt: str, output_dir: Path) -> Path:
    if fmt not in FORMATS:
        raise UserError(f"format={fmt} is invalid: expected one of {', '.join(FORMATS)}")
    path = Path(output_dir) / FORMATS[fmt]
    deployable = Deployable(model.network).eval()
    example = torch.zeros(2, model.image_size, model.image_size, 3, dtype=torch.uint8)
    if fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(deployable, example)
        extra = {"metadata.json": json.dumps(model_metadata(model))}
        torch.jit.save(traced, str(path), _extra_files=extra)
        return path
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        deployable,
        (example,),
        dynamo=True,
        external_data=False,
        input_names=["images"],
        output_names=["probabilities"],
        dynamic_shapes={"images": {0: batch}},
    )
    proto = program.model_proto
    onnx.helper.set_model_props(proto, model_metadata(model))
    onnx.save(proto, path)
    return path


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    output_dir = Path(cfg.output_dir)
    with reported(output_dir):
        output_dir.mkdir(parents=True, exist_ok=True)
        path = export_model(load_checkpoint(Path(cfg.ckpt_path), cfg.image_size), cfg.format, output_dir)
        log.info("exported %s", path)


if __name__ == "__main__":
    main()
