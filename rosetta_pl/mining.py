"""MiningModule: streaming Pearson tables between a generator's units and K models' units.

Each training step turns a batch of global sample indices into latents and
generates images. It captures the maps of the generator's units and of every
discriminative model's units on those images and resizes all maps to one grid.
The centred generator observations are then shared by one
:class:`~rosetta_pl.metrics.PairwiseCorrelation` update per model, each a
(N, Ug) x (N, Ud) co-moment product per block of up to 8192 rows. Nothing is
trained, because the module has no parameter that requires a gradient and no
optimiser.

At the end of the pass the merged tables give best buddies per model, the
Rosetta set (units with a buddy in every model) and concept clusters; rank zero
writes them atomically into the run's log folder (see :mod:`rosetta_pl.io`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import nn

from rosetta_pl import zoo
from rosetta_pl.maps import ResizeMode, stack_units, to_observations
from rosetta_pl.metrics import PairwiseCorrelation, prepare_observations
from rosetta_pl.mining_results import MiningResult, build_result, summarise_result, write_result

log = logging.getLogger(__name__)


@dataclass
class ModelSpec:
    """A zoo model as a config names it.

    Args:
        name: zoo name, e.g. ``"mtcnn_onet"``, ``"timm:resnet50"``.
        layers: module names or glob patterns of the units; ``None`` keeps the model's defaults.
        options: further keyword arguments of :func:`rosetta_pl.zoo.build`
            (``pretrained``, ``weights_dir``, ``class_ids``, ...).
    """

    name: str
    layers: list[str] | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class GeneratorSpec(ModelSpec):
    """The generator as a config names it.

    Args:
        truncation: truncation value in (0, 1] for generators that have one
            (BigGAN: latents from a truncated normal scaled by it, and the same
            value passed to the generator). ``None`` leaves the generator's default.
    """

    truncation: float | None = None

    def __post_init__(self) -> None:
        if self.truncation is not None and not 0.0 < self.truncation <= 1.0:
            raise ValueError(
                f"generator truncation must lie in (0, 1], got {self.truncation}; "
                "use e.g. 0.4 for strong truncation or 1.0 for none"
            )


def _as_grid(grid_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    grid = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
    if len(grid) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in grid):
        raise ValueError(
            f"grid_size must be a positive integer or a pair of them, got {grid_size!r}; "
            "a typical grid is 16 (16x16 cells)"
        )
    return grid  # type: ignore[return-value]


def build_from_spec(spec: ModelSpec) -> nn.Module:
    """Build a zoo model from its spec, passing the generator's truncation when it is set."""
    options = dict(spec.options)
    if isinstance(spec, GeneratorSpec) and spec.truncation is not None:
        options["truncation"] = spec.truncation
    return zoo.build(spec.name, layers=spec.layers, **options)


