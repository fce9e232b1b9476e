"""Time mining against its limit and against the reference method, and measure their errors.

On the samples of ``configs/mine.yaml`` (face DCGAN against MTCNN ONet, RNet
and PNet, seed 0) the script times:

- the forward passes alone: ``generator.generate(latents, return_maps=True)``
  and ``model.unit_maps(images)`` for every model, on precomputed latents;
- plain float32 products ``x.T @ y`` of the shapes of the co-moment products,
  (N, Ug) x (N, Ud) per model and batch;
- rosetta_pl's mining through ``Trainer.fit`` (one CPU device, no logger,
  checkpoints or progress bar): the training loop alone and the whole fit;
- the reference method, re-implemented from its published description. A
  first pass takes each unit's mean as the average of per-batch means and its
  std as the square root of the average of per-batch variances. A second pass
  z-scores every map. For every pair of (generator layer, discriminative
  layer) it upsamples both maps bilinearly to the larger of the two sizes and
  computes per batch the cosine of the z-scored maps over batch and positions
  for every unit pair. It sets NaN to 0 and averages the per-batch tables;
- rosetta_pl's ``PairwiseCorrelation`` fed with the reference's maps (each
  layer pair at the larger size), in one pass.

The limit is the forward passes plus the K products; the overhead ratio is
the mining time divided by it. Each method's error is taken against the exact
float64 Pearson table of the very maps it uses, computed by two float64
passes over the same maps: our grid observations for the mining run, the
upsampled layer pairs for the reference method and for our metric at the
reference's resolution. Pearson correlation does not change under the
per-unit z-scoring, so one exact table serves both of the latter.

Usage:
    python benchmarks/bench_mining.py            # ONet, 256 samples, batch 64, grid 8
    python benchmarks/bench_mining.py --models onet rnet pnet --num-samples 512 --skip-reference
    python benchmarks/bench_mining.py --quick    # ONet, 8 samples in one batch, one run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    build_networks,
    float32_product,
    latent_batches,
    machine_line,
    markdown_table,
    median,
    mine_in_process,
    time_repeats,
)

from rosetta_pl.maps import stack_units, to_observations  # noqa: E402
from rosetta_pl.metrics import PairwiseCorrelation  # noqa: E402
from rosetta_pl.zoo.base import Generator, UnitModel  # noqa: E402

Maps = dict[str, torch.Tensor]


@dataclass
class Networks:
    generator: Generator
    models: dict[str, UnitModel]
    latents: list[torch.Tensor]  # one (B, 100) float32 tensor per batch


@dataclass(frozen=True)
class TableError:
    max_abs_error: float
    best_partner_changed: float  # fraction of generator units whose argmax column differs


# Forward passes and products ---------------------------------------------------------


def forward_batch(networks: Networks, latents: torch.Tensor) -> tuple[Maps, dict[str, Maps]]:
    """Run the generator and every model on one batch and return their unit maps."""
    with torch.no_grad():
        images, generator_maps = networks.generator.generate(latents, return_maps=True)
        model_maps = {name: model.unit_maps(images) for name, model in networks.models.items()}
    return generator_maps, model_maps


def run_forward_passes(networks: Networks) -> None:
    for latents in networks.latents:
        forward_batch(networks, latents)


def product_shapes(networks: Networks, grid_size: int) -> tuple[list[int], int, dict[str, int]]:
    """Return the rows per batch, Ug and Ud per model of the co-moment products."""
    rows = [len(latents) * grid_size * grid_size for latents in networks.latents]
    units = {name: model.num_units for name, model in networks.models.items()}
    return rows, networks.generator.num_units, units


def time_products(rows: list[int], num_x: int, num_y: list[int], repeats: int) -> float:
    """Return the median seconds of all float32 (N, num_x)^T @ (N, num_y) products of one pass."""
    generator = torch.Generator().manual_seed(0)
    inputs = [
        (
            torch.randn(count, num_x, generator=generator),
            [torch.randn(count, units, generator=generator) for units in num_y],
        )
        for count in sorted(set(rows))
    ]
    by_rows = {x.shape[0]: (x, ys) for x, ys in inputs}

    def products() -> None:
        for count in rows:
            x, ys = by_rows[count]
            for y in ys:
                float32_product(x, y)

    return median(time_repeats(products, repeats))


# Reference method ----------------------------------------------------------------------


def pair_size(first: torch.Tensor, second: torch.Tensor) -> tuple[int, int]:
    """Return the larger of two (B, U, h, w) maps' sizes, by number of positions."""
    sizes = [tuple(first.shape[-2:]), tuple(second.shape[-2:])]
    return max(sizes, key=lambda size: size[0] * size[1])  # type: ignore[return-value]


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize (B, U, h, w) maps to ``size`` and flatten them to (B * h' * w', U)."""
    if tuple(maps.shape[-2:]) != size:
        maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])


def batch_mean_and_variance(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the per-unit mean and population variance over batch and positions, (U,) each."""
    flat = maps.transpose(0, 1).reshape(maps.shape[1], -1)
    return flat.mean(dim=1), flat.var(dim=1, unbiased=False)


