"""Resize unit maps to a common grid and flatten them into observations.

Every model's units are numbered in one flat order: the layers in the order the
model lists them, the channels of each layer in order. Mining, the dictionary
file and inversion all use this numbering.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

ResizeMode = Literal["area", "bilinear", "bicubic", "nearest"]


def resize_maps(maps: torch.Tensor, grid: tuple[int, int], mode: ResizeMode = "area") -> torch.Tensor:
    """Resize a (B, U, h, w) batch of maps to (B, U, *grid).

    Shrinking with ``"bilinear"`` or ``"bicubic"`` is antialiased. ``"area"``
    averages the input pixels that cover each output cell, and it falls back to
    bilinear interpolation when it has to enlarge a map.
    """
    if maps.ndim != 4:
        raise ValueError(f"expected maps of shape (B, U, h, w), got {tuple(maps.shape)}")
    if tuple(maps.shape[-2:]) == tuple(grid):
        return maps
    h, w = maps.shape[-2:]
    shrinking = grid[0] <= h and grid[1] <= w
    if mode == "area" and not shrinking:
        mode = "bilinear"
    if mode == "area":
        return F.adaptive_avg_pool2d(maps, grid)
    if mode == "nearest":
        return F.interpolate(maps, size=grid, mode="nearest")
    return F.interpolate(maps, size=grid, mode=mode, align_corners=False, antialias=shrinking)


def stack_units(
    maps: dict[str, torch.Tensor], layers: list[str], grid: tuple[int, int], mode: ResizeMode = "area"
) -> torch.Tensor:
    """Resize every layer's maps to ``grid`` and concatenate them: (B, U_total, *grid)."""
    missing = [name for name in layers if name not in maps]
    if missing:
        raise KeyError(f"no maps captured for layers {missing}; captured: {sorted(maps)}")
    resized = [resize_maps(maps[name].float(), grid, mode) for name in layers]
    return torch.cat(resized, dim=1)


def to_observations(stacked: torch.Tensor) -> torch.Tensor:
    """Turn (B, U, gh, gw) maps into (B * gh * gw, U) observations, one row per image position."""
    batch, units = stacked.shape[:2]
    return stacked.permute(0, 2, 3, 1).reshape(-1, units)


def unit_locations(layers: list[str], unit_counts: dict[str, int]) -> list[tuple[str, int]]:
    """Return the (layer, channel) of every unit in the flat numbering."""
    return [(name, channel) for name in layers for channel in range(unit_counts[name])]
