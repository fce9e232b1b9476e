"""Seeded sample indices for mining, split over processes and resumable by step.

A mining run is fixed by ``seed`` and ``num_samples``: sample ``i`` is the
generator's latent for global index ``i``, drawn from ``(seed, i)`` alone. At
step ``s`` the ``world_size`` processes together take the indices
``[s * B * W, (s + 1) * B * W)``, process ``r`` the ``B`` of them starting at
``s * B * W + r * B``, clipped to ``num_samples``. Every process therefore runs
the same number of steps, no index is taken twice, and a process short of
samples in the last step gets a partial or empty batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from jsonargparse.typing import PositiveInt
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, IterableDataset


def steps_per_epoch(num_samples: int, batch_size: int, world_size: int) -> int:
    """Return the number of steps that cover ``num_samples`` with ``world_size`` processes."""
    return math.ceil(num_samples / (batch_size * world_size))


def share_of_step(step: int, rank: int, num_samples: int, batch_size: int, world_size: int) -> torch.Tensor:
    """Return the global sample indices of process ``rank`` at ``step``: (b,) int64, b <= batch_size."""
    start = step * batch_size * world_size + rank * batch_size
    stop = min(start + batch_size, num_samples)
    return torch.arange(start, max(start, stop), dtype=torch.long)


class StepIndices(IterableDataset):
    """The index batches of one process from ``start_step`` to the end of the pass.

    ``len()`` is the full number of steps of the pass, as Lightning counts
    batches of an epoch from its start also when it resumes in the middle of
    one; iteration yields only the steps from ``start_step`` on.
    """

    def __init__(self, num_samples: int, batch_size: int, rank: int, world_size: int, start_step: int = 0):
        super().__init__()
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.start_step = start_step

    def __len__(self) -> int:
        return steps_per_epoch(self.num_samples, self.batch_size, self.world_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for step in range(self.start_step, len(self)):
            yield share_of_step(step, self.rank, self.num_samples, self.batch_size, self.world_size)


class LatentIndexDataModule(LightningDataModule):
    """Global sample indices of a mining run; the generator turns them into latents.

    Args:
        num_samples: total number of generated images, over all processes.
        batch_size: images per process and step.
        seed: seed of the latents; with ``num_samples`` it fixes the whole sample set,
            whatever the number of processes.
    """

    def __init__(self, num_samples: PositiveInt = 2048, batch_size: PositiveInt = 64, seed: int = 0):
        super().__init__()
        for name, value in (("num_samples", num_samples), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"data.{name} must be a positive integer, got {value!r}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed

    def train_dataloader(self) -> DataLoader:
        """Return this process's loader, starting after the steps a restored checkpoint has done.

        Lightning restores the checkpoint before it asks for the loader, so
        ``trainer.global_step`` already counts the steps done before a resume.
        """
        trainer = self.trainer
        rank = trainer.global_rank if trainer is not None else 0
        world_size = trainer.world_size if trainer is not None else 1
        start_step = trainer.global_step if trainer is not None else 0
        dataset = StepIndices(self.num_samples, self.batch_size, rank, world_size, start_step)
        return DataLoader(dataset, batch_size=None, num_workers=0)
