"""CIFAR-10 ResNet-20/32/44/56 classifiers, loaded from the offline weights folder.

The architecture is the CIFAR variant of He et al. (2016): a 3x3 stem with 16 channels
and three stages of basic blocks with 16, 32 and 64 channels, whose shortcut subsamples
and zero-pads channels where the shape changes (option A, no parameters).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from rosetta_pl.zoo.base import UnitModel, check_images, convert_channels, resize_images
from rosetta_pl.zoo.weights import load_zoo_weights

CifarDepth = Literal[20, 32, 44, 56]
CIFAR_MEAN = (0.485, 0.456, 0.406)
CIFAR_STD = (0.229, 0.224, 0.225)
DEFAULT_LAYERS = ("layer1", "layer2", "layer3")


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a parameter-free shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.reshapes = stride != 1 or in_channels != out_channels
        self.pad = (out_channels - in_channels) // 2

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """Return x, or every second pixel of x with a quarter of the new width padded on each side."""
        if not self.reshapes:
            return x
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32x32 CIFAR-10 images with ``blocks_per_stage`` blocks in each of three stages."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, blocks_per_stage, stride=1)
        self.layer2 = self._stage(16, 32, blocks_per_stage, stride=2)
        self.layer3 = self._stage(32, 64, blocks_per_stage, stride=2)
        self.linear = nn.Linear(64, num_classes)

    @staticmethod
    def _stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        first = BasicBlock(in_channels, out_channels, stride)
        rest = [BasicBlock(out_channels, out_channels, 1) for _ in range(blocks - 1)]
        return nn.Sequential(first, *rest)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


class CifarClassifier(UnitModel):
    """CIFAR-10 ResNet; :meth:`forward` returns (B, 10) logits.

    The network is fully convolutional up to its global average pool, so images keep
    their size unless ``input_size`` is set.
    """

    def __init__(self, network: nn.Module, *, input_size: int | None, **kwargs) -> None:
        super().__init__(network, **kwargs)
        self.input_size = input_size
        self.register_buffer("mean", torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CIFAR_STD).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Convert [0, 1] images to RGB, resize to ``input_size`` if set, and normalise."""
        check_images(images)
        images = convert_channels(images, 3)
        if self.input_size is not None:
            images = resize_images(images, (self.input_size, self.input_size), "bilinear")
        return (images - self.mean) / self.std

    def probe_input(self) -> torch.Tensor:
        """Return two gray 32x32 images."""
        return torch.full((2, 3, 32, 32), 0.5)


def build_cifar_resnet(
    depth: CifarDepth,
    pretrained: bool = True,
    layers: Sequence[str] | None = None,
    weights_dir: str | None = None,
    input_size: int | None = None,
) -> CifarClassifier:
    """Build a CIFAR-10 ResNet of the given depth, with ``cifar10_resnet{depth}.th`` when ``pretrained``.

    Args:
        depth: 20, 32, 44 or 56 layers (3, 5, 7 or 9 blocks per stage).
        pretrained: Whether to load the weights from the offline weights folder.
        layers: Module names or glob patterns replacing ``layer1``-``layer3``.
        weights_dir: Offline weights folder; defaults to ``ROSETTA_ZOO_DIR`` or ``../shared/zoo``.
        input_size: Square size to resize images to; None keeps their size.
    """
    if depth not in (20, 32, 44, 56):
        raise ValueError(f"CIFAR-10 ResNet depth must be 20, 32, 44 or 56, got {depth}")
    network = CifarResNet(blocks_per_stage=(depth - 2) // 6)
    source, sha256 = "random initialisation", None
    if pretrained:
        source, sha256 = load_zoo_weights(
            network,
            f"cifar10_resnet{depth}.th",
            f"CIFAR-10 ResNet-{depth} checkpoint",
            weights_dir,
            key="state_dict",
            prefix="module.",
        )
    return CifarClassifier(
        network,
        input_size=input_size,
        zoo_name=f"cifar10_resnet{depth}",
        layers=list(layers) if layers is not None else list(DEFAULT_LAYERS),
        weights_source=source,
        weights_sha256=sha256,
    )