def reference_method(networks: Networks) -> dict[str, torch.Tensor]:
    """Run the two passes of the reference method and return one (Ug, Ud) float32 table per model.

    Each block of a table belongs to one (generator layer, model layer) pair and
    is computed at that pair's larger size.
    """
    generator = networks.generator

    # Pass 1: averages of per-batch means and variances of every layer.
    sums: dict[tuple[str, str], list[torch.Tensor]] = {}
    for latents in networks.latents:
        generator_maps, model_maps = forward_batch(networks, latents)
        layers = [("generator", name, maps) for name, maps in generator_maps.items()]
        layers += [(model, name, maps) for model, named in model_maps.items() for name, maps in named.items()]
        for network, name, maps in layers:
            mean, variance = batch_mean_and_variance(maps)
            if (network, name) in sums:
                sums[network, name][0] += mean
                sums[network, name][1] += variance
            else:
                sums[network, name] = [mean, variance]
    num_batches = len(networks.latents)
    means = {key: value[0] / num_batches for key, value in sums.items()}
    stds = {key: (value[1] / num_batches).sqrt() for key, value in sums.items()}

    def z_score(network: str, name: str, maps: torch.Tensor) -> torch.Tensor:
        return (maps - means[network, name][:, None, None]) / stds[network, name][:, None, None]

    # Pass 2: per-batch cosine tables of every layer pair, averaged over batches.
    tables = {
        name: torch.zeros(generator.num_units, model.num_units) for name, model in networks.models.items()
    }
    for latents in networks.latents:
        generator_maps, model_maps = forward_batch(networks, latents)
        for model_name, model in networks.models.items():
            row = 0
            for generator_layer in generator.layers:
                x_maps = z_score("generator", generator_layer, generator_maps[generator_layer])
                column = 0
                for model_layer in model.layers:
                    y_maps = z_score(model_name, model_layer, model_maps[model_name][model_layer])
                    size = pair_size(x_maps, y_maps)
                    x = upsample(x_maps, size)
                    y = upsample(y_maps, size)
                    cosine = (x.T @ y) / torch.outer(x.norm(dim=0), y.norm(dim=0))
                    block = tables[model_name][row : row + x.shape[1], column : column + y.shape[1]]
                    block += torch.nan_to_num(cosine, nan=0.0)
                    column += y.shape[1]
                row += x_maps.shape[1]
    return {name: table / num_batches for name, table in tables.items()}


def ours_at_reference_resolution(networks: Networks) -> dict[str, torch.Tensor]:
    """Feed every layer pair, upsampled as in the reference method, to one PairwiseCorrelation.

    Returns one assembled (Ug, Ud) float64 table per model.
    """
    generator = networks.generator
    metrics: dict[tuple[str, str, str], PairwiseCorrelation] = {}
    for latents in networks.latents:
        generator_maps, model_maps = forward_batch(networks, latents)
        for model_name, model in networks.models.items():
            for generator_layer in generator.layers:
                x_maps = generator_maps[generator_layer]
                for model_layer in model.layers:
                    y_maps = model_maps[model_name][model_layer]
                    key = (model_name, generator_layer, model_layer)
                    if key not in metrics:
                        metrics[key] = PairwiseCorrelation(x_maps.shape[1], y_maps.shape[1])
                    size = pair_size(x_maps, y_maps)
                    metrics[key].update(upsample(x_maps, size), upsample(y_maps, size))
    return assemble(networks, {key: metric.compute() for key, metric in metrics.items()})


def assemble(networks: Networks, blocks: dict[tuple[str, str, str], torch.Tensor]) -> dict[str, torch.Tensor]:
    """Concatenate (model, generator layer, model layer) blocks into one (Ug, Ud) table per model."""
    tables = {}
    for model_name, model in networks.models.items():
        rows = [
            torch.cat([blocks[model_name, generator_layer, model_layer] for model_layer in model.layers], dim=1)
            for generator_layer in networks.generator.layers
        ]
        tables[model_name] = torch.cat(rows, dim=0)
    return tables


