"""MNIST DCGAN generator loaded from the offline weights folder: latent (64,) -> 1x28x28 digits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rosetta_pl.zoo.base import Generator
from rosetta_pl.zoo.weights import load_zoo_weights

LATENT_SIZE = 64
# Block outputs: three ReLU blocks (256, 128, 64 channels at 3, 6, 13 px) and the tanh
# output (1 channel at 28 px): 449 units.
DEFAULT_LAYERS = ("gen.0", "gen.1", "gen.2", "gen.3")


def _block(in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, kernel, stride),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class MnistDCGANNetwork(nn.Module):
    """Four transposed-convolution blocks from (B, 64, 1, 1) noise to (B, 1, 28, 28) in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.gen = nn.Sequential(
            _block(LATENT_SIZE, 256, 3, 2),
            _block(256, 128, 4, 1),
            _block(128, 64, 3, 2),
            nn.Sequential(nn.ConvTranspose2d(64, 1, 4, 2), nn.Tanh()),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.gen(z)


class MnistDCGAN(Generator):
    """MNIST DCGAN: latent (64,) standard normal -> (B, 1, 28, 28) images in [0, 1]."""

    def synthesize(self, latents: torch.Tensor) -> torch.Tensor:
        """Return the raw (B, 1, 28, 28) tanh output for (B, 64) latents."""
        return self.network(latents.reshape(-1, LATENT_SIZE, 1, 1))


def build_mnist_dcgan(
    pretrained: bool = True, layers: Sequence[str] | None = None, weights_dir: str | None = None
) -> MnistDCGAN:
    """Build the MNIST DCGAN generator, with ``mnist_dcgan_generator.pth`` when ``pretrained``."""
    network = MnistDCGANNetwork()
    source, sha256 = "random initialisation", None
    if pretrained:
        source, sha256 = load_zoo_weights(
            network, "mnist_dcgan_generator.pth", "MNIST DCGAN generator", weights_dir
        )
    return MnistDCGAN(
        network,
        latent_shape=(LATENT_SIZE,),
        zoo_name="mnist_dcgan",
        layers=list(layers) if layers is not None else list(DEFAULT_LAYERS),
        weights_source=source,
        weights_sha256=sha256,
    )
