"""Tests of InversionModule and TranslationMetrics on the real face DCGAN and MTCNN networks.

A small mining run (64 samples, 8x8 grid, ONet and RNet) made once per session
through the command line supplies the dictionary and statistics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer

from rosetta_pl.callbacks import TranslationMetrics
from rosetta_pl.callbacks.translation import lpips_weights_available
from rosetta_pl.edits import CopyPaste, Shift
from rosetta_pl.inversion import InversionModule, collect_pairs
from rosetta_pl.io import load_dictionary, load_stats
from rosetta_pl.maps import stack_units
from rosetta_pl.targets import TargetDataModule, load_targets

ROOT = Path(__file__).resolve().parents[1]
FACES = ["astronaut_face", "lfw_subset/0"]


def _mine(folder: Path, num_samples: int, grid_size: int) -> Path:
    command = [
        sys.executable, "-m", "rosetta_pl", "fit", "--config", str(ROOT / "configs" / "mine.yaml"),
        "--trainer.default_root_dir", str(folder),
        "--trainer.callbacks=[]", "--trainer.enable_checkpointing", "false",
        "--trainer.enable_progress_bar", "false",
        "--model.init_args.grid_size", str(grid_size),
        "--model.init_args.models", "{onet: {name: mtcnn_onet}, rnet: {name: mtcnn_rnet}}",
        "--data.init_args.num_samples", str(num_samples), "--data.init_args.batch_size", "32",
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(command, check=True, cwd=ROOT, env=environment, capture_output=True)
    return folder / "lightning_logs" / "version_0"


@pytest.fixture(scope="session")
def mining_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _mine(tmp_path_factory.mktemp("mine"), num_samples=64, grid_size=8)


@pytest.fixture(scope="session")
def face_batch() -> dict[str, torch.Tensor]:
    targets = load_targets("skimage", names=FACES, size=64, channels=3)
    return {"index": torch.arange(len(FACES)), "image": targets.images, "label": targets.labels}


def _float64_correlation(module: InversionModule, latent: torch.Tensor, images: torch.Tensor):
    """Recompute the matched-map correlation in float64 from the run files, per target."""
    dictionary = load_dictionary(module.mining_dir)
    stats = {key: value.double() for key, value in load_stats(module.mining_dir).items()}
    grid = tuple(dictionary["grid"]["size"])
    with torch.no_grad():
        _, generator_maps = module.generator.generate(latent, return_maps=True)
    generator = stack_units(generator_maps, module.generator.layers, grid).double()
    generator = (generator - stats["generator.mean"].view(1, -1, 1, 1)) / stats["generator.std"].view(1, -1, 1, 1)
    cosines = []
    for name in module.model_names:
        network = module.models[name]
        maps = stack_units(network.unit_maps(images), network.layers, grid).double()
        maps = (maps - stats[f"{name}.mean"].view(1, -1, 1, 1)) / stats[f"{name}.std"].view(1, -1, 1, 1)
        for entry in dictionary["buddies"][name]:
            if entry["r"] <= 0:
                continue
            a = generator[:, entry["generator"]["unit"]].flatten(1).numpy()
            b = maps[:, entry["model"]["unit"]].flatten(1).numpy()
            cosines.append((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))
    return np.mean(cosines, axis=0)


def test_inversion_raises_correlation(mining_dir: Path, face_batch) -> None:
    module = InversionModule(str(mining_dir), steps=15, start="random", seed=3)
    results = module.invert_batch(face_batch)

    assert [entry["index"] for entry in results] == [0, 1]
    assert results[0]["result"].shape == (3, 64, 64)
    for entry in results:
        assert entry["correlation_end"] > entry["correlation_start"] + 0.05
    latents = torch.stack([entry["latent"] for entry in results])
    reference = _float64_correlation(module, latents, face_batch["image"])
    measured = np.array([entry["correlation_end"] for entry in results])
    np.testing.assert_allclose(measured, reference, atol=1e-4)
    with torch.no_grad():
        regenerated = module.generator.generate(latents)
    torch.testing.assert_close(torch.stack([e["result"] for e in results]), regenerated)


def test_start_latent_seeded_by_index(mining_dir: Path, face_batch) -> None:
    module = InversionModule(str(mining_dir), steps=1, start="random", seed=5)
    reversed_batch = {key: value.flip(0) for key, value in face_batch.items()}
    results = module.invert_batch(reversed_batch)
    expected = module.generator.latents(torch.tensor([1, 0]), seed=5)
    torch.testing.assert_close(torch.stack([e["start_latent"] for e in results]), expected)


def test_best_of_start_beats_random(mining_dir: Path, face_batch) -> None:
    best = InversionModule(str(mining_dir), steps=1, start="best_of", num_candidates=8, seed=0)
    chosen = best._start_latents(
        face_batch,
        face_batch["index"],
        best._to_generator_pixels(face_batch["image"]),
        best._target_pair_maps(face_batch["image"]),
    )
    candidates = best.generator.latents(torch.arange(8), seed=0)
    assert any(torch.equal(chosen[0], row) for row in candidates)


def test_pixel_loss_improves_psnr(mining_dir: Path, face_batch) -> None:
    from torchmetrics.functional.image import peak_signal_noise_ratio

    module = InversionModule(str(mining_dir), steps=15, start="random", pixel_weight=100.0)
    for entry in module.invert_batch(face_batch):
        start = peak_signal_noise_ratio(entry["start_image"], entry["target"], data_range=1.0)
        end = peak_signal_noise_ratio(entry["result"], entry["target"], data_range=1.0)
        assert end > start + 1.0


def test_rejects_bad_configuration(mining_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"made with generator 'face_dcgan'.*'mnist_dcgan'"):
        InversionModule(str(mining_dir), generator="mnist_dcgan")
    with pytest.raises(ValueError, match=r"used the grid 8x8, but this inversion is configured for 16x16"):
        InversionModule(str(mining_dir), grid_size=16)
    with pytest.raises(ValueError, match=r"steps=0 is invalid"):
        InversionModule(str(mining_dir), steps=0)
    with pytest.raises(ValueError, match=r"models \['pnet'\] are invalid"):
        InversionModule(str(mining_dir), models=["pnet"])
    with pytest.raises(ValueError, match=r"pixel_weight=1.0 with edit Shift"):
        InversionModule(str(mining_dir), pixel_weight=1.0, edit=Shift(dx=0.25))
    with pytest.raises(ValueError, match=r"no buddies pair with r > 2.0"):
        InversionModule(str(mining_dir), min_r=2.0)
    with pytest.raises(ValueError, match=r"optimize_class=False needs a class-conditional generator"):
        InversionModule(str(mining_dir), optimize_class=False)
    with pytest.raises(FileNotFoundError, match=r"dictionary.json not found"):
        InversionModule(str(mining_dir / "missing"))


def test_rejects_bad_targets(mining_dir: Path, face_batch) -> None:
    module = InversionModule(str(mining_dir), steps=1, start="random")
    two_channel = {**face_batch, "image": face_batch["image"][:, :2]}
    with pytest.raises(ValueError, match=r"neither RGB nor gray"):
        module.invert_batch(two_channel)
    own = InversionModule(str(mining_dir), steps=1, start="target_latent")
    with pytest.raises(ValueError, match=r"start='target_latent' needs targets with latents"):
        own.invert_batch(face_batch)


def test_fit_requires_one_epoch(mining_dir: Path, tmp_path: Path) -> None:
    module = InversionModule(str(mining_dir), steps=1, start="random")
    data = TargetDataModule(source="skimage", names=FACES[:1], size=64, channels=3)
    trainer = Trainer(accelerator="cpu", devices=1, default_root_dir=tmp_path, max_epochs=2)
    with pytest.raises(ValueError, match=r"trainer.max_epochs is 2, but inversion makes exactly one"):
        trainer.fit(module, datamodule=data)


def test_predict_and_validate_under_inference_mode(mining_dir: Path, tmp_path: Path) -> None:
    module = InversionModule(str(mining_dir), steps=3, start="random")
    data = TargetDataModule(source="skimage", names=FACES, size=64, channels=3, batch_size=1)
    callback = TranslationMetrics(lpips=True)
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        default_root_dir=tmp_path,
        callbacks=[callback],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    predictions = trainer.predict(module, datamodule=data)
    assert [entry["index"] for batch in predictions for entry in batch] == [0, 1]

    trainer.validate(module, datamodule=data)
    metrics = json.loads((Path(trainer.log_dir) / "metrics.json").read_text())
    assert metrics["stage"] == "validate"
    assert metrics["num_targets"] == 2
    assert [row["index"] for row in metrics["per_image"]] == [0, 1]
    assert metrics["mean"]["psnr"] == pytest.approx(np.mean([row["psnr"] for row in metrics["per_image"]]))
    if lpips_weights_available():
        assert "lpips" in metrics["mean"]
    else:
        assert metrics["lpips"].startswith("skipped")
        assert "lpips" not in metrics["mean"]
    assert (Path(trainer.log_dir) / "translation_validate.png").is_file()
    assert (Path(trainer.log_dir) / "inversion.safetensors").is_file()


@pytest.mark.slow
def test_two_processes_match_one(mining_dir: Path, tmp_path: Path) -> None:
    """Eight generator samples inverted by two processes give the one-process results."""
    script = tmp_path / "run.py"
    script.write_text(
        "import sys, torch\n"
        "from lightning.pytorch import Trainer\n"
        "import rosetta_pl.strategies\n"
        "from rosetta_pl.callbacks import TranslationMetrics\n"
        "from rosetta_pl.inversion import InversionModule\n"
        "from rosetta_pl.targets import TargetDataModule\n"
        "devices, out = int(sys.argv[1]), sys.argv[2]\n"
        f"module = InversionModule({str(mining_dir)!r}, steps=10, start='best_of',"
        " num_candidates=4)\n"
        "data = TargetDataModule(source='generator', count=8, seed=1000, batch_size=2)\n"
        "trainer = Trainer(accelerator='cpu', devices=devices, strategy='rosetta_ddp',"
        " max_epochs=1, default_root_dir=out, callbacks=[TranslationMetrics(lpips=False)],"
        " enable_progress_bar=False, enable_checkpointing=False, limit_val_batches=0)\n"
        "trainer.fit(module, datamodule=data)\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    for devices in (1, 2):
        subprocess.run(
            [sys.executable, str(script), str(devices), str(tmp_path / f"run{devices}")],
            check=True,
            cwd=ROOT,
            env=environment,
            capture_output=True,
        )
    from safetensors.torch import load_file

    single = load_file(str(tmp_path / "run1/lightning_logs/version_0/inversion.safetensors"))
    double = load_file(str(tmp_path / "run2/lightning_logs/version_0/inversion.safetensors"))
    assert single["index"].tolist() == list(range(8))
    assert double["index"].tolist() == list(range(8))
    torch.testing.assert_close(double["start_latent"], single["start_latent"], atol=0, rtol=0)
    torch.testing.assert_close(double["latent"], single["latent"], atol=1e-5, rtol=0)


def test_copy_paste_reads_source_target(mining_dir: Path, tmp_path: Path) -> None:
    data = TargetDataModule(source="skimage", names=FACES, size=64, channels=3, batch_size=2)
    edit = CopyPaste(source_index=1, region=(0.0, 0.0, 1.0, 1.0))
    module = InversionModule(str(mining_dir), steps=2, start="random", edit=edit)
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    predictions = trainer.predict(module, datamodule=data)
    assert len(predictions[0]) == 2

    # Pasting the whole of target 1 makes every target's maps those of target 1.
    images = data.targets.images
    edited = module._target_pair_maps(images)
    plain = InversionModule(str(mining_dir), steps=1, start="random")._target_pair_maps(images)
    torch.testing.assert_close(edited[0], plain[1])
    torch.testing.assert_close(edited[1], plain[1])
    assert not torch.allclose(plain[0], plain[1])


def test_collect_pairs_union_and_rosetta() -> None:
    def unit(number: int) -> dict:
        return {"unit": number, "layer": "x", "channel": number}

    dictionary = {
        "buddies": {
            "a": [{"generator": unit(1), "model": unit(10), "r": 0.9},
                  {"generator": unit(2), "model": unit(11), "r": -0.1}],
            "b": [{"generator": unit(1), "model": unit(20), "r": 0.5}],
        },
        "rosetta": {"neurons": [
            {"generator": unit(1), "partners": {"a": {**unit(10), "r": 0.9}, "b": {**unit(20), "r": 0.5}}},
        ]},
    }  # fmt: skip
    assert collect_pairs(dictionary, ["a", "b"], "buddies", 0.0) == {"a": ([1], [10]), "b": ([1], [20])}
    assert collect_pairs(dictionary, ["a"], "buddies", -0.5) == {"a": ([1, 2], [10, 11])}
    assert collect_pairs(dictionary, ["b"], "rosetta", 0.0) == {"b": ([1], [20])}
    assert collect_pairs(dictionary, ["a", "b"], "rosetta", 0.6) == {"a": ([1], [10])}
    with pytest.raises(ValueError, match=r"no rosetta pair with r > 0.95 for models \['a'\]"):
        collect_pairs(dictionary, ["a"], "rosetta", 0.95)


def test_gray_targets_become_rgb(mining_dir: Path) -> None:
    gray = load_targets("skimage", names=["lfw_subset/0"], size=40)
    assert gray.images.shape == (1, 1, 40, 40)
    module = InversionModule(str(mining_dir), steps=1, start="random")
    (entry,) = module.invert_batch({"index": torch.arange(1), "image": gray.images})
    assert entry["target"].shape == (3, 64, 64)
    torch.testing.assert_close(entry["target"][0], entry["target"][2])
    assert entry["label"] == -1