# Exact float64 references --------------------------------------------------------------


def collect_maps(networks: Networks) -> list[tuple[Maps, dict[str, Maps]]]:
    """Return the native unit maps of every batch, kept in memory for the exact tables."""
    return [forward_batch(networks, latents) for latents in networks.latents]


def exact_pearson(x_batches: list[torch.Tensor], y_batches: list[torch.Tensor]) -> torch.Tensor:
    """Return the float64 Pearson table of row-paired (N_b, Ux) and (N_b, Uy) batches, in two passes.

    Entries of constant units are NaN.
    """
    count = sum(x.shape[0] for x in x_batches)
    mean_x = sum(x.double().sum(dim=0) for x in x_batches) / count
    mean_y = sum(y.double().sum(dim=0) for y in y_batches) / count
    cross = torch.zeros(mean_x.numel(), mean_y.numel(), dtype=torch.float64)
    square_x = torch.zeros_like(mean_x)
    square_y = torch.zeros_like(mean_y)
    for x, y in zip(x_batches, y_batches, strict=True):
        centred_x = x.double() - mean_x
        centred_y = y.double() - mean_y
        cross += centred_x.T @ centred_y
        square_x += centred_x.square().sum(dim=0)
        square_y += centred_y.square().sum(dim=0)
    table = cross / torch.outer(square_x, square_y).sqrt()
    constant = (square_x == 0)[:, None] | (square_y == 0)[None, :]
    return table.masked_fill(constant, float("nan"))


def exact_at_grid(
    networks: Networks, maps: list[tuple[Maps, dict[str, Maps]]], grid_size: int
) -> dict[str, torch.Tensor]:
    """Return the exact tables of the grid observations that mining feeds to its metrics."""
    grid = (grid_size, grid_size)
    x_batches = [to_observations(stack_units(g, networks.generator.layers, grid, "area")) for g, _ in maps]
    tables = {}
    for name, model in networks.models.items():
        y_batches = [to_observations(stack_units(m[name], model.layers, grid, "area")) for _, m in maps]
        tables[name] = exact_pearson(x_batches, y_batches)
    return tables


def exact_at_reference_resolution(
    networks: Networks, maps: list[tuple[Maps, dict[str, Maps]]]
) -> dict[str, torch.Tensor]:
    """Return the exact tables of the layer pairs upsampled as in the reference method."""
    blocks = {}
    for model_name, model in networks.models.items():
        for generator_layer in networks.generator.layers:
            for model_layer in model.layers:
                x_batches, y_batches = [], []
                for generator_maps, model_maps in maps:
                    x_maps = generator_maps[generator_layer]
                    y_maps = model_maps[model_name][model_layer]
                    size = pair_size(x_maps, y_maps)
                    x_batches.append(upsample(x_maps, size))
                    y_batches.append(upsample(y_maps, size))
                blocks[model_name, generator_layer, model_layer] = exact_pearson(x_batches, y_batches)
    return assemble(networks, blocks)


def table_error(tables: dict[str, torch.Tensor], exact: dict[str, torch.Tensor]) -> TableError:
    """Return the max |table - exact| over finite exact entries, and the share of changed best partners.

    The best partner of a generator unit is its row's argmax over the columns of
    all models together; rows that are NaN throughout in the exact table are skipped.
    """
    names = list(exact)
    table = torch.cat([tables[name].double() for name in names], dim=1)
    reference = torch.cat([exact[name] for name in names], dim=1)
    finite = reference.isfinite()
    max_error = float((table - reference).abs()[finite].max())
    rows = finite.any(dim=1)
    best = table.nan_to_num(nan=float("-inf"))[rows].argmax(dim=1)
    best_exact = reference.nan_to_num(nan=float("-inf"))[rows].argmax(dim=1)
    changed = float((best != best_exact).double().mean())
    return TableError(max_error, changed)


