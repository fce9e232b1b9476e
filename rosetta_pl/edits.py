"""Geometric edits of z-scored unit maps: shift, zoom, horizontal flip, copy-paste.

An edit expressed on a discriminative model's maps becomes an image through
inversion: the inversion module z-scores the target's maps with the mining
statistics, resizes them to the mining grid, applies the edit and then
optimises the generator latent to reproduce the edited maps. Because the
maps are z-scored, the area an edit uncovers is filled with 0, the unit's
mean.

The functions here are pure: (B, U, H, W) float tensors in, a new tensor of
the same shape out. The ``MapEdit`` classes wrap them with validated
parameters so that a config selects one edit, for example::

    edit:
      class_path: rosetta_pl.edits.Shift
      init_args: {dx: 0.25}

Every parameter is checked in the constructor, so a bad edit raises
``ValueError`` before any optimisation starts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _check_maps(maps: torch.Tensor) -> None:
    if maps.ndim != 4:
        raise ValueError(f"expected maps of shape (B, U, H, W), got shape {tuple(maps.shape)}")
    if not maps.is_floating_point():
        raise ValueError(f"expected floating-point maps, got dtype {maps.dtype}")


def validate_shift(dx: float, dy: float) -> None:
    """Raise ValueError unless both shift fractions lie strictly between -1 and 1."""
    for name, value in (("dx", dx), ("dy", dy)):
        if not math.isfinite(value) or abs(value) >= 1:
            raise ValueError(
                f"shift {name}={value} is invalid: a shift is a fraction of the map's "
                "width (dx) or height (dy) and must lie strictly between -1 and 1, "
                "because a shift of a full side or more leaves nothing of the map"
            )


def validate_zoom(factor: float, center: tuple[float, float]) -> None:
    """Raise ValueError unless the zoom factor is positive and the centre lies in [0, 1]^2."""
    if not math.isfinite(factor) or factor <= 0:
        raise ValueError(
            f"zoom factor={factor} is invalid: use a positive factor "
            "(above 1 enlarges the content, below 1 shrinks it)"
        )
    if len(center) != 2 or not all(0 <= value <= 1 for value in center):
        raise ValueError(
            f"zoom center={tuple(center)} is invalid: give (x, y) as fractions of "
            "width and height, each in [0, 1]"
        )


def validate_region(region: tuple[float, float, float, float], name: str = "region") -> None:
    """Raise ValueError unless ``region`` (top, left, bottom, right) is a box inside [0, 1]."""
    if len(region) != 4:
        raise ValueError(
            f"{name}={tuple(region)} is invalid: expected 4 fractions (top, left, bottom, right)"
        )
    top, left, bottom, right = region
    inside = all(0 <= value <= 1 for value in region)
    if not inside or top >= bottom or left >= right:
        raise ValueError(
            f"{name}={tuple(region)} is invalid: expected (top, left, bottom, right) as "
            "fractions of height and width with 0 <= top < bottom <= 1 and "
            "0 <= left < right <= 1, so the region lies inside the map"
        )


def _affine_resample(maps: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Sample ``maps`` at ``theta @ (x, y, 1)`` in normalised coordinates; zeros outside."""
    batch, units, height, width = maps.shape
    theta = theta.to(dtype=maps.dtype, device=maps.device).expand(batch, 2, 3)
    grid = F.affine_grid(theta, [batch, units, height, width], align_corners=False)
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def shift_maps(maps: torch.Tensor, dx: float, dy: float = 0.0) -> torch.Tensor:
    """Shift maps by fractions of their width and height, filling the uncovered area with 0.

    A shift by a whole number of cells moves the values exactly; any other
    shift interpolates bilinearly between neighbouring cells.

    Args:
        maps: (B, U, H, W) float maps, z-scored so that 0 is each unit's mean.
        dx: fraction of the width to move the content right (negative: left),
            in (-1, 1).
        dy: fraction of the height to move the content down (negative: up),
            in (-1, 1).

    Returns:
        (B, U, H, W) shifted maps, same dtype and device as ``maps``.

    Raises:
        ValueError: if ``maps`` is not 4-D floating point or a fraction is
            outside (-1, 1).
    """
    _check_maps(maps)
    validate_shift(dx, dy)
    # Output position x samples the input at x - shift; normalised coordinates span 2 units.
    theta = torch.tensor([[1.0, 0.0, -2.0 * dx], [0.0, 1.0, -2.0 * dy]], dtype=torch.float64)
    return _affine_resample(maps, theta)


