"""Time PairwiseCorrelation.update against a plain float32 matrix product.

Every variant runs in a fresh process. Its peak memory is the growth of the
resident set size (CPU, sampled every millisecond) or of torch's CUDA
allocator (GPU) during the warm-up and timed steps, beyond the inputs and the metric
states. The floor is
``x.T @ y`` in float32 with the same shapes, which is the least any exact
single-pass method must do. The error column compares the metric's table with
a float64 two-pass reference on the first units of each side.

Usage:
    python benchmarks/bench_update.py            # num_x=1000, num_y=4000, N=50000
    python benchmarks/bench_update.py --quick    # num_x=200, num_y=800, N=10000
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

# Make the package importable when the script runs from a source checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

Variant = Literal["floor", "update_float32", "update_float16", "update_float64"]

VARIANT_LABELS: dict[str, str] = {
    "floor": "float32 `x.T @ y` (floor)",
    "update_float32": "`update`, float32 inputs",
    "update_float16": "`update`, float16 inputs",
    "update_float64": "`update`, float64 inputs",
}

# Units per side compared with the float64 reference, to bound its memory.
REFERENCE_UNITS = 256


@dataclass(frozen=True)
class Config:
    num_x: int
    num_y: int
    rows: int
    steps: int
    device: str


@dataclass(frozen=True)
class Result:
    seconds_per_step: float
    peak_extra_mib: float
    max_error: float | None


def make_inputs(config: Config, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Activation-like inputs: offset units, half of them correlated across sides."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(config.rows, config.num_x, generator=generator)
    y = torch.randn(config.rows, config.num_y, generator=generator)
    shared = min(config.num_x, config.num_y) // 2
    y[:, :shared] += x[:, :shared]
    x = x + 10
    y = y * 1e-3
    return x.to(config.device, dtype), y.to(config.device, dtype)


def reference_error(table: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    """Max |table - float64 two-pass Pearson| over the first REFERENCE_UNITS units per side."""
    x64 = x[:, :REFERENCE_UNITS].double().cpu()
    y64 = y[:, :REFERENCE_UNITS].double().cpu()
    centred_x = x64 - x64.mean(dim=0)
    centred_y = y64 - y64.mean(dim=0)
    norms = torch.outer(centred_x.square().sum(dim=0), centred_y.square().sum(dim=0)).sqrt()
    expected = centred_x.T @ centred_y / norms
    block = table[:REFERENCE_UNITS, :REFERENCE_UNITS].cpu()
    return float((block - expected).abs().nan_to_num(nan=float("inf")).max())


def resident_set_bytes() -> int:
    """Return the current resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * resource.getpagesize()


class PeakMemorySampler:
    """Track peak memory from now on: torch's allocator on CUDA, sampled RSS on CPU.

    The CPU peak is sampled every millisecond by a thread, so a peak shorter
    than that can be missed.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, resident_set_bytes())
            time.sleep(0.001)

    def __enter__(self) -> PeakMemorySampler:
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
        else:
            self.baseline = resident_set_bytes()
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.device.startswith("cuda"):
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()

    @property
    def peak_extra_bytes(self) -> int:
        return max(self.peak - self.baseline, 0)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def run_variant(variant: Variant, config: Config) -> Result:
    """Time one variant in the current process."""
    from rosetta_pl.metrics import PairwiseCorrelation

    dtype = {
        "floor": torch.float32,
        "update_float32": torch.float32,
        "update_float16": torch.float16,
        "update_float64": torch.float64,
    }[variant]
    x, y = make_inputs(config, dtype)
    metric = PairwiseCorrelation(config.num_x, config.num_y).to(config.device)

    def step() -> None:
        if variant == "floor":
            x.T @ y
        else:
            metric.update(x, y)

    # The warm-up step runs inside the sampler because it makes the first
    # allocations, which the C allocator may keep and reuse in later steps.
    with PeakMemorySampler(config.device) as memory:
        step()
        synchronize(config.device)
        start = time.perf_counter()
        for _ in range(config.steps):
            step()
        synchronize(config.device)
        elapsed = time.perf_counter() - start

    peak_extra = memory.peak_extra_bytes
    error = None if variant == "floor" else reference_error(metric.compute(), x, y)
    return Result(elapsed / config.steps, peak_extra / 2**20, error)


def run_in_fresh_process(variant: Variant, config: Config) -> Result:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
        return executor.submit(run_variant, variant, config).result()


def format_table(config: Config, results: dict[str, Result]) -> str:
    floor = results["floor"].seconds_per_step
    lines = [
        f"num_x={config.num_x}, num_y={config.num_y}, N={config.rows} rows per step, "
        f"{config.steps} timed steps, device={config.device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        "",
        "| variant | s / step | x floor | peak extra memory (MiB) | max abs error |",
        "|---|---:|---:|---:|---:|",
    ]
    for variant, result in results.items():
        error = "-" if result.max_error is None else f"{result.max_error:.1e}"
        lines.append(
            f"| {VARIANT_LABELS[variant]} | {result.seconds_per_step:.3f} "
            f"| {result.seconds_per_step / floor:.2f} | {result.peak_extra_mib:.0f} | {error} |"
        )
    state_mib = 8 * (config.num_x * config.num_y + 2 * (config.num_x + config.num_y) + 1) / 2**20
    lines += [
        "",
        f"Metric state: {state_mib:.1f} MiB of float64, independent of N. "
        "Peak extra memory is the growth beyond the inputs and the states "
        "(CPU: of the resident set size sampled every millisecond, GPU: of torch's allocator).",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="use num_x=200, num_y=800, N=10000")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (default 3)")
    parser.add_argument("--device", default="cpu", help="torch device to run on, for example cpu or cuda:0")
    parser.add_argument("--float64", action="store_true", help="also time update with float64 inputs")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.quick:
        config = Config(200, 800, 10_000, args.steps, args.device)
    else:
        config = Config(1000, 4000, 50_000, args.steps, args.device)

    variants: list[Variant] = ["floor", "update_float32", "update_float16"]
    if args.float64:
        variants.append("update_float64")
    results = {variant: run_in_fresh_process(variant, config) for variant in variants}
    print(format_table(config, results))


if __name__ == "__main__":
    main(sys.argv[1:])
