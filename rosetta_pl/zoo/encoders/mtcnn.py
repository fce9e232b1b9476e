"""The MTCNN face networks PNet, RNet and ONet of ``facenet-pytorch`` 2.5.3.

Their weights ship in the wheel as ``data/pnet.pt``, ``rnet.pt`` and ``onet.pt``. Inputs
are RGB scaled as (255 x - 127.5) / 128. RNet and ONet end in dense layers, so images are
resized to 24x24 and 48x48 with area interpolation; PNet is fully convolutional and keeps
the input size unless ``input_size`` is set.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from rosetta_pl.zoo.base import UnitModel, check_images, convert_channels, file_sha256, resize_images
from rosetta_pl.zoo.weights import load_state_dict

MtcnnKind = Literal["pnet", "rnet", "onet"]

# Convolution and PReLU outputs of the convolutional trunk of each network.
DEFAULT_LAYERS: dict[str, tuple[str, ...]] = {
    "pnet": ("conv1", "prelu1", "conv2", "prelu2", "conv3", "prelu3"),
    "rnet": ("conv1", "prelu1", "conv2", "prelu2", "conv3", "prelu3"),
    "onet": ("conv1", "prelu1", "conv2", "prelu2", "conv3", "prelu3", "conv4", "prelu4"),
}
NATIVE_SIZE = {"pnet": 12, "rnet": 24, "onet": 48}


class MtcnnNetwork(UnitModel):
    """One MTCNN network; :meth:`forward` returns face probabilities.

    Attributes:
        kind: ``"pnet"``, ``"rnet"`` or ``"onet"``.
        input_size: Side of the square network input, or None to keep the image size (PNet).
    """

    def __init__(self, network: nn.Module, *, kind: MtcnnKind, input_size: int | None, **kwargs) -> None:
        super().__init__(network, **kwargs)
        self.kind = kind
        self.input_size = input_size

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Turn [0, 1] images into RGB scaled to about [-1, 1], resized as the network needs."""
        check_images(images)
        images = convert_channels(images, 3)
        if self.input_size is not None:
            images = resize_images(images, (self.input_size, self.input_size), "area")
        minimum = NATIVE_SIZE[self.kind]
        if min(images.shape[-2:]) < minimum:
            raise ValueError(
                f"{self.zoo_name} needs images of at least {minimum}x{minimum}, got "
                f"{tuple(images.shape[-2:])}; set input_size or pass larger images"
            )
        return (images * 255.0 - 127.5) / 128.0

    def postprocess(self, output: object) -> torch.Tensor:
        """Return the face-classifier softmax: (B, 2) for RNet/ONet, (B, 2, h, w) for PNet."""
        if not isinstance(output, tuple):
            raise TypeError(f"expected the MTCNN network to return a tuple, got {type(output)}")
        return output[-1]

    def face_probability(self, images: torch.Tensor) -> torch.Tensor:
        """Return the probability that each image is a face: (B,) for RNet/ONet, (B, h, w) for PNet."""
        return self(images)[:, 1]

    def probe_input(self) -> torch.Tensor:
        """Return two gray images at the native input size."""
        side = NATIVE_SIZE[self.kind]
        return torch.full((2, 3, side, side), 0.5)


def build_mtcnn(
    kind: MtcnnKind,
    pretrained: bool = True,
    layers: Sequence[str] | None = None,
    input_size: int | None = None,
) -> MtcnnNetwork:
    """Build PNet, RNet or ONet, with the wheel's weights when ``pretrained``.

    Args:
        kind: Which network.
        pretrained: Whether to load the weights shipped in the facenet-pytorch wheel.
        layers: Module names or glob patterns overriding the default unit layers.
        input_size: Square input side; images are area-resized to it. Fixed to 24 for
            RNet and 48 for ONet; for PNet None keeps the image size.
    """
    from facenet_pytorch.models import mtcnn

    classes = {"pnet": mtcnn.PNet, "rnet": mtcnn.RNet, "onet": mtcnn.ONet}
    native = NATIVE_SIZE[kind]
    if kind != "pnet":
        if input_size not in (None, native):
            raise ValueError(
                f"mtcnn_{kind} has dense layers that need {native}x{native} inputs, got "
                f"input_size={input_size}; remove the input_size option"
            )
        input_size = native
    elif input_size is not None and input_size < native:
        raise ValueError(f"mtcnn_pnet needs input_size >= {native}, got {input_size}")

    # Build without weights, then load the state dict with weights_only=True.
    network = classes[kind](pretrained=False)
    source, sha256 = "random initialisation", None
    if pretrained:
        resource = importlib.resources.files("facenet_pytorch") / "data" / f"{kind}.pt"
        with importlib.resources.as_file(resource) as path:
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} not found: the facenet-pytorch wheel ships it; reinstall "
                    "facenet-pytorch==2.5.3"
                )
            network.load_state_dict(load_state_dict(path), strict=True)
            sha256 = file_sha256(path)
            version = importlib.metadata.version("facenet-pytorch")
            source = f"facenet-pytorch {version} ({path})"
    return MtcnnNetwork(
        network,
        kind=kind,
        input_size=input_size,
        zoo_name=f"mtcnn_{kind}",
        layers=list(layers) if layers is not None else list(DEFAULT_LAYERS[kind]),
        weights_source=source,
        weights_sha256=sha256,
    )
