"""timm backbones (`model=timm model.name=...`): over a thousand architectures through timm's model factory.

timm builds the network with the requested number of classes, so its head needs no swapping; weights are
none, timm's default ImageNet weights (downloaded by timm, from the Hugging Face Hub), or a local file.
"""

from pathlib import Path

import timm
from torch import nn

from skin_lightning.errors import UserError
from skin_lightning.model.networks import freeze_all_but, load_weights_file


def timm_network(name: str, num_classes: int, weights: str, freeze_backbone: bool) -> nn.Module:
    """`weights` is "imagenet" (timm's default pretrained weights of `name`), "none", or a local state dict."""
    if not timm.is_model(name):
        raise UserError(
            f"model.name={name} is not a timm model; e.g. resnet18, efficientnet_b0, convnext_atto "
            f"(python -c \"import timm; print(timm.list_models('*{name[:6]}*'))\" lists similar names)"
        )
    if weights == "imagenet":
        try:
            network = timm.create_model(name, pretrained=True, num_classes=num_classes)
        except Exception as error:
            raise UserError(
                f"could not fetch timm's pretrained weights of {name} ({type(error).__name__}: {error}).\n"
                f"On a machine without internet, download them elsewhere (the Hugging Face Hub page of timm/{name}) "
                "and pass model.weights=/path/to/model.safetensors, or train from scratch with model.weights=none."
            ) from error
    elif weights in ("none", None):
        network = timm.create_model(name, num_classes=num_classes)
    else:
        # the file holds the pretrained head; it is loaded whole, then replaced by one sized to our classes
        network = timm.create_model(name)
        load_weights_file(network, Path(weights), f"timm's {name}")
        network.reset_classifier(num_classes)
    if freeze_backbone:
        freeze_all_but(network, network.get_classifier())
    return network
