"""Smoke tests of the mining benchmarks: each script runs with --quick and prints a table.

Speed is not checked here; the scripts print it. Each script takes 30 to 90 s
on 2 busy CPU cores, so all are marked slow.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_quick(script: str) -> str:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed.stdout


@pytest.mark.slow
def test_bench_mining_quick_prints_table() -> None:
    output = run_quick("bench_mining.py")
    assert "| step | seconds | x forward | x limit |" in output
    assert "| reference method, both passes" in output
    assert "rosetta_pl training loop / limit:" in output


@pytest.mark.slow
def test_bench_scaling_quick_prints_tables() -> None:
    output = run_quick("bench_scaling.py")
    assert "| samples | loop seconds |" in output
    assert "| Ug x Ud | update seconds |" in output
    assert "| 200 x 200 |" in output


@pytest.mark.slow
def test_bench_ddp_quick_prints_table() -> None:
    output = run_quick("bench_ddp.py")
    assert "| processes | whole command (s) |" in output
    assert "| 2 |" in output
    assert "max |table with 1 process - table with 2 processes|" in output
