"""Seeded sample indices for mining, split over processes and resumable by sample count.

A mining run is fixed by ``seed`` and ``num_samples``: sample ``i`` is the
generator's latent for global index ``i``, drawn from ``(seed, i)`` alone. At
each step the ``world_size`` processes together take the next ``B * W``
indices, process ``r`` the ``B`` of them starting ``r * B`` into the block,
clipped to ``num_samples``. Every process therefore runs the same number of
steps, no index is taken twice, and a process short of samples in the last
step gets a partial or empty batch.

A resumed run continues after the samples its checkpoint had consumed, with
the steps laid out for its own number of processes, so a run stopped on one
process may resume on two and the other way round.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from jsonargparse.typing import PositiveInt
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, IterableDataset


def steps_per_epoch(num_samples: int, batch_size: int, world_size: int) -> int:
    """Return the number of steps that cover ``num_samples`` with ``world_size`` processes."""
    return math.ceil(num_samples / (batch_size * world_size))


def share_of_step(step: int, rank: int, num_samples: int, batch_size: int, world_size: int) -> torch.Tensor:
    """Return the global sample indices of process ``rank`` at ``step``: (b,) int64, b <= batch_size."""
    return _share(step * batch_size * world_size, rank, num_samples, batch_size)


def _share(block_start: int, rank: int, num_samples: int, batch_size: int) -> torch.Tensor:
    start = block_start + rank * batch_size
    stop = min(start + batch_size, num_samples)
    return torch.arange(start, max(start, stop), dtype=torch.long)


class StepIndices(IterableDataset):
    """The index batches of one process, from ``start_step`` to the end of the pass.

    Steps from ``start_step`` on take the samples from ``samples_done`` on.
    ``len()`` counts the steps before ``start_step`` too, as Lightning counts
    the batches of an epoch from its start also when it resumes in the middle
    of one.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        rank: int,
        world_size: int,
        start_step: int = 0,
        samples_done: int | None = None,
    ):
        super().__init__()
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.start_step = start_step
        block = batch_size * world_size
        self.samples_done = min(start_step * block, num_samples) if samples_done is None else samples_done

    def __len__(self) -> int:
        return self.start_step + steps_per_epoch(self.num_samples - self.samples_done, self.batch_size, self.world_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        block = self.batch_size * self.world_size
        for block_start in range(self.samples_done, self.num_samples, block):
            yield _share(block_start, self.rank, self.num_samples, self.batch_size)


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
        # Samples consumed before the step at which the current loader started.
        self._samples_before = 0
        self._first_step = 0

    def samples_done(self, global_step: int) -> int:
        """Return how many samples the steps up to ``global_step`` consumed, over all processes."""
        world_size = self.trainer.world_size if self.trainer is not None else 1
        block = self.batch_size * world_size
        return min(self.num_samples, self._samples_before + (global_step - self._first_step) * block)

    def state_dict(self) -> dict[str, Any]:
        step = self.trainer.global_step if self.trainer is not None else 0
        return {"samples_done": self.samples_done(step), "global_step": step, "seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict["seed"] != self.seed:
            raise ValueError(
                f"the checkpoint was mined with data.seed {state_dict['seed']}, but this run has "
                f"data.seed {self.seed}: resume with the same seed, or start a new run without --ckpt_path"
            )
        if state_dict["samples_done"] > self.num_samples:
            raise ValueError(
                f"the checkpoint has already consumed {state_dict['samples_done']} samples, more than "
                f"data.num_samples {self.num_samples}: resume with at least that many samples"
            )
        # Lightning restores the data module before the loops, so the step comes from the checkpoint.
        self._samples_before = int(state_dict["samples_done"])
        self._first_step = int(state_dict["global_step"])

    def train_dataloader(self) -> DataLoader:
        """Return this process's loader, starting after the samples a restored checkpoint consumed.

        Lightning restores the checkpoint, and calls ``load_state_dict``,
        before it calls this method.
        """
        trainer = self.trainer
        rank = trainer.global_rank if trainer is not None else 0
        world_size = trainer.world_size if trainer is not None else 1
        start_step = trainer.global_step if trainer is not None else 0
        if start_step != self._first_step:
            # A loader requested again without a restore continues from this step.
            self._samples_before = self.samples_done(start_step)
            self._first_step = start_step
        dataset = StepIndices(
            self.num_samples, self.batch_size, rank, world_size, start_step, samples_done=self._samples_before
        )
        return DataLoader(dataset, batch_size=None, num_workers=0)