def zoom_maps(
    maps: torch.Tensor, factor: float, center: tuple[float, float] = (0.5, 0.5)
) -> torch.Tensor:
    """Zoom maps by ``factor`` about ``center``, filling the uncovered area with 0.

    Zoom 2 about the centre takes the centre half of the maps in each
    direction and resizes it back to (H, W) by bilinear interpolation.

    Args:
        maps: (B, U, H, W) float maps, z-scored so that 0 is each unit's mean.
        factor: magnification, > 0; below 1 shrinks the content and leaves a
            border of zeros.
        center: (x, y) fixed point of the zoom as fractions of width and height.

    Returns:
        (B, U, H, W) zoomed maps, same dtype and device as ``maps``.

    Raises:
        ValueError: if ``maps`` is not 4-D floating point, ``factor`` <= 0 or
            ``center`` lies outside [0, 1]^2.
    """
    _check_maps(maps)
    validate_zoom(factor, center)
    # Normalised fixed point c; output position p samples the input at c + (p - c) / factor.
    cx, cy = 2.0 * center[0] - 1.0, 2.0 * center[1] - 1.0
    scale = 1.0 / factor
    theta = torch.tensor(
        [[scale, 0.0, cx * (1.0 - scale)], [0.0, scale, cy * (1.0 - scale)]], dtype=torch.float64
    )
    return _affine_resample(maps, theta)


def hflip_maps(maps: torch.Tensor) -> torch.Tensor:
    """Mirror (B, U, H, W) maps left to right."""
    _check_maps(maps)
    return torch.flip(maps, dims=[-1])


def _region_cells(
    region: tuple[float, float, float, float], height: int, width: int
) -> tuple[int, int, int, int]:
    """Round a fractional (top, left, bottom, right) box to cell indices, at least one cell wide."""
    top = min(int(round(region[0] * height)), height - 1)
    left = min(int(round(region[1] * width)), width - 1)
    bottom = max(int(round(region[2] * height)), top + 1)
    right = max(int(round(region[3] * width)), left + 1)
    return top, left, bottom, right


