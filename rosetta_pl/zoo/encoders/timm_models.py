"""Any timm model by name, e.g. ``timm:resnet50`` or ``timm:vit_base_patch16_224.dino``.

Convolutional networks keep the input size. Vision transformers are built with
``dynamic_img_size=True``, and their inputs are resized to the nearest multiple of the
patch size. Their token outputs become maps on the patch grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from rosetta_pl.zoo.base import (
    UnitModel,
    check_images,
    convert_channels,
    file_sha256,
    resize_images,
)
from rosetta_pl.zoo.capture import TokenLayout
from rosetta_pl.zoo.weights import local_weights_file

VIT_LAYERS = ("blocks.*.mlp.act",)


def is_vision_transformer(network: nn.Module) -> bool:
    """Return whether a timm network is a patch-token transformer with ``blocks``."""
    return hasattr(network, "patch_embed") and hasattr(network, "blocks")


def default_layers(network: nn.Module) -> list[str]:
    """Return every block's MLP activation for ViTs, else the feature stages at stride >= 4.

    For ResNets the stages are ``layer1``-``layer4`` (the stem at stride 2 is skipped).
    """
    if is_vision_transformer(network):
        return list(VIT_LAYERS)
    feature_info = getattr(network, "feature_info", None)
    if not feature_info:
        raise ValueError(
            f"{type(network).__name__} lists no feature stages; pass layers explicitly"
        )
    return [info["module"] for info in feature_info if info.get("reduction", 1) >= 4]


def round_to_multiple(size: int, multiple: int) -> int:
    """Round ``size`` to the nearest positive multiple of ``multiple``."""
    return max(multiple, multiple * round(size / multiple))


class TimmModel(UnitModel):
    """A timm network; :meth:`forward` returns its own output (logits or pooled features).

    Attributes:
        patch_size: (rows, columns) of a patch for transformers, else None.
        interpolation: Resize mode taken from the model's pretrained config.
    """

    def __init__(self, network: nn.Module, **kwargs: Any) -> None:
        super().__init__(network, **kwargs)
        config = network.pretrained_cfg
        self.native_size: tuple[int, int] = tuple(config.get("input_size", (3, 224, 224))[1:])
        self.interpolation = config.get("interpolation", "bilinear")
        if self.interpolation not in ("bilinear", "bicubic", "nearest"):
            self.interpolation = "bilinear"
        # Models with a fixed input size (other than the dynamic-size ViTs) are resized to it.
        self.fixed_size = bool(config.get("fixed_input_size", False))
        self.patch_size: tuple[int, int] | None = None
        if is_vision_transformer(network):
            self.patch_size = tuple(network.patch_embed.patch_size)
        mean = torch.tensor(config.get("mean", (0.485, 0.456, 0.406)), dtype=torch.float32)
        std = torch.tensor(config.get("std", (0.229, 0.224, 0.225)), dtype=torch.float32)
        self.register_buffer("mean", mean.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, -1, 1, 1), persistent=False)
        self.in_channels = int(mean.numel())

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Convert channels, round ViT inputs to the patch size and normalise.

        Convolutional networks keep the image size unless their pretrained config fixes it.
        """
        check_images(images)
        images = convert_channels(images, self.in_channels)
        if self.patch_size is not None:
            height, width = images.shape[-2:]
            size = (round_to_multiple(height, self.patch_size[0]),
                    round_to_multiple(width, self.patch_size[1]))
            images = resize_images(images, size, self.interpolation)
        elif self.fixed_size:
            images = resize_images(images, self.native_size, self.interpolation)
        return (images - self.mean) / self.std

    def token_layout(self, network_input: torch.Tensor) -> TokenLayout | None:
        """Return the patch grid (input size / patch size) and the class and register tokens."""
        if self.patch_size is None:
            return None
        height, width = network_input.shape[-2:]
        grid = (height // self.patch_size[0], width // self.patch_size[1])
        return TokenLayout(grid=grid, num_prefix_tokens=int(self.network.num_prefix_tokens))

    def probe_input(self) -> torch.Tensor:
        """Return one gray image at the pretrained input size."""
        return torch.full((1, self.in_channels, *self.native_size), 0.5)


def _create(model_name: str, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    import timm

    try:
        return timm.create_model(model_name, pretrained=pretrained, **kwargs)
    except TypeError:
        # Models without dynamic image size (most CNNs) reject the keyword.
        kwargs = {key: value for key, value in kwargs.items() if key != "dynamic_img_size"}
        return timm.create_model(model_name, pretrained=pretrained, **kwargs)


def build_timm(
    model_name: str,
    pretrained: bool = True,
    layers: Sequence[str] | None = None,
    weights_path: str | None = None,
) -> TimmModel:
    """Build a timm model by name with its default unit layers.

    Args:
        model_name: timm name, with an optional pretrained tag (``"resnet50.tv_in1k"``).
        pretrained: Whether to load pretrained weights (from ``weights_path`` when set,
            else timm's download, which is cached in the Hugging Face hub cache).
        layers: Module names or glob patterns replacing the default unit layers.
        weights_path: Local weight file (``.pth``, ``.bin`` or ``.safetensors``) that timm
            loads in place of a download.

    Raises:
        ValueError: If the name is unknown to timm, or ``pretrained`` is set but timm has no
            weights for it.
        RuntimeError: If the download fails; the message names the model and the cache folder.
    """
    import timm

    if not timm.is_model(model_name):
        close = timm.list_models(f"*{model_name.split('.')[0][:8]}*")[:5]
        raise ValueError(f"unknown timm model {model_name!r}; similar names: {close}")

    kwargs: dict[str, Any] = {"dynamic_img_size": True}
    source, sha256 = "random initialisation", None
    if pretrained and weights_path is not None:
        path = local_weights_file(weights_path, f"weights of timm model {model_name}")
        kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
        source, sha256 = f"{path} (timm {model_name})", file_sha256(path)
    elif pretrained:
        config = timm.models.get_pretrained_cfg(model_name)
        if config is None or not (config.hf_hub_id or config.url or config.file):
            # timm would log a warning and keep random weights; never do that silently.
            raise ValueError(
                f"timm has no pretrained weights for {model_name!r}; choose a tagged name from "
                f"timm.list_pretrained() or set weights_path"
            )
        source = f"timm {timm.__version__} pretrained {model_name}"

    try:
        network = _create(model_name, pretrained, kwargs)
    except (OSError, RuntimeError, ValueError) as error:
        if not pretrained:
            raise
        from huggingface_hub.constants import HF_HUB_CACHE

        raise RuntimeError(
            f"failed to load pretrained weights of timm model {model_name!r} ({error}); "
            f"download them into the cache folder {HF_HUB_CACHE} (or {torch.hub.get_dir()}) "
            "on a machine with internet access, or set weights_path to a local file"
        ) from error

    return TimmModel(
        network,
        zoo_name=f"timm:{model_name}",
        layers=list(layers) if layers is not None else default_layers(network),
        weights_source=source,
        weights_sha256=sha256,
    )

