"""MNIST discriminative models loaded from the offline weights folder: LeNet-5 and a DCGAN discriminator."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from rosetta_pl.maps import ResizeMode
from rosetta_pl.zoo.base import UnitModel, check_images, convert_channels, resize_images
from rosetta_pl.zoo.weights import load_zoo_weights

# ReLU outputs after the convolutions c1, c3 and c5: 6 + 16 + 120 = 142 units.
LENET_LAYERS = ("convnet.relu1", "convnet.relu3", "convnet.relu5")
# LeakyReLU outputs of the three hidden convolutions: 64 + 128 + 256 = 448 units.
DISCRIMINATOR_LAYERS = ("main.1", "main.4", "main.7")


class LeNet5(nn.Module):
    """LeNet-5 for 1x32x32 digits; returns (B, 10) log-probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.convnet = nn.Sequential(OrderedDict([
            ("c1", nn.Conv2d(1, 6, 5)),
            ("relu1", nn.ReLU()),
            ("s2", nn.MaxPool2d(2, 2)),
            ("c3", nn.Conv2d(6, 16, 5)),
            ("relu3", nn.ReLU()),
            ("s4", nn.MaxPool2d(2, 2)),
            ("c5", nn.Conv2d(16, 120, 5)),
            ("relu5", nn.ReLU()),
        ]))
        self.fc = nn.Sequential(OrderedDict([
            ("f6", nn.Linear(120, 84)),
            ("relu6", nn.ReLU()),
            ("f7", nn.Linear(84, 10)),
            ("sig7", nn.LogSoftmax(dim=-1)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convnet(x).flatten(1))


class DCGANDiscriminator(nn.Module):
    """64x64 MNIST DCGAN discriminator; its output is a (B, 1, 4, 4) sigmoid map."""

    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(1, 64, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 4, 2, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.LeakyReLU(0.2),
            nn.Conv2d(128, 256, 4, 2, 1, bias=False),
            nn.BatchNorm2d(256),
            nn.LeakyReLU(0.2),
            nn.Conv2d(256, 1, 4, 2, 1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class GrayClassifier(UnitModel):
    """A gray-image network with a fixed square input; RGB images become luminance.

    Attributes:
        input_size: Side of the square network input.
        interpolation: Resize mode (shrinking is antialiased).
        symmetric: Whether the network takes [-1, 1] inputs instead of [0, 1].
    """

    def __init__(
        self, network: nn.Module, *, input_size: int, interpolation: ResizeMode,
        symmetric: bool, **kwargs
    ) -> None:
        super().__init__(network, **kwargs)
        self.input_size = input_size
        self.interpolation = interpolation
        self.symmetric = symmetric

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Convert [0, 1] images to gray, resize them to the input size and scale them."""
        check_images(images)
        images = convert_channels(images, 1)
        images = resize_images(images, (self.input_size, self.input_size), self.interpolation)
        return images * 2.0 - 1.0 if self.symmetric else images

    def probe_input(self) -> torch.Tensor:
        """Return two gray images at the input size."""
        return torch.full((2, 1, self.input_size, self.input_size), 0.5)


def build_lenet_mnist(
    pretrained: bool = True, layers: Sequence[str] | None = None, weights_dir: str | None = None
) -> GrayClassifier:
    """Build LeNet-5, which takes 1x32x32 images in [0, 1] and returns (B, 10) log-probabilities."""
    network = LeNet5()
    source, sha256 = "random initialisation", None
    if pretrained:
        source, sha256 = load_zoo_weights(network, "mnist_lenet.pth", "MNIST LeNet-5 classifier", weights_dir)
    return GrayClassifier(
        network,
        input_size=32,
        interpolation="bilinear",
        symmetric=False,
        zoo_name="lenet_mnist",
        layers=list(layers) if layers is not None else list(LENET_LAYERS),
        weights_source=source,
        weights_sha256=sha256,
    )


def build_mnist_dcgan_disc(
    pretrained: bool = True, layers: Sequence[str] | None = None, weights_dir: str | None = None
) -> GrayClassifier:
    """Build the MNIST DCGAN discriminator, which takes 1x64x64 images in [-1, 1].

    It was trained on 64x64 digits, so images are resized to 64x64. Its output is a
    (B, 1, 4, 4) map of real-image probabilities.
    """
    network = DCGANDiscriminator()
    source, sha256 = "random initialisation", None
    if pretrained:
        source, sha256 = load_zoo_weights(
            network, "mnist_dcgan_discriminator.pth", "MNIST DCGAN discriminator", weights_dir
        )
    return GrayClassifier(
        network,
        input_size=64,
        interpolation="bilinear",
        symmetric=True,
        zoo_name="mnist_dcgan_disc",
        layers=list(layers) if layers is not None else list(DISCRIMINATOR_LAYERS),
        weights_source=source,
        weights_sha256=sha256,
    )
