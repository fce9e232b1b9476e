"""Mining end to end through the command line, on the real face DCGAN and MTCNN networks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rosetta_pl import zoo
from rosetta_pl.cli import main
from rosetta_pl.maps import stack_units, to_observations

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "mine.yaml")


def mine(root: Path, *extra: str) -> Path:
    """Run the default mining config on a few samples in this process; return the run folder."""
    args = [
        "fit",
        "--config", CONFIG,
        "--trainer.strategy", "auto",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(root),
        "--data.init_args.num_samples", "72",
        "--data.init_args.batch_size", "32",
        *extra,
    ]
    cli = main(args)
    return Path(cli.trainer.log_dir)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return mine(tmp_path_factory.mktemp("mine"))


def reference_tables(dictionary: dict) -> dict[str, np.ndarray]:
    """Recompute every table from the same latents in float64 with numpy."""
    grid = tuple(dictionary["grid"]["size"])
    mode = dictionary["grid"]["mode"]
    generator = zoo.build(dictionary["generator"]["name"])
    indices = torch.arange(dictionary["data"]["num_samples"])
    latents = generator.latents(indices, dictionary["data"]["seed"])
    with torch.no_grad():
        images, maps = generator.generate(latents, return_maps=True)
    x = to_observations(stack_units(maps, generator.layers, grid, mode)).double().numpy()
    tables = {}
    for name, record in dictionary["models"].items():
        model = zoo.build(record["name"])
        y = to_observations(stack_units(model.unit_maps(images), model.layers, grid, mode)).double().numpy()
        xc, yc = x - x.mean(0), y - y.mean(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            tables[name] = (xc.T @ yc) / np.outer(np.sqrt((xc**2).sum(0)), np.sqrt((yc**2).sum(0)))
    return tables


def test_outputs_written(run_dir):
    for name in ("tables.safetensors", "stats.safetensors", "dictionary.json", "config.yaml", "neuron_grid.png"):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.glob(".*.tmp"))


def test_dictionary_schema(run_dir):
    dictionary = json.loads((run_dir / "dictionary.json").read_text())
    assert dictionary["format"] == "rosetta_pl.dictionary/1"
    assert dictionary["generator"]["num_units"] == 963
    assert dictionary["generator"]["weights_sha256"]
    assert set(dictionary["models"]) == {"onet", "rnet", "pnet"}
    assert dictionary["data"] == {"num_samples": 72, "seed": 0, "samples_seen": 72}
    assert dictionary["grid"] == {"size": [8, 8], "mode": "area"}
    pair = dictionary["buddies"]["onet"][0]
    assert set(pair) == {"generator", "model", "r"}
    assert set(pair["model"]) == {"unit", "layer", "channel"}
    rs = [p["r"] for p in dictionary["buddies"]["onet"]]
    assert rs == sorted(rs, reverse=True)
    for neuron in dictionary["rosetta"]["neurons"]:
        assert set(neuron["partners"]) == {"onet", "rnet", "pnet"}


def test_clusters_cover_rosetta_neurons(run_dir):
    dictionary = json.loads((run_dir / "dictionary.json").read_text())
    rosetta = dictionary["rosetta"]["neurons"] or dictionary["rosetta_relaxed"]["neurons"]
    units = sorted(neuron["generator"]["unit"] for neuron in rosetta)
    clustered = sorted(unit for cluster in dictionary["clusters"] for unit in cluster["generator_units"])
    assert units
    assert clustered == units
    if dictionary["rosetta"]["neurons"]:
        labels = {neuron["cluster"] for neuron in dictionary["rosetta"]["neurons"]}
        assert labels == {cluster["id"] for cluster in dictionary["clusters"]}


def test_tables_match_float64_reference(run_dir):
    dictionary = json.loads((run_dir / "dictionary.json").read_text())
    tables = load_file(str(run_dir / "tables.safetensors"))
    expected = reference_tables(dictionary)
    for name, table in tables.items():
        assert table.dtype == torch.float64
        got = table.numpy()
        assert got.shape == expected[name].shape
        assert np.array_equal(np.isnan(got), np.isnan(expected[name])), name
        assert np.nanmax(np.abs(got - expected[name])) <= 1e-6, name


def test_stats_hold_counts_means_stds(run_dir):
    stats = load_file(str(run_dir / "stats.safetensors"))
    assert stats["count"].item() == 72 * 8 * 8
    assert stats["generator.mean"].shape == (963,)
    assert stats["onet.std"].shape == (576,)
    assert all(value.dtype == torch.float64 for value in stats.values())


def test_tensorboard_has_neuron_grid(run_dir):
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    assert "rosetta/neuron_grid" in events.Tags()["images"]
    assert "rosetta/strict" in events.Tags()["scalars"]


def test_stop_and_resume_equals_full_run(tmp_path, run_dir):
    # 72 samples in batches of 32 take 3 steps; stop after 1, then resume.
    every_step = ["--trainer.callbacks.init_args.every_n_train_steps", "1"]
    stopped = mine(tmp_path, "--trainer.max_steps", "1", *every_step)
    assert json.loads((stopped / "dictionary.json").read_text())["data"]["samples_seen"] == 32
    resumed = mine(tmp_path, "--ckpt_path", str(stopped / "checkpoints" / "last.ckpt"), *every_step)
    full = load_file(str(run_dir / "tables.safetensors"))
    again = load_file(str(resumed / "tables.safetensors"))
    for name in full:
        difference = (full[name] - again[name]).abs().nan_to_num()
        assert difference.max().item() <= 1e-12, name


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--model.init_args.models.onet.name", "mtcnn_onett"], "mtcnn_onet"),
        (["--model.init_args.models.onet.layers", "[prelu9]"], "prelu9"),
        (["--model.init_args.grid_size", "0"], "grid_size must be a positive integer"),
        (["--model.init_args.generator.truncation", "1.5"], r"truncation must lie in \(0, 1\]"),
    ],
)
def test_bad_model_input_is_rejected(tmp_path, capsys, override, message):
    with pytest.raises(SystemExit) as raised:
        mine(tmp_path, *override)
    assert raised.value.code == 2
    error = capsys.readouterr().err
    assert re.search("^error: .*" + message, error, re.MULTILINE), error
    assert "Traceback" not in error
    assert not list(tmp_path.rglob("*.safetensors"))


def test_debug_variable_shows_original_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ROSETTA_DEBUG", "1")
    with pytest.raises(ValueError, match="grid_size must be a positive integer"):
        mine(tmp_path, "--model.init_args.grid_size", "0")


@pytest.mark.parametrize("value", ["0", "-3", "abc", "2.5"])
def test_bad_sample_count_is_rejected(tmp_path, capsys, value):
    with pytest.raises(SystemExit):
        mine(tmp_path, "--data.init_args.num_samples", value)
    error = capsys.readouterr().err
    assert "num_samples" in error
    assert "usage:" not in error  # the option list would bury the message
    assert not list(tmp_path.rglob("*.safetensors"))


def test_more_than_one_epoch_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="max_epochs: 1"):
        mine(tmp_path, "--trainer.max_epochs", "2")


@pytest.mark.slow
def test_default_config_finds_strong_pairs(tmp_path):
    cli = main(
        ["fit", "--config", CONFIG, "--trainer.strategy", "auto", "--trainer.accelerator", "cpu",
         "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path)]
    )
    dictionary = json.loads((Path(cli.trainer.log_dir) / "dictionary.json").read_text())
    strong = sum(1 for records in dictionary["buddies"].values() for record in records if record["r"] > 0.5)
    assert strong >= 20
    assert len(dictionary["rosetta"]["neurons"]) >= 1
