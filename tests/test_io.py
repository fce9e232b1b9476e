import json
import math

import pytest
import torch
from safetensors.torch import load_file

from rosetta_pl.io import load_dictionary, resolve_run_dir, write_json_atomic, write_tensors_atomic


def test_json_write_failure_keeps_old_file(tmp_path):
    path = tmp_path / "dictionary.json"
    write_json_atomic({"format": "old"}, path)
    with pytest.raises(ValueError):
        write_json_atomic({"format": "new", "r": math.nan}, path)  # NaN is not valid JSON
    assert json.loads(path.read_text()) == {"format": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["dictionary.json"]


def test_tensor_write_failure_leaves_no_file(tmp_path):
    path = tmp_path / "tables.safetensors"
    shared = torch.zeros(4)
    # safetensors rejects tensors that share memory, after the temporary file exists.
    with pytest.raises(RuntimeError, match="share memory"):
        write_tensors_atomic({"a": shared, "b": shared[:2]}, path)
    assert list(tmp_path.iterdir()) == []


def test_tensor_write_roundtrip(tmp_path):
    path = tmp_path / "stats.safetensors"
    write_tensors_atomic({"count": torch.tensor(3.0, dtype=torch.float64)}, path)
    assert load_file(str(path))["count"].item() == 3.0
    assert path.stat().st_mode & 0o044  # readable by others, like an ordinary file


def test_missing_run_folder_names_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="dictionary.json not found.*configs/mine.yaml"):
        load_dictionary(tmp_path)


def test_wrong_format_is_rejected(tmp_path):
    write_json_atomic({"format": "something/else"}, tmp_path / "dictionary.json")
    with pytest.raises(ValueError, match="format 'something/else'"):
        load_dictionary(tmp_path)


def test_run_folder_found_below_root(tmp_path):
    for version in (0, 2, 10):
        run = tmp_path / "lightning_logs" / f"version_{version}"
        write_json_atomic({"format": "rosetta_pl.dictionary/1", "version": version}, run / "dictionary.json")
    (tmp_path / "lightning_logs" / "version_11").mkdir()  # a run that has not finished
    assert resolve_run_dir(tmp_path) == tmp_path / "lightning_logs" / "version_10"
    assert load_dictionary(tmp_path)["version"] == 10
    assert resolve_run_dir(tmp_path / "lightning_logs" / "version_2").name == "version_2"
