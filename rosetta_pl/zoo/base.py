"""Base classes of the zoo: discriminative models and generators whose units are layer channels.

Every model wraps a network (``self.network``) and names its unit layers by module names
relative to that network. Units are numbered flat: the layers in order, then the channels
of each layer in order.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rosetta_pl.maps import ResizeMode, resize_maps
from rosetta_pl.zoo.capture import TokenLayout, capture_maps, resolve_layers

log = logging.getLogger(__name__)

# ITU-R BT.601 luma weights, used to turn RGB images into gray ones.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def file_sha256(path: str | Path) -> str:
    """Return the hex SHA-256 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_images(images: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``images`` is a float (B, C, H, W) batch with C in {1, 3}."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"expected images of shape (B, C, H, W) with C = 1 or 3, got {tuple(images.shape)}"
        )
    if not images.is_floating_point():
        raise ValueError(f"expected float images in [0, 1], got dtype {images.dtype}; divide by 255")


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert (B, 1 or 3, H, W) images to ``channels`` channels.

    Gray images are replicated to RGB and RGB images become BT.601 luminance.
    """
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1)
    weights = torch.tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device)
    return (images * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def resize_images(
    images: torch.Tensor, size: tuple[int, int], mode: ResizeMode = "area"
) -> torch.Tensor:
    """Resize (B, C, H, W) images to ``size``: area averaging when shrinking, else ``mode``."""
    return resize_maps(images, size, mode)


def freeze(module: nn.Module) -> None:
    """Put ``module`` in eval mode and stop gradients to its parameters."""
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)


class UnitModel(nn.Module):
    """A pretrained network whose units are the channels of some of its layers.

    Subclasses implement :meth:`preprocess` and :meth:`probe_input`, and override
    :meth:`token_layout` for transformers and :meth:`postprocess` to change what
    :meth:`forward` returns.

    Attributes:
        zoo_name: Name of the model in the zoo, e.g. ``"mtcnn_onet"``.
        network: The wrapped network.
        layers: Resolved module names of the unit layers, in unit order.
        weights_source: Where the weights came from (file path, package and version, or
            ``"random initialisation"``).
        weights_sha256: SHA-256 of the weight file, or None without a file.
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        zoo_name: str,
        layers: Sequence[str],
        weights_source: str,
        weights_sha256: str | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.zoo_name = zoo_name
        self.layers: list[str] = resolve_layers(network, layers)
        self.weights_source = weights_source
        self.weights_sha256 = weights_sha256
        self._unit_counts: dict[str, int] | None = None
        freeze(self)
        log.info("zoo model %s: weights from %s", zoo_name, weights_source)

    def train(self, mode: bool = True) -> UnitModel:
        """Keep the network in eval mode: zoo models are frozen feature extractors."""
        return super().train(False)

    # --- input and output ---------------------------------------------------------------

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Turn [0, 1] images (B, C, H, W), C in {1, 3}, into the network's input."""
        raise NotImplementedError(f"{type(self).__name__} must implement preprocess")

    def probe_input(self) -> torch.Tensor:
        """Return a small valid input for :meth:`forward`, used to count units."""
        raise NotImplementedError(f"{type(self).__name__} must implement probe_input")

    def token_layout(self, network_input: torch.Tensor) -> TokenLayout | None:
        """Return the token layout for a network input, or None for convolutional networks."""
        return None

    def postprocess(self, output: object) -> torch.Tensor:
        """Turn the network's raw output into what :meth:`forward` returns."""
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"{type(self).__name__} must override postprocess for {type(output)}")
        return output

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Run the network on [0, 1] images (B, C, H, W) and return its own output."""
        return self.postprocess(self.network(self.preprocess(images)))

    def forward_with_maps(
        self, images: torch.Tensor, detach: bool = True
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Run :meth:`forward` once and also return the unit maps of the same pass.

        Returns:
            The output of :meth:`forward` and a dict from layer name to (B, units, h, w)
            maps (float32 and detached when ``detach`` is True).
        """
        network_input = self.preprocess(images)
        layout = self.token_layout(network_input)
        with capture_maps(self.network, self.layers, layout, detach=detach) as maps:
            output = self.postprocess(self.network(network_input))
        return output, maps

    def unit_maps(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return the detached float32 unit maps, layer name -> (B, units, h, w)."""
        with torch.no_grad():
            _, maps = self.forward_with_maps(images, detach=True)
        return maps

    # --- unit bookkeeping ---------------------------------------------------------------

    @property
    def unit_counts(self) -> dict[str, int]:
        """Units (channels) per layer, measured once with a forward pass on :meth:`probe_input`."""
        if self._unit_counts is None:
            probe = self.probe_input()
            maps = self.unit_maps(probe)
            self._unit_counts = {name: int(maps[name].shape[1]) for name in self.layers}
        return dict(self._unit_counts)

    @property
    def num_units(self) -> int:
        """Total number of units over all layers."""
        return sum(self.unit_counts.values())


class Generator(UnitModel):
    """A generator mapping latents to [0, 1] images, whose units are its layers' channels.

    Subclasses implement :meth:`synthesize` (latents -> raw network output) and may
    override :meth:`sample_latent` (one latent from a NumPy generator) and
    :meth:`to_images` (raw output -> [0, 1] images).

    Attributes:
        latent_shape: Shape of one latent, without the batch dimension.
        has_truncation: Whether the generator supports the truncation trick.
        truncation: Truncation value in (0, 1], or None without truncation.
    """

    has_truncation: bool = False

    def __init__(
        self,
        network: nn.Module,
        *,
        latent_shape: tuple[int, ...],
        zoo_name: str,
        layers: Sequence[str],
        weights_source: str,
        weights_sha256: str | None = None,
        truncation: float | None = None,
    ) -> None:
        if truncation is not None and not self.has_truncation:
            raise ValueError(
                f"{zoo_name} has no truncation, got truncation={truncation}; "
                "remove the truncation option for this model"
            )
        super().__init__(
            network,
            zoo_name=zoo_name,
            layers=layers,
            weights_source=weights_source,
            weights_sha256=weights_sha256,
        )
        self.latent_shape = tuple(latent_shape)
        self.truncation = truncation

    def sample_latent(self, rng: np.random.Generator) -> np.ndarray:
        """Draw one latent of ``latent_shape`` from ``rng`` (standard normal by default)."""
        return rng.standard_normal(self.latent_shape)

    def latents(self, indices: torch.Tensor, seed: int) -> torch.Tensor:
        """Return the latents of global sample indices, each set by (seed, index) alone.

        Each row comes from its own NumPy PCG64 stream seeded with
        ``SeedSequence([seed, index])``, so any split of the indices over batches or
        processes yields the same latents on any machine.

        Args:
            indices: (B,) integer tensor of non-negative sample indices.
            seed: Non-negative base seed.

        Returns:
            (B, *latent_shape) float32 tensor on the CPU.
        """
        if indices.ndim != 1 or indices.is_floating_point():
            raise ValueError(f"expected a 1-D integer tensor of indices, got {indices.dtype} "
                             f"of shape {tuple(indices.shape)}")
        if seed < 0 or (indices.numel() > 0 and int(indices.min()) < 0):
            raise ValueError(f"seed and indices must be non-negative, got seed={seed}")
        rows = [
            self.sample_latent(np.random.default_rng(np.random.SeedSequence([seed, int(index)])))
            for index in indices.tolist()
        ]
        if not rows:
            return torch.empty((0, *self.latent_shape), dtype=torch.float32)
        return torch.from_numpy(np.stack(rows)).float()

    def prior_nll(self, latents: torch.Tensor) -> torch.Tensor:
        """Return 0.5 * ||z||^2 / dim per latent (B,), the normal prior's scaled negative log-likelihood."""
        flat = latents.flatten(start_dim=1)
        return 0.5 * flat.pow(2).mean(dim=1)

    def preprocess(self, latents: torch.Tensor) -> torch.Tensor:
        """Check that latents have shape (B, *latent_shape) and return them unchanged."""
        if tuple(latents.shape[1:]) != self.latent_shape:
            raise ValueError(
                f"expected latents of shape (B, {', '.join(map(str, self.latent_shape))}), "
                f"got {tuple(latents.shape)}"
            )
        return latents

    def probe_input(self) -> torch.Tensor:
        """Return the latents of sample indices 0 and 1 with seed 0."""
        return self.latents(torch.arange(2), seed=0)

    def synthesize(self, latents: torch.Tensor) -> torch.Tensor:
        """Run the network on checked latents and return its raw output."""
        raise NotImplementedError(f"{type(self).__name__} must implement synthesize")

    def to_images(self, output: torch.Tensor) -> torch.Tensor:
        """Map raw output in [-1, 1] to float32 images in [0, 1]."""
        return ((output.float() + 1.0) / 2.0).clamp(0.0, 1.0)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Generate (B, C, H, W) float32 images in [0, 1] from (B, *latent_shape) latents."""
        return self.to_images(self.synthesize(self.preprocess(latents)))

    def forward_with_maps(
        self, latents: torch.Tensor, detach: bool = True
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Generate images and capture the generator's unit maps in the same pass."""
        checked = self.preprocess(latents)
        with capture_maps(self.network, self.layers, None, detach=detach) as maps:
            images = self.to_images(self.synthesize(checked))
        return images, maps

    def generate(
        self, latents: torch.Tensor, return_maps: bool = False, detach: bool = True
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Generate images, optionally with the unit maps of the same forward pass.

        Args:
            latents: (B, *latent_shape) float latents.
            return_maps: Whether to also return the unit maps.
            detach: Whether to detach the maps; False keeps their graph for inversion.

        Returns:
            (B, C, H, W) float32 images in [0, 1], and with ``return_maps`` also a dict
            from layer name to (B, units, h, w) maps.
        """
        if not return_maps:
            return self(latents)
        return self.forward_with_maps(latents, detach=detach)
