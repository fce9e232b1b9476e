"""DINO ResNet-50: torchvision's ResNet-50 without its classifier, with the official DINO backbone weights.

The weights are read from a local file with ``torch.load(weights_only=True)``; no code is
downloaded or run.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rosetta_pl.zoo.base import UnitModel, check_images, convert_channels, file_sha256
from rosetta_pl.zoo.weights import load_state_dict, local_weights_file

DINO_RESNET50_URL = (
    "https://dl.fbaipublicfiles.com/dino/dino_resnet50_pretrain/dino_resnet50_pretrain.pth"
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_LAYERS = ("layer1", "layer2", "layer3", "layer4")


class TorchvisionResNet(UnitModel):
    """A torchvision ResNet on ImageNet-normalised RGB images of any size.

    :meth:`forward` returns the pooled (B, 2048) features, since the classifier is removed.
    """

    def __init__(self, network: nn.Module, **kwargs) -> None:
        super().__init__(network, **kwargs)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Convert [0, 1] images to RGB and normalise them; the size is kept."""
        check_images(images)
        return (convert_channels(images, 3) - self.mean) / self.std

    def probe_input(self) -> torch.Tensor:
        """Return one gray 64x64 image."""
        return torch.full((1, 3, 64, 64), 0.5)


def build_dino_resnet50(
    pretrained: bool = True, layers: Sequence[str] | None = None, weights_path: str | None = None
) -> TorchvisionResNet:
    """Build DINO ResNet-50 from a local copy of the official backbone state dict.

    Args:
        pretrained: Whether to load the state dict from ``weights_path``.
        layers: Module names or glob patterns replacing ``layer1``-``layer4`` (3840 units).
        weights_path: Local copy of ``dino_resnet50_pretrain.pth``.

    Raises:
        FileNotFoundError: If ``pretrained`` and ``weights_path`` is unset or missing; the
            message names the download URL.
    """
    from torchvision.models import resnet50

    network = resnet50(weights=None)
    network.fc = nn.Identity()
    source, sha256 = "random initialisation", None
    if pretrained:
        if weights_path is None:
            raise FileNotFoundError(
                f"dino_resnet50 needs the official DINO ResNet-50 backbone weights: download "
                f"{DINO_RESNET50_URL} and set the weights_path option to the file"
            )
        path = local_weights_file(
            weights_path, f"DINO ResNet-50 backbone state dict from {DINO_RESNET50_URL}"
        )
        network.load_state_dict(load_state_dict(path), strict=True)
        source, sha256 = str(path), file_sha256(path)
    return TorchvisionResNet(
        network,
        zoo_name="dino_resnet50",
        layers=list(layers) if layers is not None else list(DEFAULT_LAYERS),
        weights_source=source,
        weights_sha256=sha256,
    )
