"""Time mining with 1 and 2 DDP processes on the CPU through the command line.

Each run is ``python -m rosetta_pl fit --config configs/mine.yaml`` with
``--trainer.accelerator cpu --trainer.strategy rosetta_ddp`` and 1 or 2
devices on the same samples, its log folder under a temporary folder. The
script times the whole command (interpreter start, imports, model building,
process group, mining, outputs) and, through a :class:`common.FitTimer`
callback added on the command line, the fit and its training loop on rank zero.
It also reports the largest difference between the tables of the two runs.
The run keeps the config's callbacks (neuron grid, checkpoints).

Usage:
    python benchmarks/bench_ddp.py            # 512 samples, batch 64, 3 runs per process count
    python benchmarks/bench_ddp.py --quick    # 16 samples, batch 8, one run each
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, machine_line, markdown_table, median  # noqa: E402

from rosetta_pl.io import TABLES_FILE, load_tables  # noqa: E402


def mining_command(devices: int, num_samples: int, batch_size: int, root_dir: Path, timer_path: Path) -> list[str]:
    """Return the command line of one mining run with the FitTimer callback appended."""
    return [
        sys.executable, "-m", "rosetta_pl", "fit",
        "--config", str(ROOT / "configs" / "mine.yaml"),
        "--trainer.devices", str(devices),
        "--trainer.accelerator", "cpu",
        "--trainer.strategy", "rosetta_ddp",
        "--trainer.default_root_dir", str(root_dir),
        "--trainer.enable_progress_bar", "false",
        "--data.num_samples", str(num_samples),
        "--data.batch_size", str(batch_size),
        "--trainer.callbacks+=benchmarks.common.FitTimer",
        f"--trainer.callbacks.output_path={timer_path}",
    ]  # fmt: skip


def run_mining(devices: int, num_samples: int, batch_size: int, work_dir: Path) -> tuple[float, dict[str, float], Path]:
    """Run the command once and return its wall-clock seconds, the FitTimer record and the run folder."""
    root_dir = Path(tempfile.mkdtemp(prefix=f"devices{devices}_", dir=work_dir))
    timer_path = root_dir / "fit_timer.json"
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    command = mining_command(devices, num_samples, batch_size, root_dir, timer_path)

    start = time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(
            f"mining with {devices} devices failed with exit code {completed.returncode}:\n"
            f"{' '.join(command)}\n{completed.stderr[-4000:]}"
        )

    tables = sorted(root_dir.rglob(TABLES_FILE))
    if not tables:
        raise RuntimeError(f"mining with {devices} devices wrote no {TABLES_FILE} under {root_dir}")
    return seconds, json.loads(timer_path.read_text()), tables[0].parent


def max_table_difference(first_run: Path, second_run: Path) -> float:
    first = load_tables(first_run)
    second = load_tables(second_run)
    return max(float((first[name] - second[name]).nan_to_num().abs().max()) for name in first)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 samples in batches of 8, one run each")
    parser.add_argument("--num-samples", type=int, default=512, help="generated images over all processes")
    parser.add_argument("--batch-size", type=int, default=64, help="images per process and step (default 64)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per process count; the median is reported")
    args = parser.parse_args(argv)
    if args.quick:
        args.num_samples, args.batch_size, args.repeats = 16, 8, 1
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    print(machine_line())
    rows = []
    runs: dict[int, Path] = {}
    baseline: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench_ddp_") as work_dir:
        for devices in (1, 2):
            results = [
                run_mining(devices, args.num_samples, args.batch_size, Path(work_dir)) for _ in range(args.repeats)
            ]
            command = median([seconds for seconds, _, _ in results])
            fit = median([record["fit_seconds"] for _, record, _ in results])
            loop = median([record["loop_seconds"] for _, record, _ in results])
            runs[devices] = results[0][2]
            if devices == 1:
                baseline = {"command": command, "fit": fit, "loop": loop}
            rows.append(
                [
                    str(devices),
                    f"{command:.1f}",
                    f"{fit:.1f}",
                    f"{loop:.1f}",
                    f"{baseline['command'] / command:.2f}",
                    f"{baseline['fit'] / fit:.2f}",
                    f"{baseline['loop'] / loop:.2f}",
                ]
            )
        difference = max_table_difference(runs[1], runs[2])

    print(
        f"{args.num_samples} samples, batches of {args.batch_size} per process, "
        f"median of {args.repeats} runs per process count"
    )
    print()
    headers = [
        "processes",
        "whole command (s)",
        "fit (s)",
        "training loop (s)",
        "speed-up, command",
        "speed-up, fit",
        "speed-up, loop",
    ]
    print(markdown_table(headers, rows))
    print()
    print(f"max |table with 1 process - table with 2 processes| = {difference:.1e}")


if __name__ == "__main__":
    main(sys.argv[1:])
