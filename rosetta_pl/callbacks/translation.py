"""TranslationMetrics: image quality and matched-map correlation of inversion results.

At the end of a ``fit``, ``validate`` or ``predict`` pass of an
``InversionModule`` the callback gathers every process's results and, on rank
zero, computes per target and as means:

- PSNR and SSIM (torchmetrics, data range 1) of the result against the target
  at the generator's resolution and channels;
- LPIPS (AlexNet) when torchvision's AlexNet weights are already in the torch
  hub cache, else one log line saying it was skipped (nothing is downloaded);
- the matched-map correlation at the start and at the end of the optimisation.

It logs them to the trainer's logger with keys grouped by ``/``, writes
``metrics.json`` and ``inversion.safetensors`` (indices, latents, images)
into the log folder, and saves a target | result grid as PNG, also sent to
TensorBoard.

FID and KID need folders of at least 1000 images each and come from
torch-fidelity (0.4.0 here), as a command rather than a test. Save targets and
results as PNG folders, then, with a local copy of torch-fidelity's Inception
weights (the command fetches them from the internet when no path is given)::

    fidelity --cpu --fid --kid --kid-subset-size 500 \\
        --feature-extractor-weights-path PATH/TO/inception_weights.pth \\
        --input1 results_png/ --input2 targets_png/

Without those weights, register a feature extractor built from one of the
zoo's real models with ``torch_fidelity.register_feature_extractor`` and call
``torch_fidelity.calculate_metrics(input1=..., input2=..., fid=True, kid=True,
feature_extractor=NAME)``, because the command line only offers its built-in
extractors. Report such scores under the extractor's name, since they are not
comparable with Inception-based FID.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)
from torchvision.utils import make_grid, save_image

from rosetta_pl.callbacks.neuron_grid import label_grid
from rosetta_pl.io import replace_atomically, write_json_atomic, write_tensors_atomic

METRICS_FILE = "metrics.json"
RESULTS_FILE = "inversion.safetensors"


def lpips_weights_available() -> bool:
    """Return whether torchmetrics' AlexNet LPIPS can be built without a download.

    torchmetrics ships the LPIPS linear layers; the AlexNet backbone comes from
    torchvision's weights, which must already be in the torch hub cache.
    """
    from torchvision.models import AlexNet_Weights

    file_name = Path(AlexNet_Weights.IMAGENET1K_V1.url).name
    return (Path(torch.hub.get_dir()) / "checkpoints" / file_name).is_file()


def image_metrics(results: list[dict[str, Any]], use_lpips: bool) -> list[dict[str, Any]]:
    """Compute PSNR, SSIM, optionally LPIPS, and the correlations of every result.

    Args:
        results: dicts with ``target`` and ``result`` (C, H, W) float images in [0, 1],
            ``index``, ``label``, ``correlation_start`` and ``correlation_end``.
        use_lpips: whether to add LPIPS (AlexNet); its weights must be on the machine.

    Returns:
        One dict per result, sorted by target index.
    """
    lpips = None
    if use_lpips:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        lpips = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True)
    rows = []
    for entry in sorted(results, key=lambda item: item["index"]):
        target = entry["target"][None].float()
        result = entry["result"][None].float()
        row = {
            "index": entry["index"],
            "label": entry["label"],
            "psnr": float(peak_signal_noise_ratio(result, target, data_range=1.0)),
            "ssim": float(structural_similarity_index_measure(result, target, data_range=1.0)),
            "correlation_start": entry["correlation_start"],
            "correlation_end": entry["correlation_end"],
        }
        if lpips is not None:
            # The AlexNet backbone takes RGB input, so gray images are replicated.
            rgb_result = result.expand(-1, 3, -1, -1)
            rgb_target = target.expand(-1, 3, -1, -1)
            row["lpips"] = float(lpips(rgb_result, rgb_target))
        rows.append(row)
    return rows


def mean_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Return the mean of every metric over the rows (infinite PSNRs are left out)."""
    means: dict[str, float] = {}
    for key in ("psnr", "ssim", "lpips", "correlation_start", "correlation_end"):
        values = [row[key] for row in rows if key in row and math.isfinite(row[key])]
        if values:
            means[key] = sum(values) / len(values)
    return means


