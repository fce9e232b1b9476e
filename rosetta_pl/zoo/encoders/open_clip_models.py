"""The image tower of any open_clip model by name, e.g. ``open_clip:RN50`` (OpenAI CLIP ResNet-50).

CLIP's ResNets end in an attention pool with a fixed positional embedding and its ViTs
have a fixed positional embedding, so images are resized to the tower's native size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from rosetta_pl.zoo.base import UnitModel, check_images, convert_channels, resize_images
from rosetta_pl.zoo.capture import TokenLayout

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


def default_layers(visual: nn.Module) -> list[str]:
    """Return ``layer1``-``layer4`` for CLIP ResNets and every block's MLP GELU for CLIP ViTs."""
    kind = type(visual).__name__
    if kind == "ModifiedResNet":
        return ["layer1", "layer2", "layer3", "layer4"]
    if kind == "VisionTransformer":
        return ["transformer.resblocks.*.mlp.gelu"]
    raise ValueError(f"no default unit layers for an open_clip {kind} image tower; pass layers")


class OpenClipVisual(UnitModel):
    """The image tower of an open_clip model; :meth:`forward` returns the image embedding."""

    def __init__(self, network: nn.Module, **kwargs: Any) -> None:
        super().__init__(network, **kwargs)
        config = getattr(network, "preprocess_cfg", None) or {}
        self.image_size = _pair(network.image_size)
        self.interpolation = config.get("interpolation", "bicubic")
        if self.interpolation not in ("bilinear", "bicubic"):
            self.interpolation = "bicubic"
        mean = torch.tensor(config.get("mean", OPENAI_MEAN), dtype=torch.float32)
        std = torch.tensor(config.get("std", OPENAI_STD), dtype=torch.float32)
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Convert [0, 1] images to RGB, resize them to the native size and normalise."""
        check_images(images)
        images = resize_images(convert_channels(images, 3), self.image_size, self.interpolation)
        return (images - self.mean) / self.std

    def token_layout(self, network_input: torch.Tensor) -> TokenLayout | None:
        """Return the patch grid and the class token of a CLIP ViT, or None for a ResNet."""
        if type(self.network).__name__ != "VisionTransformer":
            return None
        patch = _pair(self.network.patch_size)
        grid = (network_input.shape[-2] // patch[0], network_input.shape[-1] // patch[1])
        batch_first = getattr(self.network.transformer, "batch_first", True)
        return TokenLayout(grid=grid, num_prefix_tokens=1, batch_first=batch_first)

    def probe_input(self) -> torch.Tensor:
        """Return one gray image at the native size."""
        return torch.full((1, 3, *self.image_size), 0.5)


def build_open_clip(
    model_name: str,
    pretrained: bool = True,
    layers: Sequence[str] | None = None,
    pretrained_tag: str = "openai",
    cache_dir: str | None = None,
) -> OpenClipVisual:
    """Build the image tower of an open_clip model.

    Args:
        model_name: open_clip architecture name, e.g. ``"RN50"`` or ``"ViT-B-16"``.
        pretrained: Whether to load the weights named by ``pretrained_tag``.
        layers: Module names or glob patterns replacing the default unit layers.
        pretrained_tag: open_clip pretrained tag, or a local checkpoint file.
        cache_dir: Download cache folder; None uses open_clip's default.

    Raises:
        ValueError: If the architecture or the tag is unknown to open_clip.
        RuntimeError: If the download fails; the message names the model and the cache folder.
    """
    import open_clip

    if model_name not in open_clip.list_models():
        raise ValueError(
            f"unknown open_clip model {model_name!r}; valid names include "
            f"{open_clip.list_models()[:10]}"
        )
    source = "random initialisation"
    if pretrained:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        if pretrained_tag not in tags and not os.path.isfile(pretrained_tag):
            raise ValueError(
                f"open_clip has no pretrained tag {pretrained_tag!r} for {model_name}; "
                f"valid tags: {tags}, or pass a local checkpoint path as pretrained_tag"
            )
        try:
            model = open_clip.create_model(
                model_name, pretrained=pretrained_tag, cache_dir=cache_dir
            )
        except (OSError, RuntimeError, ValueError) as error:
            from huggingface_hub.constants import HF_HUB_CACHE

            folder = cache_dir or HF_HUB_CACHE
            raise RuntimeError(
                f"failed to load open_clip {model_name} weights {pretrained_tag!r} ({error}); "
                f"download them into the cache folder {folder} on a machine with internet "
                "access, or pass a local checkpoint path as pretrained_tag"
            ) from error
        source = f"open_clip {open_clip.__version__} {model_name} {pretrained_tag}"
    else:
        model = open_clip.create_model(model_name, pretrained=None)
    visual = model.visual
    return OpenClipVisual(
        visual,
        zoo_name=f"open_clip:{model_name}",
        layers=list(layers) if layers is not None else default_layers(visual),
        weights_source=source,
    )
