import pytest
import torch

from rosetta_pl.data import LatentIndexDataModule, StepIndices, share_of_step, steps_per_epoch


@pytest.mark.parametrize("num_samples", [1, 7, 64, 100, 129])
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_shares_cover_every_index_once(num_samples, world_size):
    batch_size = 16
    steps = steps_per_epoch(num_samples, batch_size, world_size)
    taken = []
    for rank in range(world_size):
        batches = list(StepIndices(num_samples, batch_size, rank, world_size))
        assert len(batches) == steps
        taken.extend(index for batch in batches for index in batch.tolist())
    assert sorted(taken) == list(range(num_samples))


def test_short_process_gets_empty_batch():
    # 20 samples, 2 processes of 16: step 0 gives rank 0 all 16 and rank 1 the last 4.
    assert share_of_step(0, 1, 20, 16, 2).tolist() == [16, 17, 18, 19]
    assert share_of_step(0, 1, 10, 16, 2).numel() == 0
    assert share_of_step(0, 1, 10, 16, 2).dtype == torch.long


def test_resume_skips_done_steps():
    full = list(StepIndices(100, 8, 0, 2))
    resumed = StepIndices(100, 8, 0, 2, start_step=3)
    assert len(resumed) == len(full)
    assert [b.tolist() for b in resumed] == [b.tolist() for b in full[3:]]


@pytest.mark.parametrize("value", [0, -5, 2.5, True])
def test_datamodule_rejects_bad_sample_count(value):
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        LatentIndexDataModule(num_samples=value)


def test_resume_on_other_world_size_covers_rest():
    # Two steps on one process of 8 consumed samples 0..15; two processes take the rest.
    taken = []
    for rank in range(2):
        resumed = StepIndices(50, 8, rank, 2, start_step=2, samples_done=16)
        assert len(resumed) == 2 + 3
        taken.extend(index for batch in resumed for index in batch.tolist())
    assert sorted(taken) == list(range(16, 50))


def test_checkpoint_state_rejects_other_seed():
    datamodule = LatentIndexDataModule(num_samples=64, seed=1)
    with pytest.raises(ValueError, match="mined with data.seed 0, but this run has data.seed 1"):
        datamodule.load_state_dict({"samples_done": 32, "global_step": 1, "seed": 0})


def test_checkpoint_state_rejects_fewer_samples():
    datamodule = LatentIndexDataModule(num_samples=16, seed=0)
    with pytest.raises(ValueError, match="already consumed 32 samples, more than data.num_samples 16"):
        datamodule.load_state_dict({"samples_done": 32, "global_step": 1, "seed": 0})