class MiningModule(LightningModule):
    """Mine best buddies and Rosetta neurons between a generator and K discriminative models.

    Args:
        generator: the generator whose images are the shared input and whose units are the rows.
        models: the discriminative models, keyed by the name used in outputs and logs.
        grid_size: every map is resized to this grid (an int for a square grid).
        resize_mode: interpolation of the resize; shrinking is always area-averaged or antialiased.
        k: mutual top-k of the strict buddies and Rosetta set (1 = mutual nearest neighbours).
        relaxed_k: k of the relaxed Rosetta set, computed when the strict set has fewer
            than ``min_rosetta`` neurons.
        min_rosetta: size below which the relaxed set is added.
        cluster_similarity: minimum average correlation of the generator maps of
            Rosetta neurons that form one concept.
        cluster_samples: samples (the first ones of the run) over which the
            correlation of the Rosetta neurons' generator maps is measured for clustering.
        num_summary_pairs: strongest pairs printed in the summary.
    """

    def __init__(
        self,
        generator: GeneratorSpec,
        models: dict[str, ModelSpec],
        grid_size: int | tuple[int, int] = 16,
        resize_mode: ResizeMode = "area",
        k: int = 1,
        relaxed_k: int = 3,
        min_rosetta: int = 4,
        cluster_similarity: float = 0.5,
        cluster_samples: int = 512,
        num_summary_pairs: int = 5,
    ) -> None:
        super().__init__()
        if not models:
            raise ValueError("models is empty: name at least one discriminative model, e.g. onet: {name: mtcnn_onet}")
        if k < 1 or relaxed_k < 1:
            raise ValueError(f"k and relaxed_k must be at least 1, got k={k}, relaxed_k={relaxed_k}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.grid = _as_grid(grid_size)
        self.resize_mode = resize_mode
        self.generator_spec = generator
        self.model_specs = dict(models)

        self.generator = build_from_spec(generator)
        self.models = nn.ModuleDict({name: build_from_spec(spec) for name, spec in models.items()})
        for network in [self.generator, *self.models.values()]:
            network.eval().requires_grad_(False)

        num_x = self.generator.num_units
        self.correlations = nn.ModuleDict(
            {name: PairwiseCorrelation(num_x, model.num_units) for name, model in self.models.items()}
        )
        self._result: MiningResult | None = None
        self._run_dir: Path | None = None

    # Lightning hooks --------------------------------------------------------

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.trainer.max_epochs != 1:
            raise ValueError(
                f"trainer.max_epochs is {self.trainer.max_epochs}, but mining makes exactly one pass "
                "over data.num_samples: set trainer.max_epochs: 1 and raise data.num_samples for more data"
            )

    def configure_optimizers(self) -> None:
        return None

    def training_step(self, indices: torch.Tensor, batch_idx: int) -> None:
        self._result = None
        # Under manual optimisation trainer.global_step counts optimiser steps.
        # Stepping Lightning's placeholder optimiser changes nothing but the
        # count, which max_steps, checkpoints and resuming by step rely on.
        self.optimizers().step()
        if indices.numel() == 0:
            return None
        seed = self._data_seed()
        latents = self.generator.latents(indices.cpu(), seed).to(self.device)
        with torch.no_grad():
            images, generator_maps = self.generator.generate(latents, return_maps=True)
            # The generator side is centred once and shared by every model's update.
            x = prepare_observations(self._observations(generator_maps, self.generator), device=self.device)
            for name, model in self.models.items():
                y = self._observations(model.unit_maps(images), model)
                self.correlations[name].update(x, y)
        return None

    def on_fit_start(self) -> None:
        self._run_dir = None
        self.run_dir()

    def on_train_start(self) -> None:
        if self.global_rank == 0:
            self._log_weight_sources()

    def on_train_end(self) -> None:
        result = self.result()
        if self.global_rank != 0:
            return
        run_dir = self.run_dir()
        write_result(result, run_dir)
        rank_zero_info(summarise_result(result, self.hparams.num_summary_pairs))
        rank_zero_info(f"mining outputs written to {run_dir}")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Every process calls this hook, but only rank zero writes the file, so
        # the file gets the states merged over all processes.
        state_dict = checkpoint["state_dict"]
        for prefix, metric in self._metrics_by_prefix().items():
            with metric.sync_context(should_sync=True, distributed_available=_distributed):
                for key, value in metric.state_dict().items():
                    state_dict[prefix + key] = value.detach().clone()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A checkpoint contains the merged states: one process keeps them and the
        # others start empty, so the next merge counts every observation once.
        if self._process_rank() == 0:
            return
        state_dict = checkpoint["state_dict"]
        for prefix, metric in self._metrics_by_prefix().items():
            for name, default in metric._defaults.items():
                state_dict[prefix + name] = default.detach().clone()

    # Results ----------------------------------------------------------------

    def result(self) -> MiningResult:
        """Return the tables, buddies, Rosetta set and clusters of the observations so far.

        Collective under DDP: every process must call it. The result is cached
        until the next training step.
        """
        if self._result is None:
            tables = {name: metric.compute() for name, metric in self.correlations.items()}
            stats = {name: metric.stats() for name, metric in self.correlations.items()}
            self._result = build_result(self, tables, stats, self.generator_similarity)
        return self._result

    @torch.no_grad()
    def generator_similarity(self, units: torch.Tensor) -> torch.Tensor:
        """Return the (R, R) float64 Pearson table of the given generator units' maps.

        Measured on the first ``cluster_samples`` samples of the run, regenerated
        here: clustering needs the correlation among the few Rosetta neurons
        only, which is far cheaper than a full (Ug, Ug) table at every step.
        Every process computes it alone, from the same samples.
        """
        datamodule = self.trainer.datamodule
        total = min(self.hparams.cluster_samples, datamodule.num_samples)
        metric = PairwiseCorrelation(len(units), len(units), sync_on_compute=False).to(self.device)
        columns = units.to(self.device)
        for start in range(0, total, datamodule.batch_size):
            indices = torch.arange(start, min(start + datamodule.batch_size, total))
            latents = self.generator.latents(indices, self._data_seed()).to(self.device)
            _, maps = self.generator.generate(latents, return_maps=True)
            x = self._observations(maps, self.generator)[:, columns]
            metric.update(x, x)
        return metric.compute()

    def run_dir(self) -> Path:
        """Return the folder that receives the outputs: the logger's version folder.

        Read once at the start of fitting, because ``trainer.log_dir`` is a
        collective call under DDP that rank zero alone must not make later.
        """
        if self._run_dir is None:
            trainer = self.trainer
            self._run_dir = Path(trainer.log_dir if trainer.logger is not None else trainer.default_root_dir)
        return self._run_dir

    # Helpers -----------------------------------------------------------------

    def _observations(self, maps: dict[str, torch.Tensor], network: nn.Module) -> torch.Tensor:
        stacked = stack_units(maps, network.layers, self.grid, self.resize_mode)  # (B, U, gh, gw)
        return to_observations(stacked)  # (B * gh * gw, U)

    def _data_seed(self) -> int:
        datamodule = getattr(self.trainer, "datamodule", None)
        seed = getattr(datamodule, "seed", None)
        if seed is None:
            raise RuntimeError(
                "MiningModule needs a datamodule with a `seed` (rosetta_pl.data.LatentIndexDataModule)"
            )
        return int(seed)

    def _metrics_by_prefix(self) -> dict[str, PairwiseCorrelation]:
        metrics = {f"correlations.{name}.": metric for name, metric in self.correlations.items()}
        return metrics

    def _process_rank(self) -> int:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank()
        return 0

    def _log_weight_sources(self) -> None:
        rank_zero_info(f"generator {self.generator_spec.name}: weights from {self.generator.weights_source}")
        for name, spec in self.model_specs.items():
            rank_zero_info(f"model {name} ({spec.name}): weights from {self.models[name].weights_source}")


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()
