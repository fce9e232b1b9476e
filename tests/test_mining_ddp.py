"""Two-process CPU mining (gloo) through the real command line, against one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run_cli(root: Path, devices: int, *extra: str) -> Path:
    """Mine 100 samples (uneven over 2 processes of 16) in a subprocess; return the newest run folder."""
    command = [
        sys.executable, "-m", "rosetta_pl", "fit",
        "--config", str(ROOT / "configs" / "mine.yaml"),
        "--trainer.accelerator", "cpu",
        "--trainer.devices", str(devices),
        "--trainer.strategy", "rosetta_ddp",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(root),
        "--trainer.callbacks.init_args.every_n_train_steps", "1",
        "--data.init_args.num_samples", "100",
        "--data.init_args.batch_size", "16",
        *extra,
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    versions = sorted((root / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return versions[-1]


def max_difference(first: Path, second: Path) -> float:
    a = load_file(str(first / "tables.safetensors"))
    b = load_file(str(second / "tables.safetensors"))
    assert a.keys() == b.keys()
    return max((a[name] - b[name]).abs().nan_to_num().max().item() for name in a)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    return run_cli(tmp_path_factory.mktemp("single"), 1)


def test_two_processes_equal_one(tmp_path, single):
    double = run_cli(tmp_path, 2)
    assert json.loads((double / "dictionary.json").read_text())["data"]["samples_seen"] == 100
    assert max_difference(single, double) <= 1e-10


def test_two_process_resume_equals_full_run(tmp_path, single):
    # 100 samples over 2 x 16 per step take 4 steps; stop after 2.
    stopped = run_cli(tmp_path, 2, "--trainer.max_steps", "2")
    assert json.loads((stopped / "dictionary.json").read_text())["data"]["samples_seen"] == 64
    resumed = run_cli(tmp_path, 2, "--ckpt_path", str(stopped / "checkpoints" / "last.ckpt"))
    assert max_difference(single, resumed) <= 1e-12


@pytest.mark.parametrize(("stopped_on", "resumed_on"), [(1, 2), (2, 1)])
def test_resume_on_other_process_count(tmp_path, single, stopped_on, resumed_on):
    stopped = run_cli(tmp_path, stopped_on, "--trainer.max_steps", "2")
    resumed = run_cli(tmp_path, resumed_on, "--ckpt_path", str(stopped / "checkpoints" / "last.ckpt"))
    assert json.loads((resumed / "dictionary.json").read_text())["data"]["samples_seen"] == 100
    assert max_difference(single, resumed) <= 1e-12
