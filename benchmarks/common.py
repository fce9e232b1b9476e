"""Helpers shared by the mining benchmarks: zoo setup, timing, memory and tables.

The scripts import this file as ``common`` when they run from ``benchmarks/``,
and Lightning finds :class:`FitTimer` as ``benchmarks.common.FitTimer`` when
the repository root is on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rosetta_pl import zoo  # noqa: E402
from rosetta_pl.zoo.base import Generator, UnitModel  # noqa: E402

# Short names of the mining config's discriminative models.
MODEL_NAMES: dict[str, str] = {"onet": "mtcnn_onet", "rnet": "mtcnn_rnet", "pnet": "mtcnn_pnet"}
GENERATOR_NAME = "face_dcgan"

Result = TypeVar("Result")


def build_networks(models: Sequence[str]) -> tuple[Generator, dict[str, UnitModel]]:
    """Build the face DCGAN and the named MTCNN networks with their packaged weights."""
    unknown = [name for name in models if name not in MODEL_NAMES]
    if unknown:
        raise ValueError(f"unknown models {unknown}; choose from {sorted(MODEL_NAMES)}")
    generator = zoo.build(GENERATOR_NAME)
    networks = {name: zoo.build(MODEL_NAMES[name]) for name in models}
    return generator, networks  # type: ignore[return-value]


def latent_batches(generator: Generator, num_samples: int, batch_size: int, seed: int = 0) -> list[torch.Tensor]:
    """Return the latents of samples 0 .. num_samples - 1 in batches, as one mining process receives them."""
    indices = torch.arange(num_samples)
    return [generator.latents(chunk, seed) for chunk in indices.split(batch_size)]


def time_repeats(function: Callable[[], Any], repeats: int) -> list[float]:
    """Run ``function`` ``repeats`` times and return the wall-clock seconds of each run."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return seconds


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def peak_rss_mib() -> float:
    """Return the process's maximum resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_in_fresh_process(function: Callable[..., Result], *args: Any) -> Result:
    """Run ``function(*args)`` in a new spawned process, so its peak memory starts from zero."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
        return executor.submit(function, *args).result()


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Format a markdown table; the first column is left-aligned and the rest right-aligned."""
    alignment = ["---"] + ["---:"] * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(alignment) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line() -> str:
    """Describe the machine, torch build and load average of this run in one line."""
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"load average {load} at the start"
    )


def float32_product(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return x.T @ y in float32 at full precision, as the metric's co-moment product."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        return x.T @ y
    finally:
        torch.set_float32_matmul_precision(previous)


class FitTimer(Callback):
    """Record on rank zero when fitting and the training loop start and end, and the peak memory.

    The times are ``time.perf_counter()`` seconds relative to ``on_fit_start``:
    ``loop_seconds`` spans the training steps, ``fit_seconds`` also contains the
    end of training (merging the tables, buddies and clusters, writing outputs).
    ``peak_rss_first_step_mib``, ``peak_rss_loop_end_mib`` and ``peak_rss_end_mib`` are the maximum resident
    set size of the process after the first step, at the end of the loop and at the end
    of fitting.

    Args:
        output_path: JSON file that receives the record; ``None`` keeps it in
            :attr:`record` only.
    """

    def __init__(self, output_path: str | None = None) -> None:
        self.output_path = output_path
        self.record: dict[str, float] = {}
        self._start = 0.0

    def _elapsed(self) -> float:
        return time.perf_counter() - self._start

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = time.perf_counter()
        self.record = {}

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.record["loop_start"] = self._elapsed()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if "peak_rss_first_step_mib" not in self.record:
            self.record["peak_rss_first_step_mib"] = peak_rss_mib()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.record["loop_seconds"] = self._elapsed() - self.record["loop_start"]
        self.record["peak_rss_loop_end_mib"] = peak_rss_mib()

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.record["fit_seconds"] = self._elapsed()
        self.record["peak_rss_end_mib"] = peak_rss_mib()
        if self.output_path is not None and trainer.global_rank == 0:
            Path(self.output_path).write_text(json.dumps(self.record))


def mine_in_process(
    models: Sequence[str],
    num_samples: int,
    batch_size: int,
    grid_size: int,
    root_dir: str,
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Run the mining of ``configs/mine.yaml`` in this process with one CPU device.

    Progress bar, logger, checkpoints and the neuron-grid callback are off, so
    the loop time is the mining work itself.

    Returns:
        The :class:`FitTimer` record and the (Ug, Ud) float64 table of each model.
    """
    from rosetta_pl.data import LatentIndexDataModule
    from rosetta_pl.mining import GeneratorSpec, MiningModule, ModelSpec

    # Keep the benchmark tables readable: no per-run summaries or Lightning banners.
    for name in ("lightning.pytorch", "rosetta_pl"):
        logging.getLogger(name).setLevel(logging.WARNING)

    module = MiningModule(
        generator=GeneratorSpec(GENERATOR_NAME),
        models={name: ModelSpec(MODEL_NAMES[name]) for name in models},
        grid_size=grid_size,
    )
    data = LatentIndexDataModule(num_samples=num_samples, batch_size=batch_size, seed=0)
    timer = FitTimer()
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        default_root_dir=root_dir,
    )
    trainer.fit(module, datamodule=data)
    tables = {name: metric.compute() for name, metric in module.correlations.items()}
    return timer.record, tables