def copy_paste_maps(
    destination: torch.Tensor,
    source: torch.Tensor,
    region: tuple[float, float, float, float],
    paste_at: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Copy a region of ``source`` maps into ``destination`` maps.

    Fractions are rounded to whole cells. The pasted block keeps its size in
    cells, so it must fit inside the destination at ``paste_at``.

    Args:
        destination: (B, U, H, W) float maps that receive the region.
        source: (B, U, H, W) or (1, U, H, W) float maps that the region is
            taken from (one source row is broadcast over the batch).
        region: (top, left, bottom, right) of the source region as fractions
            of height and width.
        paste_at: (top, left) of the pasted block in the destination, as
            fractions; None pastes at the region's own position.

    Returns:
        (B, U, H, W) copy of ``destination`` with the region replaced.

    Raises:
        ValueError: if the shapes differ, the region is empty or outside the
            maps, or the pasted block would reach outside the destination.
    """
    _check_maps(destination)
    _check_maps(source)
    batch_matches = source.shape[0] in (1, destination.shape[0])
    if source.shape[1:] != destination.shape[1:] or not batch_matches:
        raise ValueError(
            f"source maps of shape {tuple(source.shape)} do not match destination maps of "
            f"shape {tuple(destination.shape)}: expected the same (U, H, W) and a batch of 1 "
            "or the destination's batch size"
        )
    validate_region(region)
    height, width = destination.shape[-2:]
    top, left, bottom, right = _region_cells(region, height, width)
    if paste_at is None:
        to_top, to_left = top, left
    else:
        if len(paste_at) != 2 or not all(0 <= value <= 1 for value in paste_at):
            raise ValueError(
                f"paste_at={tuple(paste_at)} is invalid: give (top, left) as fractions in [0, 1]"
            )
        to_top, to_left = int(round(paste_at[0] * height)), int(round(paste_at[1] * width))
    block_height, block_width = bottom - top, right - left
    if to_top + block_height > height or to_left + block_width > width:
        raise ValueError(
            f"the pasted block of {block_height}x{block_width} cells at row {to_top}, column "
            f"{to_left} reaches outside the {height}x{width} maps: move paste_at up or left, "
            "or take a smaller region"
        )
    edited = destination.clone()
    block = source[:, :, top:bottom, left:right].to(edited.dtype)
    edited[:, :, to_top : to_top + block_height, to_left : to_left + block_width] = block
    return edited


class MapEdit:
    """An edit of z-scored (B, U, H, W) target maps, selected in a config by class path.

    Attributes:
        source_index: index of the target whose maps an edit reads besides the
            edited batch (copy-paste), or None when the edit needs none.
    """

    source_index: int | None = None

    def apply(self, maps: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        """Return the edited (B, U, H, W) maps.

        ``source`` is the (1, U, H, W) maps of target ``source_index`` for edits that read one.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement apply()")

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({fields})"


class Identity(MapEdit):
    """No edit: the control run of an edit experiment."""

    def apply(self, maps: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        _check_maps(maps)
        return maps


class Shift(MapEdit):
    """Shift by fractions of width and height (see ``shift_maps``).

    Args:
        dx: fraction of the width to move the content right, in (-1, 1).
        dy: fraction of the height to move the content down, in (-1, 1).
    """

    def __init__(self, dx: float = 0.0, dy: float = 0.0) -> None:
        validate_shift(dx, dy)
        self.dx = dx
        self.dy = dy

    def apply(self, maps: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        return shift_maps(maps, self.dx, self.dy)


class Zoom(MapEdit):
    """Zoom by a factor about a centre (see ``zoom_maps``).

    Args:
        factor: magnification, > 0.
        center: (x, y) fixed point as fractions of width and height.
    """

    def __init__(self, factor: float = 2.0, center: tuple[float, float] = (0.5, 0.5)) -> None:
        center = tuple(center)
        validate_zoom(factor, center)
        self.factor = factor
        self.center = center

    def apply(self, maps: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        return zoom_maps(maps, self.factor, self.center)


class HFlip(MapEdit):
    """Mirror the maps left to right."""

    def apply(self, maps: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        return hflip_maps(maps)


class CopyPaste(MapEdit):
    """Paste a region of another target's maps into every target's maps (see ``copy_paste_maps``).

    Args:
        source_index: index, in the target set, of the image whose maps give the region.
        region: (top, left, bottom, right) of the region as fractions of height and width.
        paste_at: (top, left) of the pasted block as fractions; None keeps the region's position.
    """

    def __init__(
        self,
        source_index: int,
        region: tuple[float, float, float, float],
        paste_at: tuple[float, float] | None = None,
    ) -> None:
        if source_index < 0:
            raise ValueError(f"source_index={source_index} is invalid: use a target index >= 0")
        region = tuple(region)
        validate_region(region)
        if paste_at is not None:
            paste_at = tuple(paste_at)
            if len(paste_at) != 2 or not all(0 <= value <= 1 for value in paste_at):
                raise ValueError(
                    f"paste_at={paste_at} is invalid: give (top, left) as fractions in [0, 1]"
                )
            block_height, block_width = region[2] - region[0], region[3] - region[1]
            if paste_at[0] + block_height > 1 + 1e-9 or paste_at[1] + block_width > 1 + 1e-9:
                raise ValueError(
                    f"region={region} pasted at {paste_at} reaches outside the maps: "
                    "move paste_at up or left, or take a smaller region"
                )
        self.source_index = source_index
        self.region = region
        self.paste_at = paste_at

    def apply(self, maps: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        if source is None:
            raise ValueError(
                f"CopyPaste needs the maps of target {self.source_index} as `source`, got None"
            )
        return copy_paste_maps(maps, source, self.region, self.paste_at)
