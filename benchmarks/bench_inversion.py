"""Acceptance-size inversion and edit runs; prints one table per experiment.

Experiments (each needs a mining run, made here through the command line
unless its folder is given):

- ``faces``: the astronaut's face and the first five ``lfw_subset`` faces into the
  face DCGAN through ONet and RNet buddies (1024 mining samples, 16x16 grid),
  500 Adam steps from the best of 64 latents; activation loss alone, then with
  100 x pixel MSE. Compares with the best of the same 64 random samples by
  PSNR and by SSIM, and times the activation-only run.
- ``mnist``: the first 10 MNIST test digits into the MNIST DCGAN through LeNet's
  buddies; counts how many results LeNet gives the target's label.
- ``edits``: 8 face DCGAN samples, 500 steps from each sample's own latent, with
  a control (unedited maps), shift right by a quarter, zoom x2 about the
  centre and a horizontal flip; measures displacement, best-matching zoom and
  mirror preference of the results against the original samples.

Usage::

    python benchmarks/bench_inversion.py [--experiments faces mnist edits]
        [--face-run DIR] [--mnist-run DIR] [--steps 500] [--work-dir /tmp/bench_inversion]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rosetta_pl.edits import HFlip, MapEdit, Shift, Zoom  # noqa: E402
from rosetta_pl.inversion import InversionModule  # noqa: E402
from rosetta_pl.targets import load_targets  # noqa: E402

FACE_NAMES = ["astronaut_face"] + [f"lfw_subset/{i}" for i in range(5)]


def mine(folder: Path, generator: str, models: str, num_samples: int, grid_size: int) -> Path:
    """Run a mining run through the command line and return its log folder."""
    run = folder / "lightning_logs" / "version_0"
    if (run / "dictionary.json").is_file():
        return run
    command = [
        sys.executable, "-m", "rosetta_pl", "fit", "--config", str(ROOT / "configs" / "mine.yaml"),
        "--trainer.default_root_dir", str(folder), "--trainer.callbacks=[]",
        "--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false",
        "--model.init_args.generator", f"{{name: {generator}}}",
        "--model.init_args.models", models,
        "--model.init_args.grid_size", str(grid_size),
        "--data.init_args.num_samples", str(num_samples),
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(command, check=True, cwd=ROOT, env=environment)
    return run


def psnr(image: torch.Tensor, target: torch.Tensor) -> float:
    return float(peak_signal_noise_ratio(image[None], target[None], data_range=1.0))


def ssim(image: torch.Tensor, target: torch.Tensor) -> float:
    return float(structural_similarity_index_measure(image[None], target[None], data_range=1.0))


def run_inversion(module: InversionModule, targets) -> tuple[list[dict], float]:
    batch = {
        "index": torch.arange(len(targets)),
        "image": targets.images,
        "label": targets.labels,
    }
    if targets.latents is not None:
        batch["latent"] = targets.latents
    started = time.perf_counter()
    results = module.invert_batch(batch)
    return results, time.perf_counter() - started


def faces(run: Path, steps: int) -> None:
    targets = load_targets("skimage", names=FACE_NAMES, size=64, channels=3)
    common = dict(models=["onet", "rnet"], steps=steps, lr=0.05, betas=(0.5, 0.999))
    activation = InversionModule(str(run), start="best_of", num_candidates=64, **common)
    results, seconds = run_inversion(activation, targets)

    # The best of the same 64 random latents per target, by PSNR and by SSIM.
    wins_psnr = wins_ssim = 0
    print("\nfaces, activation loss only (500 steps unless --steps)")
    print(f"{'target':<16}{'r start':>9}{'r end':>8}{'PSNR':>8}{'best64':>8}{'SSIM':>8}{'best64':>8}")
    for entry, name in zip(results, FACE_NAMES, strict=True):
        indices = entry["index"] * 64 + torch.arange(64)
        with torch.no_grad():
            samples = activation.generator.generate(activation.generator.latents(indices, 0))
        best_psnr = max(psnr(sample, entry["target"]) for sample in samples)
        best_ssim = max(ssim(sample, entry["target"]) for sample in samples)
        result_psnr, result_ssim = psnr(entry["result"], entry["target"]), ssim(entry["result"], entry["target"])
        wins_psnr += result_psnr > best_psnr
        wins_ssim += result_ssim > best_ssim
        print(
            f"{name:<16}{entry['correlation_start']:>9.3f}{entry['correlation_end']:>8.3f}"
            f"{result_psnr:>8.2f}{best_psnr:>8.2f}{result_ssim:>8.3f}{best_ssim:>8.3f}"
        )
    rise = statistics.mean(e["correlation_end"] - e["correlation_start"] for e in results)
    print(
        f"mean correlation rise {rise:.3f} (accept >= 0.2); beats best of 64 in PSNR on "
        f"{wins_psnr}/6, in SSIM on {wins_ssim}/6 (accept >= 5); time {seconds:.1f} s"
    )

    pixel = InversionModule(str(run), start="best_of", num_candidates=64, pixel_weight=100.0, **common)
    results, seconds = run_inversion(pixel, targets)
    mean_psnr = statistics.mean(psnr(e["result"], e["target"]) for e in results)
    mean_ssim = statistics.mean(ssim(e["result"], e["target"]) for e in results)
    print(
        f"faces, activation + 100 x pixel MSE: mean PSNR {mean_psnr:.2f} dB (accept >= 20), "
        f"mean SSIM {mean_ssim:.3f} (accept >= 0.45); time {seconds:.1f} s"
    )


def mnist(run: Path, steps: int) -> None:
    from rosetta_pl import zoo

    targets = load_targets("mnist", count=10)
    lenet = zoo.build("lenet_mnist")
    print("\nMNIST digits into the MNIST DCGAN through LeNet buddies")
    for label, pixel_weight in (("activation only", 0.0), ("activation + 100 x pixel", 100.0)):
        module = InversionModule(
            str(run), models=["lenet"], steps=steps, start="best_of", num_candidates=64,
            pixel_weight=pixel_weight,
        )  # fmt: skip
        results, seconds = run_inversion(module, targets)
        images = torch.stack([entry["result"] for entry in results])
        with torch.no_grad():
            predicted = lenet(images).argmax(dim=1)
        correct = int((predicted == targets.labels).sum())
        print(
            f"{label:<28} LeNet labels {correct}/10 correct (predicted {predicted.tolist()}, "
            f"true {targets.labels.tolist()}); {seconds:.1f} s"
        )


def gray(images: torch.Tensor) -> np.ndarray:
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1).double().numpy()


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def displacement(original: np.ndarray, result: np.ndarray, limit: int = 24) -> int:
    """Return the dx in [-limit, limit] that best aligns ``result`` with ``original`` moved right."""
    scores = {}
    for dx in range(-limit, limit + 1):
        if dx >= 0:
            scores[dx] = pearson(original[:, : original.shape[1] - dx], result[:, dx:])
        else:
            scores[dx] = pearson(original[:, -dx:], result[:, : result.shape[1] + dx])
    return max(scores, key=scores.get)


def best_zoom(original: np.ndarray, result: np.ndarray) -> float:
    """Return the centre zoom of ``original`` in 1, 1.25, ..., 2.5 that best matches ``result``."""
    size = original.shape[0]
    scores = {}
    for scale in np.arange(1.0, 2.51, 0.25):
        crop = int(round(size / scale))
        first = (size - crop) // 2
        patch = torch.from_numpy(original[first : first + crop, first : first + crop])[None, None]
        zoomed = F.interpolate(patch, size=(size, size), mode="bilinear", align_corners=False)
        scores[float(scale)] = pearson(zoomed[0, 0].numpy(), result)
    return max(scores, key=scores.get)


def edits(run: Path, steps: int) -> None:
    targets = load_targets("generator", generator="face_dcgan", count=8, seed=1000)
    originals = gray(targets.images)
    cases: dict[str, MapEdit | None] = {
        "control": None, "shift 0.25": Shift(dx=0.25), "zoom x2": Zoom(2.0), "hflip": HFlip(),
    }  # fmt: skip
    print("\nedits of 8 face DCGAN samples from their own latents")
    print(f"{'edit':<12}{'median dx':>10}{'median zoom':>12}{'mirror wins':>12}{'time s':>8}")
    for name, edit in cases.items():
        module = InversionModule(str(run), models=["onet", "rnet"], steps=steps, start="target_latent", edit=edit)
        results, seconds = run_inversion(module, targets)
        outcomes = gray(torch.stack([entry["result"] for entry in results]))
        shifts = [displacement(o, r) for o, r in zip(originals, outcomes, strict=True)]
        zooms = [best_zoom(o, r) for o, r in zip(originals, outcomes, strict=True)]
        mirror = sum(pearson(o[:, ::-1], r) > pearson(o, r) for o, r in zip(originals, outcomes, strict=True))
        print(
            f"{name:<12}{statistics.median(shifts):>10.1f}{statistics.median(zooms):>12.2f}"
            f"{mirror:>9}/8{seconds:>8.1f}   dx {shifts} zoom {zooms}"
        )
    print(
        "accept: shift median dx 10 to 20 px, control <= 3; zoom median >= 1.25, control 1.0; "
        "hflip mirror wins >= 5/8, control <= 2/8"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--experiments", nargs="+", default=["faces", "mnist", "edits"], choices=["faces", "mnist", "edits"]
    )
    parser.add_argument("--face-run", type=Path, help="mining run of face_dcgan with onet and rnet")
    parser.add_argument("--mnist-run", type=Path, help="mining run of mnist_dcgan with lenet")
    parser.add_argument("--steps", type=int, default=500, help="Adam steps per inversion")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/bench_inversion"))
    arguments = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    face_run = arguments.face_run
    if face_run is None and {"faces", "edits"} & set(arguments.experiments):
        models = "{onet: {name: mtcnn_onet}, rnet: {name: mtcnn_rnet}}"
        face_run = mine(arguments.work_dir / "mine_faces", "face_dcgan", models, 1024, 16)
    if "faces" in arguments.experiments:
        faces(face_run, arguments.steps)
    if "mnist" in arguments.experiments:
        mnist_run = arguments.mnist_run or mine(
            arguments.work_dir / "mine_mnist", "mnist_dcgan", "{lenet: {name: lenet_mnist}}", 1024, 8
        )
        mnist(mnist_run, arguments.steps)
    if "edits" in arguments.experiments:
        edits(face_run, arguments.steps)


if __name__ == "__main__":
    main()
