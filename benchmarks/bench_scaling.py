"""Time and peak memory of mining against the number of samples and the number of units.

Samples: the mining of ``configs/mine.yaml`` (face DCGAN against the MTCNN
networks, grid 8x8, batches of 64) through ``Trainer.fit`` on 1x, 4x and 16x a
base number of samples. Units: ``PairwiseCorrelation.update`` on synthetic
float32 observations, Ug x Ud from 500 x 500 to 4000 x 4000, next to the plain
float32 product ``x.T @ y`` of the same shapes.

Every measurement runs in a fresh process, so the peak memory is that
process's maximum resident set size (``getrusage``), which cannot be reset.
For mining, the growth after the first step shows whether memory depends on
the number of samples. For the metric, the growth is taken beyond the inputs
and the metric's float64 states.

Usage:
    python benchmarks/bench_scaling.py            # 128 / 512 / 2048 samples, units up to 4000 x 4000
    python benchmarks/bench_scaling.py --quick    # 8 / 32 / 128 samples with ONet, units up to 200 x 200
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    float32_product,
    machine_line,
    markdown_table,
    median,
    mine_in_process,
    peak_rss_mib,
    run_in_fresh_process,
)

# Observation rows per update in the unit scaling: 64 images on an 8x8 grid.
ROWS_PER_UPDATE = 64 * 8 * 8


def mine_once(models: list[str], num_samples: int, batch_size: int, grid_size: int) -> dict[str, float]:
    """Mine in this process and return the FitTimer record (run in a fresh process)."""
    with tempfile.TemporaryDirectory(prefix="bench_scaling_") as root_dir:
        record, _ = mine_in_process(models, num_samples, batch_size, grid_size, root_dir)
    return record


def update_once(num_x: int, num_y: int, rows: int, steps: int) -> dict[str, float]:
    """Time PairwiseCorrelation.update and the float32 product on synthetic (rows, U) inputs.

    Returns the median seconds of each after one warm-up call, the peak memory growth of the updates
    beyond the inputs and states in MiB, and the state size in MiB.
    """
    from rosetta_pl.metrics import PairwiseCorrelation

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, num_x, generator=generator) + 3.0
    y = torch.randn(rows, num_y, generator=generator) * 0.1
    shared = min(num_x, num_y)
    y[:, :shared] += x[:, :shared]
    metric = PairwiseCorrelation(num_x, num_y)

    # The baseline is taken before the warm-up update, because the high-water
    # mark cannot be reset after it.
    baseline = peak_rss_mib()
    metric.update(x, y)
    float32_product(x, y)
    update_seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        metric.update(x, y)
        update_seconds.append(time.perf_counter() - start)
    peak_extra = peak_rss_mib() - baseline

    product_seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        float32_product(x, y)
        product_seconds.append(time.perf_counter() - start)

    return {
        "update_seconds": median(update_seconds),
        "product_seconds": median(product_seconds),
        "peak_extra_mib": peak_extra,
        "state_mib": 8 * (num_x * num_y + 2 * (num_x + num_y) + 1) / 2**20,
    }


def sample_table(models: list[str], base: int, batch_size: int, repeats: int) -> str:
    rows = []
    for factor in (1, 4, 16):
        num_samples = base * factor
        records = [run_in_fresh_process(mine_once, models, num_samples, batch_size, 8) for _ in range(repeats)]
        loop = median([record["loop_seconds"] for record in records])
        first = median([record["peak_rss_first_step_mib"] for record in records])
        loop_end = median([record["peak_rss_loop_end_mib"] for record in records])
        end = median([record["peak_rss_end_mib"] for record in records])
        rows.append(
            [
                f"{factor}x = {num_samples}",
                f"{loop:.2f}",
                f"{1000 * loop / num_samples:.1f}",
                f"{first:.0f}",
                f"{loop_end:.0f}",
                f"{loop_end - first:+.0f}",
                f"{end:.0f}",
            ]
        )
    headers = [
        "samples",
        "loop seconds",
        "ms / sample",
        "peak RSS after step 1 (MiB)",
        "peak RSS at loop end (MiB)",
        "growth after step 1 (MiB)",
        "peak RSS after fit (MiB)",
    ]
    return markdown_table(headers, rows)


def unit_table(sizes: list[int], rows: int, steps: int) -> str:
    table_rows = []
    for size in sizes:
        result = run_in_fresh_process(update_once, size, size, rows, steps)
        table_rows.append(
            [
                f"{size} x {size}",
                f"{result['update_seconds']:.3f}",
                f"{result['product_seconds']:.3f}",
                f"{result['update_seconds'] / result['product_seconds']:.2f}",
                f"{result['state_mib']:.0f}",
                f"{result['peak_extra_mib']:.0f}",
            ]
        )
    headers = [
        "Ug x Ud",
        "update seconds",
        "float32 product seconds",
        "x product",
        "float64 state (MiB)",
        "peak growth during updates (MiB)",
    ]
    return markdown_table(headers, table_rows)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 / 32 / 128 samples with ONet, units up to 200 x 200")
    parser.add_argument("--base-samples", type=int, default=128, help="samples of the 1x run (default 128)")
    parser.add_argument(
        "--models", nargs="+", default=["onet", "rnet", "pnet"], help="MTCNN networks (default onet rnet pnet)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process runs per sample count (median)")
    parser.add_argument("--steps", type=int, default=3, help="timed updates per unit count (median)")
    args = parser.parse_args(argv)
    args.batch_size = 64
    args.sizes = [500, 1000, 2000, 4000]
    args.rows = ROWS_PER_UPDATE
    if args.quick:
        args.base_samples, args.batch_size, args.models = 8, 8, ["onet"]
        args.repeats, args.steps, args.sizes, args.rows = 1, 2, [100, 200], 1024
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    print(machine_line())
    print()
    print(
        f"Samples: face_dcgan against {', '.join(args.models)}, grid 8x8, batches of {args.batch_size}, "
        f"median of {args.repeats} fresh processes"
    )
    print()
    print(sample_table(args.models, args.base_samples, args.batch_size, args.repeats))
    print()
    print(f"Units: PairwiseCorrelation.update with {args.rows} float32 rows per update, median of {args.steps}")
    print()
    print(unit_table(args.sizes, args.rows, args.steps))


if __name__ == "__main__":
    main(sys.argv[1:])