# Report --------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="ONet, 8 samples in one batch, one run")
    parser.add_argument("--num-samples", type=int, default=256, help="generated images (default 256)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    parser.add_argument("--grid-size", type=int, default=8, help="mining grid, cells per side (default 8)")
    parser.add_argument(
        "--models", nargs="+", default=["onet"], help="MTCNN networks among onet, rnet, pnet (default onet)"
    )
    parser.add_argument(
        "--skip-reference",
        action="store_true",
        help="time only the forward passes, products and rosetta_pl mining, and its error",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each method; the median is reported")
    parser.add_argument(
        "--reference-repeats", type=int, default=1, help="timed runs of the reference method (default 1)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.num_samples, args.batch_size, args.models = 8, 8, ["onet"]
        args.repeats = args.reference_repeats = 1
    return args


def ratio(seconds: float, base: float) -> str:
    return f"{seconds / base:.2f}"


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    print(machine_line())
    torch.manual_seed(0)
    generator, models = build_networks(args.models)
    latents = latent_batches(generator, args.num_samples, args.batch_size)
    networks = Networks(generator, models, latents)

    # Warm-up, then the forward passes and the products of the limit.
    forward_batch(networks, latents[0])
    forward_seconds = median(time_repeats(lambda: run_forward_passes(networks), args.repeats))
    rows, num_x, num_y = product_shapes(networks, args.grid_size)
    products_seconds = time_products(rows, num_x, list(num_y.values()), args.repeats)
    limit = forward_seconds + products_seconds

    # rosetta_pl mining through Lightning, in this process.
    loop_seconds, fit_seconds = [], []
    with tempfile.TemporaryDirectory(prefix="bench_mining_") as root_dir:
        for _ in range(args.repeats):
            record, our_tables = mine_in_process(
                args.models, args.num_samples, args.batch_size, args.grid_size, root_dir
            )
            loop_seconds.append(record["loop_seconds"])
            fit_seconds.append(record["fit_seconds"])

    # Exact float64 tables of the maps each method uses (not timed).
    maps = collect_maps(networks)
    grid_error = table_error(our_tables, exact_at_grid(networks, maps, args.grid_size))

    reference_rows: list[tuple[str, float, TableError]] = []
    if not args.skip_reference:
        reference_seconds: list[float] = []
        for _ in range(args.reference_repeats):
            start = time.perf_counter()
            reference_tables = reference_method(networks)
            reference_seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
        ours_reference_tables = ours_at_reference_resolution(networks)
        ours_reference_seconds = time.perf_counter() - start

        exact_reference = exact_at_reference_resolution(networks, maps)
        reference_rows = [
            (
                "reference method, both passes, each pair at the larger size",
                median(reference_seconds),
                table_error(reference_tables, exact_reference),
            ),
            (
                "rosetta_pl PairwiseCorrelation at the reference's resolution, one pass",
                ours_reference_seconds,
                table_error(ours_reference_tables, exact_reference),
            ),
        ]
    del maps

    def row(label: str, seconds: float, error: TableError | None = None) -> list[str]:
        cells = [label, f"{seconds:.2f}", ratio(seconds, forward_seconds), ratio(seconds, limit)]
        if error is None:
            return cells + ["-", "-"]
        return cells + [f"{error.max_abs_error:.1e}", f"{100 * error.best_partner_changed:.1f} %"]

    grid = f"{args.grid_size}x{args.grid_size}"
    table_rows = [
        row("forward passes alone (generator + models, maps captured)", forward_seconds),
        row(f"float32 products (N, Ug)^T (N, Ud), one per model, grid {grid}", products_seconds),
        row("limit = forward passes + products per model", limit),
        row(f"rosetta_pl mining, training loop, grid {grid}", median(loop_seconds), grid_error),
        row(f"rosetta_pl mining, whole `Trainer.fit`, grid {grid}", median(fit_seconds)),
    ]
    table_rows += [row(label, seconds, error) for label, seconds, error in reference_rows]
    headers = [
        "step",
        "seconds",
        "x forward",
        "x limit",
        "max abs error vs exact",
        "best partner changed",
    ]
    models_text = ", ".join(f"{name} ({units} units)" for name, units in num_y.items())
    print(
        f"{args.num_samples} samples in batches of {args.batch_size}; generator face_dcgan ({num_x} units); "
        f"models {models_text}; median of {args.repeats} runs (reference: {args.reference_repeats})"
    )
    print()
    print(markdown_table(headers, table_rows))
    print()
    print(f"rosetta_pl training loop / limit: {median(loop_seconds) / limit:.2f}x (goal: at most 1.2x)")
    if reference_rows:
        speedup = reference_rows[0][1] / median(loop_seconds)
        print(f"reference method / rosetta_pl training loop: {speedup:.1f}x (goal: at least 20x)")


if __name__ == "__main__":
    main(sys.argv[1:])