def gather_results(trainer: Trainer, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the results of every process (on every rank); each process may hold any number."""
    if trainer.world_size == 1 or not (dist.is_available() and dist.is_initialized()):
        return list(results)
    gathered: list[list[dict[str, Any]] | None] = [None] * trainer.world_size
    dist.all_gather_object(gathered, list(results))
    return [entry for part in gathered for entry in (part or [])]


class TranslationMetrics(Callback):
    """Log and save the quality of an InversionModule's results at the end of each pass.

    Args:
        lpips: compute LPIPS when its weights are on the machine.
        max_grid_rows: largest number of targets in the PNG grid.
        save_results: also write latents and images to ``inversion.safetensors``.
    """

    def __init__(self, lpips: bool = True, max_grid_rows: int = 16, save_results: bool = True):
        super().__init__()
        if max_grid_rows < 1:
            raise ValueError(f"max_grid_rows={max_grid_rows} is invalid: use at least 1")
        self.lpips = lpips
        self.max_grid_rows = max_grid_rows
        self.save_results = save_results
        self.last_metrics: dict[str, Any] | None = None

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._report(trainer, pl_module, "fit")

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # During fit the training pass has already reported the same targets.
        if trainer.state.fn != TrainerFn.FITTING:
            self._report(trainer, pl_module, "validate")

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._report(trainer, pl_module, "predict")

    def _report(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        results = getattr(pl_module, "results", None)
        if results is None:
            raise TypeError(
                f"TranslationMetrics needs a module with a `results` list such as "
                f"rosetta_pl.inversion.InversionModule, got {type(pl_module).__name__}"
            )
        everything = gather_results(trainer, results)
        # trainer.log_dir broadcasts from rank zero, so every rank must ask for it.
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)
        if trainer.global_rank != 0 or not everything:
            return

        use_lpips = self.lpips and lpips_weights_available()
        if self.lpips and not use_lpips:
            rank_zero_info("LPIPS skipped: torchvision's AlexNet weights are not in the torch hub cache")
        rows = image_metrics(everything, use_lpips)
        means = mean_metrics(rows)
        self.last_metrics = {"stage": stage, "num_targets": len(rows), "mean": means, "per_image": rows}
        if not use_lpips:
            self.last_metrics["lpips"] = "skipped: AlexNet weights not on this machine"

        write_json_atomic(self.last_metrics, log_dir / METRICS_FILE)
        ordered = sorted(everything, key=lambda item: item["index"])
        if self.save_results:
            write_tensors_atomic(_stack_results(ordered), log_dir / RESULTS_FILE)
        grid = _pair_grid(ordered[: self.max_grid_rows], edited=getattr(pl_module, "edit", None) is not None)
        replace_atomically(log_dir / f"translation_{stage}.png", lambda path: save_image(grid, path, format="png"))
        self._log(trainer, stage, rows, means, grid)
        rank_zero_info(summarise_metrics(stage, means, len(rows), log_dir))

    def _log(
        self,
        trainer: Trainer,
        stage: str,
        rows: list[dict[str, Any]],
        means: dict[str, float],
        grid: torch.Tensor,
    ) -> None:
        if trainer.logger is None:
            return
        step = trainer.global_step
        scalars = {f"translation/{stage}/{key}_mean": value for key, value in means.items()}
        for row in rows:
            for key in ("psnr", "ssim", "lpips", "correlation_start", "correlation_end"):
                if key in row and math.isfinite(row[key]):
                    scalars[f"translation/{stage}/{key}/target_{row['index']:04d}"] = row[key]
        trainer.logger.log_metrics(scalars, step=step)
        experiment = getattr(trainer.logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            experiment.add_image(f"translation/{stage}/target_result", grid, global_step=step)


def summarise_metrics(stage: str, means: dict[str, float], num_targets: int, log_dir: Path) -> str:
    """Return the lines printed after a pass: mean metrics and where the outputs went."""
    names = ("psnr", "ssim", "lpips", "correlation_start", "correlation_end")
    values = ", ".join(f"{name} {means[name]:.3f}" for name in names if name in means)
    return f"inverted {num_targets} targets ({stage}); means: {values}\noutputs written to {log_dir}"


def _stack_results(results: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {
        "index": torch.tensor([entry["index"] for entry in results], dtype=torch.long),
        "label": torch.tensor([entry["label"] for entry in results], dtype=torch.long),
        "latent": torch.stack([entry["latent"] for entry in results]),
        "start_latent": torch.stack([entry["start_latent"] for entry in results]),
        "target": torch.stack([entry["target"] for entry in results]),
        "result": torch.stack([entry["result"] for entry in results]),
        "correlation_start": torch.tensor([entry["correlation_start"] for entry in results]),
        "correlation_end": torch.tensor([entry["correlation_end"] for entry in results]),
    }


def _pair_grid(results: list[dict[str, Any]], edited: bool = False) -> torch.Tensor:
    """Return a (3, H', W') grid with a header and one row per target: target | result."""
    tiles = []
    for entry in results:
        tiles.extend([entry["target"], entry["result"]])
    stacked = torch.stack(tiles).float()
    if stacked.shape[1] == 1:
        stacked = stacked.expand(-1, 3, -1, -1)
    if stacked.shape[-1] < 128:
        # Small generator outputs (28 or 64 pixels) are enlarged for viewing only.
        scale = 128 // stacked.shape[-1]
        stacked = F.interpolate(stacked, scale_factor=scale, mode="nearest")
    grid = make_grid(stacked, nrow=2, padding=2, pad_value=1.0)
    headers = ["target", "result of the edited maps" if edited else "result"]
    return label_grid(grid, headers, [], rows_per_block=1, tile_size=stacked.shape[-1], padding=2, margin=0)
