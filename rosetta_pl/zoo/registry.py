"""Build zoo models by name.

Each entry names the factory function that builds the model, imported only when the
model is built, so importing the zoo does not import timm, open_clip or BigGAN.
``"timm:NAME"`` and ``"open_clip:NAME"`` build any model of those libraries.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rosetta_pl.zoo.base import UnitModel


@dataclass(frozen=True)
class ZooEntry:
    """A factory ``module:function`` and the fixed keyword arguments it gets for one name."""

    factory: str
    fixed: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Callable[..., UnitModel]:
        """Import and return the factory function."""
        module_name, function_name = self.factory.split(":")
        return getattr(importlib.import_module(module_name), function_name)


_PACKAGE = "rosetta_pl.zoo"
ENTRIES: dict[str, ZooEntry] = {
    "face_dcgan": ZooEntry(f"{_PACKAGE}.generators.face_dcgan:build_face_dcgan"),
    "mtcnn_pnet": ZooEntry(f"{_PACKAGE}.encoders.mtcnn:build_mtcnn", {"kind": "pnet"}),
    "mtcnn_rnet": ZooEntry(f"{_PACKAGE}.encoders.mtcnn:build_mtcnn", {"kind": "rnet"}),
    "mtcnn_onet": ZooEntry(f"{_PACKAGE}.encoders.mtcnn:build_mtcnn", {"kind": "onet"}),
    "mnist_dcgan": ZooEntry(f"{_PACKAGE}.generators.mnist_dcgan:build_mnist_dcgan"),
    "lenet_mnist": ZooEntry(f"{_PACKAGE}.encoders.mnist:build_lenet_mnist"),
    "mnist_dcgan_disc": ZooEntry(f"{_PACKAGE}.encoders.mnist:build_mnist_dcgan_disc"),
    "dino_resnet50": ZooEntry(f"{_PACKAGE}.encoders.dino_resnet:build_dino_resnet50"),
    "biggan_deep_256": ZooEntry(f"{_PACKAGE}.generators.biggan:build_biggan_deep_256"),
    **{
        f"cifar10_resnet{depth}": ZooEntry(
            f"{_PACKAGE}.encoders.cifar_resnet:build_cifar_resnet", {"depth": depth}
        )
        for depth in (20, 32, 44, 56)
    },
}
PREFIX_ENTRIES: dict[str, ZooEntry] = {
    "timm:": ZooEntry(f"{_PACKAGE}.encoders.timm_models:build_timm"),
    "open_clip:": ZooEntry(f"{_PACKAGE}.encoders.open_clip_models:build_open_clip"),
}


def register(name: str, entry: ZooEntry) -> None:
    """Add an entry to the zoo, or replace the entry of the same name."""
    ENTRIES[name] = entry


def available_models() -> list[str]:
    """Return the names :func:`build` accepts; ``"timm:NAME"`` and the like are prefixes."""
    return sorted(ENTRIES) + [f"{prefix}NAME" for prefix in sorted(PREFIX_ENTRIES)]


def _lookup(name: str) -> tuple[ZooEntry, dict[str, Any]]:
    if name in ENTRIES:
        return ENTRIES[name], {}
    for prefix, entry in PREFIX_ENTRIES.items():
        if name.startswith(prefix):
            suffix = name[len(prefix) :]
            if not suffix:
                raise ValueError(f"model name {name!r} is missing the part after {prefix!r}")
            return entry, {"model_name": suffix}
    close = difflib.get_close_matches(name, available_models(), n=5, cutoff=0.3)
    raise ValueError(
        f"unknown model {name!r}; closest names: {close}; all names: {available_models()}"
    )


def build(
    name: str, pretrained: bool = True, layers: list[str] | None = None, **options: Any
) -> UnitModel:
    """Build a zoo model by name.

    Example:
        >>> from rosetta_pl.zoo import build
        >>> model = build("mtcnn_onet")
        >>> model.num_units
        576

    Args:
        name: Zoo name such as ``"face_dcgan"`` or ``"mtcnn_onet"``, or ``"timm:NAME"``
            / ``"open_clip:NAME"`` for any model of those libraries.
        pretrained: Whether to load the real weights; False builds a randomly initialised
            network of the same architecture.
        layers: Module names or ``fnmatch`` glob patterns that replace the default unit
            layers.
        **options: Model-specific options, e.g. ``weights_dir``, ``truncation``,
            ``class_ids``, ``weights_path``.

    Returns:
        A :class:`UnitModel`, or a :class:`Generator` for generators.

    Raises:
        ValueError: If the name is unknown or an option does not apply to the model.
    """
    entry, implied = _lookup(name)
    factory = entry.load()
    accepted = set(inspect.signature(factory).parameters) - set(entry.fixed) - set(implied)
    accepted.discard("pretrained")
    accepted.discard("layers")
    for option, value in options.items():
        if option in accepted:
            continue
        if option == "truncation":
            raise ValueError(
                f"{name} has no truncation, got truncation={value}; remove the truncation option"
            )
        raise ValueError(
            f"option {option}={value!r} does not apply to {name}; valid options: {sorted(accepted)}"
        )
    return factory(pretrained=pretrained, layers=layers, **entry.fixed, **implied, **options)
