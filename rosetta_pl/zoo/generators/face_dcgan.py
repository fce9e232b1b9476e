"""DCGAN face generator of ``gan-face-generate`` 1.1.1, whose weights ship in the wheel."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
from collections.abc import Sequence

import torch

from rosetta_pl.zoo.base import Generator, file_sha256
from rosetta_pl.zoo.weights import load_state_dict

LATENT_SIZE = 100
# The four hidden ReLU outputs (512, 256, 128, 64 channels at 4, 8, 16, 32 px) and the
# tanh output (3 channels at 64 px): 963 units.
DEFAULT_LAYERS = ("main.2", "main.5", "main.8", "main.11", "main.13")


class FaceDCGAN(Generator):
    """DCGAN face generator: latent (100,) standard normal -> (B, 3, 64, 64) images in [0, 1]."""

    def synthesize(self, latents: torch.Tensor) -> torch.Tensor:
        """Return the raw (B, 3, 64, 64) tanh output in [-1, 1] for (B, 100) latents."""
        return self.network(latents.reshape(-1, LATENT_SIZE, 1, 1))


def build_face_dcgan(
    pretrained: bool = True, layers: Sequence[str] | None = None
) -> FaceDCGAN:
    """Build the face DCGAN, with the checkpoint ``weights.tar`` of its wheel when ``pretrained``."""
    from gan_face_generate.models import Generator as DCGANGenerator

    network = DCGANGenerator(ngpu=0, nc=3, nz=LATENT_SIZE, ngf=64)
    source, sha256 = "random initialisation", None
    if pretrained:
        resource = importlib.resources.files("gan_face_generate") / "weights.tar"
        with importlib.resources.as_file(resource) as path:
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} not found: the gan-face-generate wheel ships it; reinstall "
                    "gan-face-generate==1.1.1"
                )
            # The checkpoint stores CUDA tensors, so map them to the CPU.
            network.load_state_dict(load_state_dict(path, key="netG_state_dict"), strict=True)
            sha256 = file_sha256(path)
            version = importlib.metadata.version("gan-face-generate")
            source = f"gan-face-generate {version} ({path})"
    return FaceDCGAN(
        network,
        latent_shape=(LATENT_SIZE,),
        zoo_name="face_dcgan",
        layers=list(layers) if layers is not None else list(DEFAULT_LAYERS),
        weights_source=source,
        weights_sha256=sha256,
    )
