"""InversionModule: find the generator latent whose matched units reproduce a target's maps.

A mining run pairs generator units with units of discriminative models (best
buddies, or the Rosetta neurons that have a partner in every model). For a
target image, every discriminative model computes its unit maps. Inversion
optimises one latent per target so that the generator's paired units, on the
image it generates, reproduce those maps. Both sides are resized to the mining
grid and z-scored with the mining statistics, and the loss per target is::

    activation_weight * (-mean over pairs of cos(generator map, model map))
    + pixel_weight * MSE(generated image, target)          # images in [0, 1]
    + prior_weight * generator.prior_nll(latent)           # 0.5 * ||z||^2 / dim
    + anchor_weight * mean((latent - start latent)^2)

The cosine is taken over the grid cells of each pair's z-scored maps; its
mean over pairs is reported as the matched-map correlation, at the start and
at the end of the optimisation.

The latents are not parameters of the module: each step of ``fit``,
``validate`` or ``predict`` receives a batch of targets and runs all
``steps`` Adam iterations on a fresh latent tensor of that batch. Under DDP
every process therefore inverts its own targets and no latent gradient is
averaged across processes. Each target's starting latent is drawn from
``(seed, target index)`` alone, so the split over processes does not change it.

Results are kept in ``module.results`` (one dict per target, cleared at the
start of each epoch) and returned by ``predict_step``; the
``TranslationMetrics`` callback reads them.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import nn

from rosetta_pl import zoo
from rosetta_pl.edits import MapEdit
from rosetta_pl.io import load_dictionary, load_stats, resolve_run_dir
from rosetta_pl.maps import stack_units
from rosetta_pl.targets import convert_image_channels, resize_images

log = logging.getLogger(__name__)

StartMode = Literal["random", "best_of", "target_latent"]
PairSet = Literal["buddies", "rosetta"]
# Guards the cosine and the z-scoring against all-zero maps and dead units.
EPSILON = 1e-8


def _as_grid(grid_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(grid_size, int):
        return (grid_size, grid_size)
    return (int(grid_size[0]), int(grid_size[1]))


def collect_pairs(
    dictionary: dict[str, Any], models: list[str], pairs: PairSet, min_r: float
) -> dict[str, tuple[list[int], list[int]]]:
    """Return, per model, the (generator units, model units) of the matched pairs to use.

    Args:
        dictionary: the mining run's ``dictionary.json``.
        models: names of the discriminative models whose pairs are used (union).
        pairs: ``"buddies"`` for every best-buddy pair, ``"rosetta"`` for the pairs of the
            Rosetta neurons only (a neuron contributes one pair per model).
        min_r: only pairs with a Pearson r above this value are kept.

    Raises:
        ValueError: if no pair is left.
    """
    selected: dict[str, tuple[list[int], list[int]]] = {}
    for name in models:
        if pairs == "buddies":
            records = [
                (entry["generator"]["unit"], entry["model"]["unit"], entry["r"])
                for entry in dictionary["buddies"].get(name, [])
            ]
        else:
            records = [
                (neuron["generator"]["unit"], neuron["partners"][name]["unit"], neuron["partners"][name]["r"])
                for neuron in dictionary["rosetta"]["neurons"]
                if name in neuron["partners"]
            ]
        kept = [(g, m) for g, m, r in records if r is not None and r > min_r]
        if kept:
            selected[name] = ([g for g, _ in kept], [m for _, m in kept])
    if not selected:
        raise ValueError(
            f"no {pairs} pair with r > {min_r} for models {models} in the mining run: "
            "lower min_r, use pairs='buddies', or mine with more samples"
        )
    return selected


class InversionModule(LightningModule):
    """Invert target images into a generator's latent space through matched units.

    Args:
        mining_dir: folder of a finished mining run (it contains ``dictionary.json``,
            ``stats.safetensors`` and ``tables.safetensors``), or a folder above runs
            such as the mining run's ``default_root_dir``, whose newest finished run is taken.
        generator: expected zoo name of the generator; a mining run made with another
            one is rejected. None accepts the run's generator.
        grid_size: expected mining grid (an int for a square grid); a run made on
            another grid is rejected. None accepts the run's grid.
        generator_options: build options that replace the run's generator options,
            e.g. another ``class_ids`` for cross-class edits with a class-conditional
            generator. The rebuilt generator must have the run's units.
        models: names of the discriminative models (as in the mining config) whose
            pairs are used, as a union; None uses every model of the run.
        pairs: ``"buddies"`` (every best-buddy pair) or ``"rosetta"`` (only the Rosetta
            neurons' pairs).
        min_r: keep only pairs with a Pearson r above this value.
        steps: Adam iterations per batch of targets.
        lr: Adam learning rate.
        betas: Adam betas.
        activation_weight: weight of the matched-map term (minus the mean cosine).
        pixel_weight: weight of the pixel MSE between the generated image and the
            target, both in [0, 1]; must be 0 with an edit.
        prior_weight: weight of the generator's prior penalty on the latent.
        anchor_weight: weight of the mean squared distance of the latent from its start.
        start: ``"random"`` (the latent of ``(seed, index)``), ``"best_of"`` (the lowest
            loss among ``num_candidates`` latents of ``(seed, index * num_candidates + m)``),
            or ``"target_latent"`` (the target's own latent; needs generator-sample targets).
        num_candidates: number of random latents that ``"best_of"`` compares.
        seed: seed of the starting latents.
        edit: transform of the target's z-scored maps before inversion (see
            ``rosetta_pl.edits``); None inverts the maps unchanged.
        candidate_batch_size: generator images per forward pass while ranking candidates.
        optimize_class: for a class-conditional generator (BigGAN-deep), whether the
            class vector is optimised with z. False keeps each start latent's class, which
            with ``generator_options: {class_ids: [...]}`` gives cross-class translation:
            targets of one class inverted into a generator held at another.
    """

    def __init__(
        self,
        mining_dir: str,
        generator: str | None = None,
        grid_size: int | tuple[int, int] | None = None,
        generator_options: dict[str, Any] | None = None,
        models: list[str] | None = None,
        pairs: PairSet = "buddies",
        min_r: float = 0.0,
        steps: int = 500,
        lr: float = 0.05,
        betas: tuple[float, float] = (0.5, 0.999),
        activation_weight: float = 1.0,
        pixel_weight: float = 0.0,
        prior_weight: float = 0.0,
        anchor_weight: float = 0.0,
        start: StartMode = "best_of",
        num_candidates: int = 64,
        seed: int = 0,
        edit: MapEdit | None = None,
        candidate_batch_size: int = 64,
        optimize_class: bool = True,
    ) -> None:
        super().__init__()
        self._check_arguments(steps, lr, betas, num_candidates, candidate_batch_size, seed)
        self._check_weights(activation_weight, pixel_weight, prior_weight, anchor_weight, edit)
        self.save_hyperparameters(ignore=["edit"])
        self.automatic_optimization = False
        self.steps = steps
        self.lr = lr
        self.betas = (float(betas[0]), float(betas[1]))
        self.activation_weight = activation_weight
        self.pixel_weight = pixel_weight
        self.prior_weight = prior_weight
        self.anchor_weight = anchor_weight
        self.start = start
        self.num_candidates = num_candidates
        self.seed = seed
        self.edit = edit
        self.candidate_batch_size = candidate_batch_size
        self.optimize_class = optimize_class
        self.mining_dir = resolve_run_dir(mining_dir)

        # Read the run and check it against the configuration before building anything.
        dictionary = load_dictionary(self.mining_dir)
        self.dictionary = dictionary
        self.grid = _check_run(dictionary, self.mining_dir, generator, grid_size)
        self.resize_mode = dictionary["grid"].get("mode", "area")
        model_names = list(dictionary["models"]) if models is None else list(models)
        unknown = [name for name in model_names if name not in dictionary["models"]]
        if unknown or not model_names:
            raise ValueError(
                f"models {model_names} are invalid for the mining run {self.mining_dir}: "
                f"choose a non-empty subset of {sorted(dictionary['models'])}"
            )
        self.pair_units = collect_pairs(dictionary, model_names, pairs, min_r)
        self.model_names = list(self.pair_units)

        generator_record = dictionary["generator"]
        options = {**generator_record.get("options", {}), **(generator_options or {})}
        self.generator = zoo.build(generator_record["name"], layers=generator_record["layers"], **options)
        _check_network(self.generator, generator_record, "generator", self.mining_dir)
        self.models = nn.ModuleDict()
        for name in self.model_names:
            record = dictionary["models"][name]
            network = zoo.build(record["name"], layers=record["layers"], **record.get("options", {}))
            _check_network(network, record, f"model {name}", self.mining_dir)
            self.models[name] = network
        for network in [self.generator, *self.models.values()]:
            network.eval().requires_grad_(False)

        self._register_statistics(load_stats(self.mining_dir))
        self.image_shape = self._probe_image_shape()
        self._free_latent_size()  # rejects optimize_class=False for unconditional generators
        self.results: list[dict[str, Any]] = []
        num_pairs = sum(len(units[0]) for units in self.pair_units.values())
        rank_zero_info(
            f"inversion: {num_pairs} {pairs} pairs with r > {min_r} from "
            f"{', '.join(self.model_names)}; grid {self.grid[0]}x{self.grid[1]}"
        )

    # --- construction helpers ---------------------------------------------------------

    @staticmethod
    def _check_arguments(
        steps: int,
        lr: float,
        betas: tuple[float, float],
        num_candidates: int,
        candidate_batch_size: int,
        seed: int,
    ) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps={steps!r} is invalid: inversion needs at least one Adam step, e.g. 500")
        if not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"lr={lr} is invalid: use a positive learning rate, e.g. 0.05")
        if len(betas) != 2 or not all(0 <= beta < 1 for beta in betas):
            raise ValueError(f"betas={tuple(betas)} is invalid: give two Adam betas in [0, 1), e.g. (0.5, 0.999)")
        if num_candidates < 1 or candidate_batch_size < 1:
            raise ValueError(
                f"num_candidates={num_candidates} and candidate_batch_size="
                f"{candidate_batch_size} must both be at least 1"
            )
        if seed < 0:
            raise ValueError(f"seed={seed} is invalid: use a non-negative seed")

    @staticmethod
    def _check_weights(
        activation_weight: float,
        pixel_weight: float,
        prior_weight: float,
        anchor_weight: float,
        edit: MapEdit | None,
    ) -> None:
        weights = {
            "activation_weight": activation_weight,
            "pixel_weight": pixel_weight,
            "prior_weight": prior_weight,
            "anchor_weight": anchor_weight,
        }
        for name, value in weights.items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}={value} is invalid: loss weights must be >= 0")
        if activation_weight == 0 and pixel_weight == 0:
            raise ValueError("activation_weight and pixel_weight are both 0: set at least one of them > 0")
        if edit is not None and pixel_weight > 0:
            raise ValueError(
                f"pixel_weight={pixel_weight} with edit {edit!r}: the pixel loss would pull the "
                "result back to the unedited target, so set pixel_weight to 0 for edits"
            )

    def _register_statistics(self, stats: dict[str, torch.Tensor]) -> None:
        """Keep each side's per-unit mean and std as float32 (1, U, 1, 1) buffers."""
        for side in ["generator", *self.model_names]:
            mean = stats[f"{side}.mean"].float().view(1, -1, 1, 1)
            std = stats[f"{side}.std"].float().clamp_min(EPSILON).view(1, -1, 1, 1)
            prefix = "generator" if side == "generator" else f"model_{side}"
            self.register_buffer(f"{prefix}_mean", mean, persistent=False)
            self.register_buffer(f"{prefix}_std", std, persistent=False)
        for name, (generator_units, model_units) in self.pair_units.items():
            self.register_buffer(f"pairs_{name}_generator", torch.tensor(generator_units), persistent=False)
            self.register_buffer(f"pairs_{name}_model", torch.tensor(model_units), persistent=False)

    def _probe_image_shape(self) -> tuple[int, int, int]:
        with torch.no_grad():
            image = self.generator.generate(self.generator.latents(torch.arange(1), seed=0))
        return tuple(image.shape[1:])  # type: ignore[return-value]

    # --- Lightning hooks ----------------------------------------------------------------

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.trainer.max_epochs != 1:
            raise ValueError(
                f"trainer.max_epochs is {self.trainer.max_epochs}, but inversion makes exactly one "
                "pass over the targets (each batch is optimised within one step): set "
                "trainer.max_epochs to 1, or raise steps for longer optimisation"
            )

    def configure_optimizers(self) -> None:
        """Return None: the latents get their own Adam in every step, the module has no parameter."""
        return None

    def on_train_epoch_start(self) -> None:
        self.results = []

    def on_validation_epoch_start(self) -> None:
        if not self._validating_inside_fit():
            self.results = []

    def on_predict_epoch_start(self) -> None:
        self.results = []

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.invert_batch(batch)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        # During fit the training pass has already inverted the same targets.
        if not self._validating_inside_fit():
            self.invert_batch(batch)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> list[dict[str, Any]]:
        return self.invert_batch(batch)

    def _validating_inside_fit(self) -> bool:
        trainer = self._trainer
        return trainer is not None and trainer.state.fn == TrainerFn.FITTING

    # --- inversion ----------------------------------------------------------------------

    def invert_batch(self, batch: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
        """Invert a batch of targets, append one result per target to ``self.results``.

        Args:
            batch: ``index`` (B,) int64, ``image`` (B, C, H, W) float in [0, 1] with C in
                {1, 3}, optional ``label`` (B,) int64 and ``latent`` (B, *latent_shape).

        Returns:
            One dict per target: ``index``, ``label``, ``target`` (C, H, W) at the
            generator's resolution and channels, ``start_image``, ``result`` (images,
            float32 CPU), ``start_latent``, ``latent``, ``correlation_start``,
            ``correlation_end`` and ``loss_end`` (floats).

        Raises:
            ValueError: if the images are not RGB or gray, or ``start`` is
                ``"target_latent"`` and the batch has no latents.
        """
        images = batch["image"]
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"target images of shape {tuple(images.shape)} are neither RGB nor gray: "
                "expected (B, C, H, W) with C = 1 or 3"
            )
        if self.start == "target_latent" and "latent" not in batch:
            raise ValueError(
                "start='target_latent' needs targets with latents: use "
                "TargetDataModule(source='generator') or another start"
            )
        # validate and predict run under inference mode; the latents need autograd.
        with torch.inference_mode(False), torch.enable_grad():
            outputs = self._invert(batch)
        self.results.extend(outputs)
        return outputs

    def _invert(self, batch: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
        indices = batch["index"].detach().cpu().clone().long()
        images = batch["image"].detach().clone().float().to(self.device)
        labels = batch.get("label", torch.full_like(indices, -1)).detach().cpu().clone()
        target_pixels = self._to_generator_pixels(images)
        target_pairs = self._target_pair_maps(images)

        start_latent = self._start_latents(batch, indices, target_pixels, target_pairs)
        # Only the first `free` entries of each flattened latent are optimised (all by default).
        free = self._free_latent_size()
        flat_start = start_latent.flatten(start_dim=1)
        optimised = flat_start[:, :free].clone().requires_grad_(True)
        fixed = flat_start[:, free:]
        optimizer = torch.optim.Adam([optimised], lr=self.lr, betas=self.betas)
        for _ in range(self.steps):
            optimizer.zero_grad(set_to_none=True)
            latent = torch.cat([optimised, fixed], dim=1).view_as(start_latent)
            losses, _, _ = self._losses(latent, start_latent, target_pixels, target_pairs)
            # Each latent only affects its own loss, so the sum gives every target its own gradient.
            losses.sum().backward()
            optimizer.step()
        latent = torch.cat([optimised.detach(), fixed], dim=1).view_as(start_latent)

        with torch.no_grad():
            losses, correlation_end, result = self._losses(latent, start_latent, target_pixels, target_pairs)
            _, correlation_start, start_image = self._losses(start_latent, start_latent, target_pixels, target_pairs)
        outputs = []
        for row in range(len(indices)):
            outputs.append(
                {
                    "index": int(indices[row]),
                    "label": int(labels[row]),
                    "target": target_pixels[row].detach().cpu(),
                    "start_image": start_image[row].detach().cpu(),
                    "result": result[row].detach().cpu(),
                    "start_latent": start_latent[row].detach().cpu(),
                    "latent": latent[row].detach().cpu(),
                    "correlation_start": float(correlation_start[row]),
                    "correlation_end": float(correlation_end[row]),
                    "loss_end": float(losses[row]),
                }
            )
        return outputs

    def _free_latent_size(self) -> int:
        """Return how many leading entries of a flattened latent the optimiser changes."""
        size = math.prod(self.generator.latent_shape)
        if self.optimize_class:
            return size
        # NOTE: BigGAN-deep is the only class-conditional zoo generator so far; its latent is
        # z followed by the class vector.
        from rosetta_pl.zoo.generators.biggan import NUM_CLASSES, BigGANDeep

        if not isinstance(self.generator, BigGANDeep):
            raise ValueError(
                f"optimize_class=False needs a class-conditional generator, but "
                f"{self.generator.zoo_name!r} has no class input: set optimize_class to true"
            )
        return size - NUM_CLASSES

    def _to_generator_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """Convert targets to the generator's channels and size, for the pixel loss and metrics."""
        channels, height, width = self.image_shape
        return resize_images(convert_image_channels(images, channels), (height, width))

    def _zscore(self, maps: dict[str, torch.Tensor], network: nn.Module, prefix: str) -> torch.Tensor:
        stacked = stack_units(maps, network.layers, self.grid, self.resize_mode)
        mean = getattr(self, f"{prefix}_mean")
        std = getattr(self, f"{prefix}_std")
        return (stacked - mean) / std

    def _target_pair_maps(self, images: torch.Tensor) -> torch.Tensor:
        """Return the targets' z-scored, edited maps of every paired model unit: (B, P, gh * gw)."""
        source_image = self._edit_source_image(images)
        selected = []
        with torch.no_grad():
            for name in self.model_names:
                network = self.models[name]
                maps = self._zscore(network.unit_maps(images), network, f"model_{name}")
                if self.edit is not None:
                    source = None
                    if source_image is not None:
                        source = self._zscore(network.unit_maps(source_image), network, f"model_{name}")
                    maps = self.edit.apply(maps, source)
                units = getattr(self, f"pairs_{name}_model")
                selected.append(maps[:, units].flatten(start_dim=2))
        return torch.cat(selected, dim=1)

    def _edit_source_image(self, images: torch.Tensor) -> torch.Tensor | None:
        """Return the (1, C, H, W) target image that a copy-paste edit reads, else None."""
        if self.edit is None or self.edit.source_index is None:
            return None
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        targets = getattr(datamodule, "targets", None)
        if targets is None:
            raise ValueError(
                f"edit {self.edit!r} reads target {self.edit.source_index}, which needs a "
                "rosetta_pl.targets.TargetDataModule as the data module"
            )
        if self.edit.source_index >= len(targets):
            raise ValueError(
                f"edit source_index={self.edit.source_index} is out of range: there are {len(targets)} targets"
            )
        return targets.images[self.edit.source_index : self.edit.source_index + 1].to(images)

    def _generator_pair_maps(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate images and the z-scored maps of the paired generator units: (B, P, gh * gw)."""
        images, maps = self.generator.generate(latent, return_maps=True, detach=False)
        zscored = self._zscore(maps, self.generator, "generator")
        selected = [
            zscored[:, getattr(self, f"pairs_{name}_generator")].flatten(start_dim=2) for name in self.model_names
        ]
        return images, torch.cat(selected, dim=1)

    def _losses(
        self,
        latent: torch.Tensor,
        start_latent: torch.Tensor,
        target_pixels: torch.Tensor,
        target_pairs: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return the per-target loss (B,), matched-map correlation (B,) and images (B, C, H, W)."""
        images, generated_pairs = self._generator_pair_maps(latent)
        dot = (generated_pairs * target_pairs).sum(dim=-1)
        norms = generated_pairs.norm(dim=-1) * target_pairs.norm(dim=-1)
        correlation = (dot / norms.clamp_min(EPSILON)).mean(dim=-1)

        loss = -self.activation_weight * correlation
        if self.pixel_weight > 0:
            squared = (images - target_pixels).pow(2)
            loss = loss + self.pixel_weight * squared.flatten(start_dim=1).mean(dim=1)
        if self.prior_weight > 0:
            loss = loss + self.prior_weight * self.generator.prior_nll(latent)
        if self.anchor_weight > 0:
            drift = (latent - start_latent).pow(2).flatten(start_dim=1).mean(dim=1)
            loss = loss + self.anchor_weight * drift
        return loss, correlation.detach(), images.detach()

    def _start_latents(
        self,
        batch: dict[str, torch.Tensor],
        indices: torch.Tensor,
        target_pixels: torch.Tensor,
        target_pairs: torch.Tensor,
    ) -> torch.Tensor:
        """Return the (B, *latent_shape) starting latents, each fixed by (seed, target index)."""
        if self.start == "target_latent":
            return batch["latent"].detach().clone().float().to(self.device)
        if self.start == "random":
            return self.generator.latents(indices, seed=self.seed).to(self.device)

        count = self.num_candidates
        candidate_indices = (indices[:, None] * count + torch.arange(count)[None, :]).flatten()
        candidates = self.generator.latents(candidate_indices, seed=self.seed).to(self.device)
        # (B * M) candidates, target row b owning rows b * M to b * M + M - 1.
        repeated_pixels = target_pixels.repeat_interleave(count, dim=0)
        repeated_pairs = target_pairs.repeat_interleave(count, dim=0)
        losses = []
        with torch.no_grad():
            for first in range(0, len(candidates), self.candidate_batch_size):
                rows = slice(first, first + self.candidate_batch_size)
                loss, _, _ = self._losses(
                    candidates[rows], candidates[rows], repeated_pixels[rows], repeated_pairs[rows]
                )
                losses.append(loss)
        best = torch.cat(losses).view(len(indices), count).argmin(dim=1)
        rows = torch.arange(len(indices), device=best.device) * count + best
        return candidates[rows].clone()


def _check_run(
    dictionary: dict[str, Any],
    run_dir: Path,
    generator: str | None,
    grid_size: int | tuple[int, int] | None,
) -> tuple[int, int]:
    """Return the run's grid after checking the run's generator and grid against the config."""
    run_generator = dictionary["generator"]["name"]
    if generator is not None and generator != run_generator:
        raise ValueError(
            f"mining run {run_dir} was made with generator {run_generator!r}, but this "
            f"inversion is configured for {generator!r}: point mining_dir to a run of "
            f"{generator!r} or set generator: {run_generator}"
        )
    run_grid = _as_grid(dictionary["grid"]["size"])
    wanted = _as_grid(grid_size) if grid_size is not None else run_grid
    if wanted != run_grid:
        raise ValueError(
            f"mining run {run_dir} used the grid {run_grid[0]}x{run_grid[1]}, but this inversion "
            f"is configured for {wanted[0]}x{wanted[1]}: point mining_dir to a run on that grid "
            "or change grid_size"
        )
    data = dictionary.get("data", {})
    if data.get("num_samples") is not None and data.get("samples_seen", data["num_samples"]) < data["num_samples"]:
        log.warning(
            "mining run %s stopped after %s of %s samples; its pairs and statistics come from those samples "
            "only (resume it with --ckpt_path to complete it)",
            run_dir,
            data["samples_seen"],
            data["num_samples"],
        )
    return run_grid


def _check_network(network: nn.Module, record: dict[str, Any], role: str, run_dir: Path) -> None:
    """Raise ValueError if a rebuilt network has other weights or units than the mining run's."""
    expected_sha = record.get("weights_sha256")
    if expected_sha is not None and network.weights_sha256 not in (None, expected_sha):
        raise ValueError(
            f"{role} {record['name']!r} loaded weights {network.weights_source} with SHA-256 "
            f"{network.weights_sha256}, but mining run {run_dir} used {expected_sha}: "
            "install the same weights or mine again"
        )
    expected_counts = {layer: int(count) for layer, count in record["unit_counts"].items()}
    if list(network.layers) != list(record["layers"]) or network.unit_counts != expected_counts:
        raise ValueError(
            f"{role} {record['name']!r} has layers {network.unit_counts}, but mining run "
            f"{run_dir} recorded {expected_counts}: its pairs do not apply to this network"
        )
