"""Capture layer outputs as spatial maps through forward hooks registered by module name.

Hooks are registered inside ``try`` and removed in ``finally``, so no hook outlives a
forward pass, even when the forward pass raises.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

_GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class TokenLayout:
    """Layout of a transformer's token sequence for one forward pass.

    Attributes:
        grid: Patch grid (rows, columns), i.e. the input size divided by the patch size.
        num_prefix_tokens: Class and register tokens that precede the patch tokens.
        batch_first: Whether token outputs are (B, N, C); otherwise they are (N, B, C).
    """

    grid: tuple[int, int]
    num_prefix_tokens: int
    batch_first: bool = True


def module_names(network: nn.Module) -> list[str]:
    """Return the names of all submodules of ``network`` in registration order, without the root."""
    return [name for name, _ in network.named_modules() if name]


def closest_names(name: str, candidates: Sequence[str], count: int = 5) -> list[str]:
    """Return up to ``count`` names from ``candidates`` that are most similar to ``name``."""
    matches = difflib.get_close_matches(name, candidates, n=count, cutoff=0.4)
    if not matches:
        # Fall back to names that share the leading component, e.g. "layer1" for "layer1.9".
        head = name.split(".")[0]
        matches = [candidate for candidate in candidates if candidate.startswith(head)][:count]
    if not matches:
        # Nothing is close: show the first names so that the message still lists valid ones.
        matches = list(candidates)[: max(count, 20)]
    return matches


def resolve_layers(network: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Expand module names and ``fnmatch`` glob patterns into module names.

    Entries are expanded in the given order. A glob pattern expands to its matches in
    module registration order. Duplicates keep their first position.

    Args:
        network: Module whose submodule names are matched.
        patterns: Module names (``"layer1"``) or glob patterns (``"blocks.*.mlp.act"``).

    Returns:
        The resolved module names.

    Raises:
        ValueError: If ``patterns`` is empty, or an entry names no module, or a glob
            pattern matches nothing. The message lists the closest valid names.
    """
    if len(patterns) == 0:
        raise ValueError("layers is empty; name at least one module or glob pattern")
    names = module_names(network)
    known = set(names)
    resolved: list[str] = []
    for pattern in patterns:
        if _GLOB_CHARACTERS.isdisjoint(pattern):
            matches = [pattern] if pattern in known else []
        else:
            matches = fnmatch.filter(names, pattern)
        if not matches:
            suggestions = closest_names(pattern, names)
            raise ValueError(
                f"unknown layer {pattern!r}: no module of {type(network).__name__} matches it; "
                f"closest valid names: {suggestions}"
            )
        for match in matches:
            if match not in resolved:
                resolved.append(match)
    return resolved


def tokens_to_maps(tokens: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """Turn transformer tokens into spatial maps, dropping class and register tokens.

    Args:
        tokens: (B, N, C) tokens, or (N, B, C) when ``layout.batch_first`` is False.
        layout: Patch grid and number of prefix tokens for this forward pass.

    Returns:
        (B, C, rows, columns) maps with the same dtype as ``tokens``.

    Raises:
        RuntimeError: If the number of patch tokens differs from rows * columns.
    """
    if not layout.batch_first:
        tokens = tokens.transpose(0, 1)
    batch, count, channels = tokens.shape
    rows, columns = layout.grid
    patches = tokens[:, layout.num_prefix_tokens :, :]
    if patches.shape[1] != rows * columns:
        raise RuntimeError(
            f"expected {rows * columns} patch tokens for a {rows}x{columns} grid after "
            f"{layout.num_prefix_tokens} prefix tokens, got {count} tokens in total"
        )
    # (B, rows * columns, C) -> (B, C, rows, columns)
    return patches.reshape(batch, rows, columns, channels).permute(0, 3, 1, 2)


def output_to_maps(name: str, output: object, layout: TokenLayout | None) -> torch.Tensor:
    """Convert one module output into (B, C, h, w) maps.

    4-D outputs are maps already, 2-D outputs (B, C) become 1x1 maps and 3-D outputs are
    transformer tokens converted with ``layout``.

    Raises:
        RuntimeError: If the output is not a tensor, or is 3-D without a token layout, or
            has another number of dimensions.
    """
    if not isinstance(output, torch.Tensor):
        raise RuntimeError(
            f"layer {name!r} returned {type(output).__name__}, not a tensor; "
            "choose a module that returns a single tensor"
        )
    if output.ndim == 4:
        return output
    if output.ndim == 2:
        return output[:, :, None, None]
    if output.ndim == 3:
        if layout is None:
            raise RuntimeError(
                f"layer {name!r} returned a 3-D tensor {tuple(output.shape)} but the model "
                "has no token layout; choose a convolutional layer"
            )
        return tokens_to_maps(output, layout)
    raise RuntimeError(
        f"layer {name!r} returned a {output.ndim}-D tensor {tuple(output.shape)}; "
        "expected (B, C, h, w) maps, (B, C) vectors or (B, N, C) tokens"
    )


@contextmanager
def capture_maps(
    network: nn.Module,
    layers: Sequence[str],
    layout: TokenLayout | None = None,
    detach: bool = True,
) -> Iterator[dict[str, torch.Tensor]]:
    """Capture the outputs of named modules during the forward passes run inside the block.

    The yielded dict is filled while the block runs and checked when it ends. Detached
    maps are cloned as float32, so a later in-place operation of the network cannot change
    them. Maps captured with ``detach=False`` keep their graph and dtype.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        >>> with capture_maps(net, ["1"]) as maps:
        ...     _ = net(torch.zeros(2, 3, 8, 8))
        >>> tuple(maps["1"].shape)
        (2, 4, 6, 6)

    Args:
        network: Module that contains the layers.
        layers: Resolved module names (see :func:`resolve_layers`).
        layout: Token layout of this forward pass, needed for transformer layers.
        detach: Whether to detach the captured maps from the autograd graph.

    Yields:
        Dict from layer name to (B, C, h, w) maps.

    Raises:
        ValueError: If a layer name is not a module of ``network``.
        RuntimeError: If a layer produced no output, or ran more than once, in the block.
    """
    modules = dict(network.named_modules())
    unknown = [name for name in layers if name not in modules or not name]
    if unknown:
        raise ValueError(
            f"unknown layer {unknown[0]!r}; closest valid names: "
            f"{closest_names(unknown[0], module_names(network))}"
        )

    maps: dict[str, torch.Tensor] = {}
    calls: dict[str, int] = dict.fromkeys(layers, 0)

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            calls[name] += 1
            converted = output_to_maps(name, output, layout)
            if detach:
                converted = converted.detach().float().clone()
            maps[name] = converted

        return hook

    handles: list[RemovableHandle] = []
    try:
        for name in layers:
            handles.append(modules[name].register_forward_hook(make_hook(name)))
        yield maps
    finally:
        for handle in handles:
            handle.remove()

    silent = [name for name in layers if calls[name] == 0]
    if silent:
        raise RuntimeError(
            f"layers {silent} produced no output in the forward pass; they are not on the "
            "path the model runs, so choose other layers"
        )
    repeated = {name: count for name, count in calls.items() if count > 1}
    if repeated:
        raise RuntimeError(
            f"layers ran more than once in one forward pass {repeated}, so their maps are "
            "ambiguous; choose modules that run once, such as the enclosing block"
        )
