"""PairwiseCorrelation in a real two-process DDP run on CPU (gloo)."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rosetta_pl.metrics import PairwiseCorrelation

NUM_X = 5
NUM_Y = 4
STATE_NAMES = ("count", "mean_x", "mean_y", "m2_x", "m2_y", "cxy")

# Rows per batch on each rank: different numbers of batches, one-row and empty
# batches. The "idle" metric gets no observations at all on rank 1.
BATCH_ROWS = {0: [100, 37, 1, 0, 64], 1: [250]}
IDLE_BATCH_ROWS = {0: [80, 3], 1: []}


def make_batches(rank: int, rows: list[int], seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Seeded float32 batches with a large offset, different on every rank."""
    generator = torch.Generator().manual_seed(seed * 100 + rank)
    mixing = torch.randn(NUM_X, NUM_Y, generator=torch.Generator().manual_seed(seed))
    batches = []
    for count in rows:
        x = torch.randn(count, NUM_X, generator=generator)
        y = x @ mixing + torch.randn(count, NUM_Y, generator=generator)
        batches.append(((x + 1e4).float(), (y * 1e-3).float()))
    return batches


def reference_table(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    x64 = x.double().numpy()
    y64 = y.double().numpy()
    centred_x = x64 - x64.mean(axis=0)
    centred_y = y64 - y64.mean(axis=0)
    norms = np.sqrt(np.outer((centred_x**2).sum(axis=0), (centred_y**2).sum(axis=0)))
    return centred_x.T @ centred_y / norms


def clone_states(metric: PairwiseCorrelation) -> dict[str, torch.Tensor]:
    return {name: getattr(metric, name).clone() for name in STATE_NAMES}


def run_rank(rank: int, world_size: int, port: int, output_dir: str) -> None:
    """Update two metrics on this rank's batches and save what the parent checks."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        metric = PairwiseCorrelation(NUM_X, NUM_Y)
        for x, y in make_batches(rank, BATCH_ROWS[rank], seed=1):
            metric.update(x, y)
        idle = PairwiseCorrelation(NUM_X, NUM_Y)
        for x, y in make_batches(rank, IDLE_BATCH_ROWS[rank], seed=2):
            idle.update(x, y)

        local_before = clone_states(metric)
        first = metric.compute()
        second = metric.compute()
        local_after_compute = clone_states(metric)
        stats = metric.stats()

        with metric.sync_context():
            synced_state_dict = metric.state_dict()
            table_inside_sync = metric.compute()
            stats_inside_sync = metric.stats()
        local_after_unsync = clone_states(metric)

        idle_table = idle.compute()

        torch.save(
            {
                "local_before": local_before,
                "first": first,
                "second": second,
                "local_after_compute": local_after_compute,
                "stats": stats,
                "synced_state_dict": synced_state_dict,
                "table_inside_sync": table_inside_sync,
                "stats_inside_sync": stats_inside_sync,
                "local_after_unsync": local_after_unsync,
                "idle_table": idle_table,
            },
            Path(output_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def single_process_metric(batch_rows: dict[int, list[int]], seed: int) -> PairwiseCorrelation:
    metric = PairwiseCorrelation(NUM_X, NUM_Y)
    for rank in sorted(batch_rows):
        for x, y in make_batches(rank, batch_rows[rank], seed=seed):
            metric.update(x, y)
    return metric


def all_observations(batch_rows: dict[int, list[int]], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    batches = [batch for rank in sorted(batch_rows) for batch in make_batches(rank, batch_rows[rank], seed)]
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    output_dir = tmp_path_factory.mktemp("ddp")
    # Fork skips re-importing torch in every child, which took most of the run time with
    # spawn. Each child uses one thread, as DataLoader workers do after a fork.
    mp.start_processes(
        run_rank,
        args=(2, free_port(), str(output_dir)),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    return [torch.load(output_dir / f"rank{rank}.pt") for rank in range(2)]


def test_ddp_table_equals_single_process(rank_results: list[dict]) -> None:
    expected = single_process_metric(BATCH_ROWS, seed=1).compute()
    x, y = all_observations(BATCH_ROWS, seed=1)

    for result in rank_results:
        assert torch.allclose(result["first"], expected, rtol=0, atol=1e-10)
        assert np.abs(result["first"].numpy() - reference_table(x, y)).max() <= 1e-6
    assert torch.equal(rank_results[0]["first"], rank_results[1]["first"])


def test_ddp_compute_is_repeatable(rank_results: list[dict]) -> None:
    for result in rank_results:
        assert torch.equal(result["second"], result["first"])
        assert torch.equal(result["table_inside_sync"], result["first"])


def test_ddp_compute_keeps_local_states(rank_results: list[dict]) -> None:
    for rank, result in enumerate(rank_results):
        local = single_process_metric({rank: BATCH_ROWS[rank]}, seed=1)
        for name in STATE_NAMES:
            assert torch.equal(result["local_before"][name], getattr(local, name)), name
            assert torch.equal(result["local_after_compute"][name], getattr(local, name)), name
            assert torch.equal(result["local_after_unsync"][name], getattr(local, name)), name


def test_ddp_sync_context_holds_merged_states(rank_results: list[dict]) -> None:
    expected = single_process_metric(BATCH_ROWS, seed=1)

    for result in rank_results:
        synced = result["synced_state_dict"]
        assert set(synced) == set(STATE_NAMES)
        assert synced["count"] == sum(BATCH_ROWS[0]) + sum(BATCH_ROWS[1])
        for name in STATE_NAMES:
            assert synced[name].dtype == torch.float64, name
            assert torch.allclose(synced[name], getattr(expected, name), rtol=1e-12, atol=1e-9), name


def test_ddp_stats_are_global(rank_results: list[dict]) -> None:
    x, y = all_observations(BATCH_ROWS, seed=1)

    for result in rank_results:
        for stats in (result["stats"], result["stats_inside_sync"]):
            assert stats["count"] == x.shape[0]
            np.testing.assert_allclose(stats["mean_x"], x.double().mean(dim=0), rtol=0, atol=1e-6)
            np.testing.assert_allclose(stats["std_y"], y.double().std(dim=0, correction=0), rtol=1e-6)


def test_ddp_rank_without_data(rank_results: list[dict]) -> None:
    expected = single_process_metric(IDLE_BATCH_ROWS, seed=2).compute()

    for result in rank_results:
        assert not result["idle_table"].isnan().any()
        assert torch.allclose(result["idle_table"], expected, rtol=0, atol=1e-10)
