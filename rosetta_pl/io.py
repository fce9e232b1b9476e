"""Run-folder files: atomic writes and the mining outputs that inversion reads.

A mining run writes three files into its log folder:

- ``tables.safetensors``: one (Ug, Ud) float64 Pearson table per discriminative
  model, keyed by the model's name in the config;
- ``stats.safetensors``: ``count`` (scalar), ``generator.mean`` and
  ``generator.std`` (Ug,), and ``<model>.mean`` / ``<model>.std`` (Ud,) for
  every model, all float64; stds are population stds over images and grid cells;
- ``dictionary.json``: the schema in ``DICTIONARY_FORMAT`` and the README.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

DICTIONARY_FORMAT = "rosetta_pl.dictionary/1"
TABLES_FILE = "tables.safetensors"
STATS_FILE = "stats.safetensors"
DICTIONARY_FILE = "dictionary.json"


def replace_atomically(path: Path, write: Any) -> None:
    """Call ``write(temporary_path)``, then rename the temporary file onto ``path``.

    The temporary file lies in the same folder, so the rename is atomic and a
    reader never sees a half-written file. It is removed if ``write`` fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        # mkstemp creates the file readable by its owner only; give it the usual mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json_atomic(data: Any, path: str | os.PathLike) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""

    def write(temporary: str) -> None:
        with open(temporary, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, allow_nan=False)
            stream.write("\n")

    replace_atomically(Path(path), write)


def write_tensors_atomic(tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Write a dict of tensors as safetensors to ``path`` atomically (tensors moved to CPU)."""
    contiguous = {key: value.detach().cpu().contiguous() for key, value in tensors.items()}
    replace_atomically(Path(path), lambda temporary: save_file(contiguous, temporary))


def resolve_run_dir(path: str | os.PathLike) -> Path:
    """Return the mining run folder that ``path`` names.

    ``path`` is either a run folder (it contains ``dictionary.json``) or a folder
    above run folders, such as a ``--trainer.default_root_dir``: then the run of
    the highest ``version_N`` below it, directly or under ``lightning_logs/``, that
    has a ``dictionary.json`` is taken.
    """
    path = Path(path)
    if (path / DICTIONARY_FILE).is_file():
        return path
    runs = [run.parent for run in path.glob(f"version_*/{DICTIONARY_FILE}")]
    runs += [run.parent for run in path.glob(f"lightning_logs/version_*/{DICTIONARY_FILE}")]
    numbered = [run for run in runs if run.name.removeprefix("version_").isdigit()]
    if not numbered:
        return path
    return max(numbered, key=lambda run: int(run.name.removeprefix("version_")))


def _require_file(run_dir: Path, name: str) -> Path:
    path = resolve_run_dir(run_dir) / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: expected the folder of a finished mining run "
            f"(it holds {DICTIONARY_FILE}, {TABLES_FILE} and {STATS_FILE}); "
            "fix the path, or mine first on the grid the inversion expects and point mining_dir to "
            "that run, e.g. `python -m rosetta_pl fit --config configs/mine.yaml "
            "--model.init_args.grid_size 16 --trainer.default_root_dir runs/mine16`, then "
            "`--model.init_args.mining_dir runs/mine16`"
        )
    return path


def load_dictionary(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``dictionary.json`` of a mining run folder."""
    path = _require_file(Path(run_dir), DICTIONARY_FILE)
    with open(path, encoding="utf-8") as stream:
        dictionary = json.load(stream)
    found = dictionary.get("format")
    if found != DICTIONARY_FORMAT:
        raise ValueError(f"{path} has format {found!r}, expected {DICTIONARY_FORMAT!r}")
    return dictionary


def load_tables(run_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read ``tables.safetensors``: model name -> (Ug, Ud) float64 table."""
    return load_file(str(_require_file(Path(run_dir), TABLES_FILE)))


def load_stats(run_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read ``stats.safetensors``: count, per-unit means and stds (float64)."""
    return load_file(str(_require_file(Path(run_dir), STATS_FILE)))
