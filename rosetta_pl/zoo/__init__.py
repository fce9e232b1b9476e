"""Generators and discriminative models by name, with their units exposed as activation maps."""

from rosetta_pl.zoo.base import Generator, UnitModel
from rosetta_pl.zoo.capture import TokenLayout, capture_maps, resolve_layers
from rosetta_pl.zoo.registry import available_models, build

__all__ = [
    "Generator",
    "TokenLayout",
    "UnitModel",
    "available_models",
    "build",
    "capture_maps",
    "resolve_layers",
]
