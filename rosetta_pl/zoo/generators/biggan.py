"""BigGAN-deep 256x256 through ``pytorch-pretrained-biggan`` 0.1.1.

The package downloads the model configuration together with the weights, so the 256x256
configuration is kept here to build the network offline. The latent of one sample is the
noise vector z (128 values) followed by a one-hot ImageNet class vector (1000 values), so
that class conditioning travels with the latent and inversion can optimise a soft class
vector.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import truncnorm

from rosetta_pl.zoo.base import Generator, file_sha256
from rosetta_pl.zoo.weights import load_state_dict, local_weights_file

MODEL_NAME = "biggan-deep-256"
Z_DIM = 128
NUM_CLASSES = 1000
CHANNEL_WIDTH = 128
# Generator blocks of BigGAN-deep-256: (upsamples, input width, output width), widths in
# multiples of CHANNEL_WIDTH; self-attention runs before block 8 at 64x64.
# NOTE: written to match the package's published biggan-deep-256 configuration, which
# is a download, so it has not been checked against that file here; strict loading of
# the released weights raises if it differs.
LAYER_TABLE: tuple[tuple[bool, int, int], ...] = (
    (False, 16, 16), (True, 16, 16),
    (False, 16, 16), (True, 16, 8),
    (False, 8, 8), (True, 8, 8),
    (False, 8, 4), (True, 4, 4),
    (False, 4, 2), (True, 2, 2),
    (False, 2, 1), (True, 1, 1),
)
ATTENTION_POSITION = 8
# Every convolution of every generator block: conv_0 to conv_2 have in/4 channels
# (the bottleneck), conv_3 has the block's output width.
DEFAULT_LAYERS = ("generator.layers.*.conv_*",)
# Truncated normal noise is cut at two standard deviations, as in BigGAN's release.
TRUNCATION_BOUND = 2.0


def biggan_deep_256_config():
    """Return the ``BigGANConfig`` of BigGAN-deep-256."""
    from pytorch_pretrained_biggan import BigGANConfig

    return BigGANConfig(
        output_dim=256,
        z_dim=Z_DIM,
        class_embed_dim=128,
        channel_width=CHANNEL_WIDTH,
        num_classes=NUM_CLASSES,
        layers=[list(entry) for entry in LAYER_TABLE],
        attention_layer_position=ATTENTION_POSITION,
        eps=1e-4,
        n_stats=51,
    )


def check_truncation(truncation: float) -> float:
    """Return ``truncation`` as a float if it lies in (0, 1], else raise ``ValueError``."""
    if not 0.0 < truncation <= 1.0:
        raise ValueError(
            f"truncation must be in (0, 1], got {truncation}; use e.g. 0.4 for typical "
            "samples or 1.0 for no truncation"
        )
    return float(truncation)


def estimate_spectral_vectors(network: torch.nn.Module, iterations: int = 20) -> None:
    """Set the singular-vector buffers of every spectral-normalised weight by power iteration.

    A freshly initialised spectral norm holds random vectors, and in eval mode it divides by
    the resulting tiny estimate of the largest singular value, so activations overflow
    within a few blocks. Trained checkpoints store converged vectors instead.
    """
    with torch.no_grad():
        for module in network.modules():
            if not (hasattr(module, "weight_orig") and hasattr(module, "weight_u")):
                continue
            matrix = module.weight_orig.flatten(start_dim=1)  # (out, in * kh * kw)
            u = module.weight_u
            for _ in range(iterations):
                v = torch.nn.functional.normalize(matrix.t() @ u, dim=0)
                u = torch.nn.functional.normalize(matrix @ v, dim=0)
            module.weight_u.copy_(u)
            module.weight_v.copy_(v)


class BigGANDeep(Generator):
    """BigGAN-deep: latent (1128,) = z (128) + class vector (1000) -> (B, 3, 256, 256) in [0, 1].

    Attributes:
        class_ids: ImageNet classes that :meth:`latents` samples from, uniformly.
    """

    has_truncation = True

    def __init__(self, network: torch.nn.Module, *, class_ids: Sequence[int], **kwargs) -> None:
        super().__init__(network, **kwargs)
        self.class_ids = list(class_ids)

    def sample_latent(self, rng: np.random.Generator) -> np.ndarray:
        """Draw z from a normal truncated to [-2, 2] times the truncation, and a one-hot class."""
        z = truncnorm.rvs(-TRUNCATION_BOUND, TRUNCATION_BOUND, size=Z_DIM, random_state=rng)
        class_vector = np.zeros(NUM_CLASSES)
        class_vector[self.class_ids[int(rng.integers(len(self.class_ids)))]] = 1.0
        return np.concatenate([z * self.truncation, class_vector])

    def prior_nll(self, latents: torch.Tensor) -> torch.Tensor:
        """Return 0.5 * ||z / truncation||^2 / 128 per latent (B,); the class part is free."""
        z = latents[:, :Z_DIM] / self.truncation
        return 0.5 * z.pow(2).mean(dim=1)

    def probe_input(self) -> torch.Tensor:
        """Return the latent of sample index 0 with seed 0 (one sample, because the network is large)."""
        return self.latents(torch.arange(1), seed=0)

    def synthesize(self, latents: torch.Tensor) -> torch.Tensor:
        """Return the raw (B, 3, 256, 256) tanh output for (B, 1128) latents."""
        z, class_vector = latents[:, :Z_DIM], latents[:, Z_DIM:]
        return self.network(z, class_vector, self.truncation)


def build_biggan_deep_256(
    pretrained: bool = True,
    layers: Sequence[str] | None = None,
    truncation: float = 1.0,
    class_ids: Sequence[int] | None = None,
    weights_path: str | None = None,
    cache_dir: str | None = None,
) -> BigGANDeep:
    """Build BigGAN-deep-256.

    Args:
        pretrained: Whether to load the weights: from ``weights_path`` when set, else the
            package's download, cached in ``cache_dir``.
        layers: Module names or glob patterns replacing every block convolution.
        truncation: Truncation in (0, 1]: it scales the truncated normal noise and selects
            the batch-norm statistics of the generator. 1.0 means no truncation.
        class_ids: ImageNet class indices that samples are drawn from; None means all 1000.
        weights_path: Local ``pytorch_model.bin`` of biggan-deep-256.
        cache_dir: Download cache folder; None uses the package's default
            (``PYTORCH_PRETRAINED_BIGGAN_CACHE``).

    Raises:
        ValueError: If ``truncation`` is outside (0, 1] or a class id is outside [0, 1000).
        RuntimeError: If the download fails; the message names the model and the cache folder.
    """
    from pytorch_pretrained_biggan import BigGAN
    from pytorch_pretrained_biggan.file_utils import PYTORCH_PRETRAINED_BIGGAN_CACHE, cached_path
    from pytorch_pretrained_biggan.model import PRETRAINED_MODEL_ARCHIVE_MAP

    truncation = check_truncation(truncation)
    classes = list(range(NUM_CLASSES)) if class_ids is None else [int(c) for c in class_ids]
    invalid = [c for c in classes if not 0 <= c < NUM_CLASSES]
    if not classes or invalid:
        raise ValueError(
            f"class_ids must be a non-empty list of ImageNet classes in [0, {NUM_CLASSES}), "
            f"got invalid ids {invalid or classes}"
        )

    network = BigGAN(biggan_deep_256_config())
    source, sha256 = "random initialisation", None
    if not pretrained:
        # The package leaves the unconditional batch norm's affine parameters uninitialised.
        torch.nn.init.ones_(network.generator.bn.weight)
        torch.nn.init.zeros_(network.generator.bn.bias)
        estimate_spectral_vectors(network)
    else:
        if weights_path is not None:
            path = local_weights_file(weights_path, f"{MODEL_NAME} pytorch_model.bin")
        else:
            folder = cache_dir or os.fspath(PYTORCH_PRETRAINED_BIGGAN_CACHE)
            try:
                path = cached_path(PRETRAINED_MODEL_ARCHIVE_MAP[MODEL_NAME], cache_dir=folder)
            except (OSError, RuntimeError, ValueError) as error:
                raise RuntimeError(
                    f"failed to download the weights of {MODEL_NAME} into the cache folder "
                    f"{folder} ({error}); download them on a machine with internet access "
                    "or set weights_path to a local pytorch_model.bin"
                ) from error
        # NOTE: strict loading assumes the released file holds exactly the keys of the
        # in-code configuration; it was not checked against the release here (no internet).
        network.load_state_dict(load_state_dict(path), strict=True)
        source, sha256 = str(path), file_sha256(path)
    return BigGANDeep(
        network,
        class_ids=classes,
        latent_shape=(Z_DIM + NUM_CLASSES,),
        zoo_name="biggan_deep_256",
        layers=list(layers) if layers is not None else list(DEFAULT_LAYERS),
        weights_source=source,
        weights_sha256=sha256,
        truncation=truncation,
    )
