"""PairwiseCorrelation against an independent float64 numpy reference."""

from __future__ import annotations

import io
import pickle
import warnings

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from rosetta_pl.metrics import PairwiseCorrelation, prepare_observations


def reference_table(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Return the two-pass float64 Pearson table, NaN where a column has zero variance."""
    x64 = x.double().numpy()
    y64 = y.double().numpy()
    centred_x = x64 - x64.mean(axis=0)
    centred_y = y64 - y64.mean(axis=0)
    cross = centred_x.T @ centred_y
    norms = np.sqrt(np.outer((centred_x**2).sum(axis=0), (centred_y**2).sum(axis=0)))
    with np.errstate(invalid="ignore", divide="ignore"):
        table = cross / norms
    table[norms == 0] = np.nan
    return table


def correlated_data(seed: int, rows: int = 2000, num_x: int = 6, num_y: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 data whose x and y units are correlated to various degrees."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, num_x, generator=generator, dtype=torch.float64)
    mixing = torch.randn(num_x, num_y, generator=generator, dtype=torch.float64)
    y = x @ mixing + torch.randn(rows, num_y, generator=generator, dtype=torch.float64)
    return x, y


def run_metric(x: torch.Tensor, y: torch.Tensor, batch_rows: int) -> PairwiseCorrelation:
    metric = PairwiseCorrelation(x.shape[1], y.shape[1])
    for batch_x, batch_y in zip(x.split(batch_rows), y.split(batch_rows), strict=True):
        metric.update(batch_x, batch_y)
    return metric


def max_error(table: torch.Tensor, reference: np.ndarray) -> float:
    return float(np.nanmax(np.abs(table.numpy() - reference)))


@pytest.mark.parametrize(
    ("offset", "scale"),
    [(0.0, 1.0), (1e4, 1.0), (1e5, 1.0), (0.0, 1e-4), (0.0, 1e-20), (1e-16, 1e-20)],
)
def test_float32_matches_reference(offset: float, scale: float) -> None:
    x, y = correlated_data(seed=1, rows=5000)
    x = (x * scale + offset).float()
    y = (y * scale - offset).float()
    reference = reference_table(x, y)
    assert not np.isnan(reference).any()

    table = run_metric(x, y, batch_rows=1300).compute()

    assert table.dtype == torch.float64
    assert table.shape == (6, 5)
    assert max_error(table, reference) <= 1e-6


def test_large_batch_matches_reference() -> None:
    # More rows than one float32 product block, with a large offset.
    x, y = correlated_data(seed=2, rows=20000, num_x=3, num_y=4)
    x = (x + 1e5).float()
    y = (y * 1e-4 + 1e4).float()

    table = run_metric(x, y, batch_rows=20000).compute()

    assert max_error(table, reference_table(x, y)) <= 1e-6


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_match_reference(dtype: torch.dtype) -> None:
    x, y = correlated_data(seed=3)
    x = (x + 100).to(dtype)
    y = y.to(dtype)

    table = run_metric(x, y, batch_rows=300).compute()

    assert max_error(table, reference_table(x, y)) <= 1e-6


def test_float64_inputs_match_reference_closely() -> None:
    x, y = correlated_data(seed=4)

    table = run_metric(x, y, batch_rows=700).compute()

    assert max_error(table, reference_table(x, y)) <= 1e-6


def test_one_row_updates_match_one_update() -> None:
    # Float64 inputs get a float64 product, so both paths are exact to rounding.
    x, y = correlated_data(seed=5, rows=300, num_x=4, num_y=3)
    x = x + 1e4

    row_by_row = run_metric(x, y, batch_rows=1).compute()
    single = run_metric(x, y, batch_rows=300).compute()

    assert torch.allclose(row_by_row, single, rtol=0, atol=1e-12)


def test_one_row_float32_updates_match_reference() -> None:
    # One-row batches never reach the float32 product: only float64 merges remain.
    x, y = correlated_data(seed=5, rows=300, num_x=4, num_y=3)
    x = (x + 1e4).float()
    y = y.float()

    row_by_row = run_metric(x, y, batch_rows=1).compute()

    assert max_error(row_by_row, reference_table(x, y)) <= 1e-12


def test_batch_split_gives_same_states() -> None:
    x, y = correlated_data(seed=6, rows=500)
    x = x.float()
    y = y.float()
    uneven = PairwiseCorrelation(6, 5)
    for start, stop in [(0, 1), (1, 2), (2, 250), (250, 250), (250, 500)]:
        uneven.update(x[start:stop], y[start:stop])
    single = run_metric(x, y, batch_rows=500)

    # Float32 products: means to 1e-6 of the std, sums of squares to 1e-6 relative.
    std_x = (single.m2_x / single.count).sqrt()
    std_y = (single.m2_y / single.count).sqrt()
    cxy_scale = torch.outer(single.m2_x, single.m2_y).sqrt()
    assert uneven.count == single.count
    assert ((uneven.mean_x - single.mean_x).abs() <= 1e-6 * std_x).all()
    assert ((uneven.mean_y - single.mean_y).abs() <= 1e-6 * std_y).all()
    assert torch.allclose(uneven.m2_x, single.m2_x, rtol=1e-6, atol=0)
    assert torch.allclose(uneven.m2_y, single.m2_y, rtol=1e-6, atol=0)
    assert ((uneven.cxy - single.cxy).abs() <= 1e-6 * cxy_scale).all()


def test_one_observation_gives_nan() -> None:
    metric = PairwiseCorrelation(3, 2)
    metric.update(torch.randn(1, 3), torch.randn(1, 2))

    table = metric.compute()

    assert table.isnan().all()


def test_two_observations_give_plus_minus_one() -> None:
    metric = PairwiseCorrelation(3, 2)
    x = torch.tensor([[1.0, 5.0, 1e4], [2.0, -3.0, 1e4 + 1]])
    y = torch.tensor([[0.5, 7.0], [0.25, 9.0]])
    metric.update(x[:1], y[:1])
    metric.update(x[1:], y[1:])

    table = metric.compute()

    expected = torch.tensor([[-1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(table, expected, rtol=0, atol=1e-12)


def test_table_stays_within_unit_interval() -> None:
    # Nearly identical columns give correlations at the edge of rounding.
    generator = torch.Generator().manual_seed(7)
    base = torch.randn(400, 1, generator=generator) + 1e3
    x = base.repeat(1, 4) + 1e-4 * torch.randn(400, 4, generator=generator)
    y = torch.cat([base, -base, base * 3 + 2], dim=1)

    table = run_metric(x, y, batch_rows=37).compute()

    assert table.abs().max() <= 1.0


def test_constant_units_give_nan_rows_and_columns() -> None:
    x, y = correlated_data(seed=8, rows=600)
    x = x.float()
    y = y.float()
    with_constants_x = x.clone()
    with_constants_y = y.clone()
    with_constants_x[:, 2] = 3.25
    with_constants_y[:, 0] = 0.0
    with_constants_y[:, 4] = -1e5

    table = run_metric(with_constants_x, with_constants_y, batch_rows=128).compute()
    plain = run_metric(x, y, batch_rows=128).compute()

    assert table[2].isnan().all()
    assert table[:, 0].isnan().all()
    assert table[:, 4].isnan().all()
    keep_rows = [0, 1, 3, 4, 5]
    keep_columns = [1, 2, 3]
    kept = table[keep_rows][:, keep_columns]
    assert not kept.isnan().any()
    assert torch.equal(kept, plain[keep_rows][:, keep_columns])


def test_empty_update_changes_nothing() -> None:
    x, y = correlated_data(seed=9, rows=100)
    metric = run_metric(x.float(), y.float(), batch_rows=100)
    before = metric.compute()

    metric.update(torch.empty(0, 6), torch.empty(0, 5))

    assert metric.count == 100
    assert torch.equal(metric.compute(), before)


def test_no_observations_give_nan() -> None:
    metric = PairwiseCorrelation(2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = metric.compute()
    stats = metric.stats()

    assert table.isnan().all()
    assert stats["count"] == 0
    assert stats["mean_x"].isnan().all()
    assert stats["std_y"].isnan().all()


def test_stats_match_reference() -> None:
    x, y = correlated_data(seed=10, rows=900)
    x = (x * 1e-3 + 50).float()
    y = y.float()

    stats = run_metric(x, y, batch_rows=200).stats()

    x64 = x.double().numpy()
    y64 = y.double().numpy()
    assert set(stats) == {"count", "mean_x", "std_x", "mean_y", "std_y"}
    assert all(value.dtype == torch.float64 for value in stats.values())
    assert stats["count"] == 900
    # Float32 products give means to about 1e-7 of each unit's std.
    np.testing.assert_allclose(stats["mean_x"].numpy(), x64.mean(axis=0), atol=1e-6 * 1e-3)
    np.testing.assert_allclose(stats["mean_y"].numpy(), y64.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(stats["std_x"].numpy(), x64.std(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats["std_y"].numpy(), y64.std(axis=0), rtol=1e-6)


def test_merge_state_equals_single_metric() -> None:
    x, y = correlated_data(seed=11, rows=1000)
    x = (x + 1e4).float()
    y = y.float()
    first = run_metric(x[:300], y[:300], batch_rows=100)
    second = run_metric(x[300:], y[300:], batch_rows=350)
    empty = PairwiseCorrelation(6, 5)

    first.compute()  # fills the cache, which the merge must invalidate
    first.merge_state(second)
    first.merge_state(empty)
    empty.merge_state(first.metric_state)

    expected = reference_table(x, y)
    assert first.count == 1000
    assert max_error(first.compute(), expected) <= 1e-6
    assert torch.equal(empty.compute(), first.compute())


def test_merge_state_rejects_other_shapes() -> None:
    metric = PairwiseCorrelation(2, 3)

    with pytest.raises(ValueError, match=r"cxy of shape \(3, 3\), expected \(2, 3\)"):
        metric.merge_state(PairwiseCorrelation(2, 3).metric_state | {"cxy": torch.zeros(3, 3)})
    with pytest.raises(ValueError, match=r"mean_x of shape \(3,\), expected \(2,\)"):
        metric.merge_state(PairwiseCorrelation(3, 3))
    without_cxy = {name: value for name, value in metric.metric_state.items() if name != "cxy"}
    with pytest.raises(ValueError, match="missing the state 'cxy'"):
        metric.merge_state(without_cxy)
    with pytest.raises(ValueError, match="can only merge a PairwiseCorrelation"):
        from torchmetrics.aggregation import SumMetric

        metric.merge_state(SumMetric())


def test_forward_returns_batch_table_and_accumulates() -> None:
    x, y = correlated_data(seed=12, rows=400)
    x = x.float()
    y = y.float()
    metric = PairwiseCorrelation(6, 5)

    batch_table = metric(x[:150], y[:150])
    metric(x[150:], y[150:])

    assert max_error(batch_table, reference_table(x[:150], y[:150])) <= 1e-6
    assert max_error(metric.compute(), reference_table(x, y)) <= 1e-6


def test_compute_is_repeatable_and_keeps_states() -> None:
    x, y = correlated_data(seed=13, rows=300)
    metric = run_metric(x.float(), y.float(), batch_rows=64)
    states = {name: value.clone() for name, value in metric.metric_state.items()}

    first = metric.compute()
    first.fill_(0.0)
    second = metric.compute()
    third = metric.compute()

    assert not second.eq(0).all()
    assert torch.equal(second, third)
    for name, value in metric.metric_state.items():
        assert torch.equal(value, states[name]), name


@pytest.mark.parametrize(
    "convert",
    [
        lambda module: module.half(),
        lambda module: module.to(torch.float16),
        lambda module: module.to(dtype=torch.bfloat16),
        lambda module: module.bfloat16(),
        lambda module: module.float(),
        lambda module: module.type(torch.float16),
    ],
    ids=["half", "to_float16", "to_bfloat16", "bfloat16", "float", "type_float16"],
)
def test_dtype_conversion_keeps_float64_states(convert) -> None:
    owner = torch.nn.Module()
    owner.layer = torch.nn.Linear(6, 5)
    owner.metric = PairwiseCorrelation(6, 5)
    x, y = correlated_data(seed=14, rows=200)
    x = x + 1e3
    owner.metric.update(x[:100].float(), y[:100].float())
    owner.metric.compute()

    convert(owner)
    owner.metric.update(x[100:].to(torch.float16), y[100:].to(torch.float16))

    for name, value in owner.metric.metric_state.items():
        assert value.dtype == torch.float64, name
    for name, value in owner.metric.state_dict().items():
        assert value.dtype == torch.float64, name
    assert owner.metric.count == 200
    assert owner.metric.compute().dtype == torch.float64


def test_state_dict_round_trip_continues_exactly() -> None:
    x, y = correlated_data(seed=15, rows=600)
    x = (x + 1e4).float()
    y = y.float()
    original = run_metric(x[:400], y[:400], batch_rows=100)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)

    resumed = PairwiseCorrelation(6, 5)
    resumed.load_state_dict(torch.load(buffer))
    original.update(x[400:], y[400:])
    resumed.update(x[400:], y[400:])

    assert set(original.state_dict()) == {"count", "mean_x", "mean_y", "m2_x", "m2_y", "cxy"}
    for name, value in original.metric_state.items():
        assert torch.equal(getattr(resumed, name), value), name
    assert torch.equal(resumed.compute(), original.compute())


def test_load_state_dict_casts_and_checks() -> None:
    metric = PairwiseCorrelation(2, 3)
    state = {name: value.float() for name, value in PairwiseCorrelation(2, 3).state_dict().items()}

    metric.load_state_dict(state)

    assert all(value.dtype == torch.float64 for value in metric.metric_state.values())
    wrong = PairwiseCorrelation(4, 3).state_dict()
    with pytest.raises(ValueError, match=r"mean_x of shape \(4,\), expected \(2,\)"):
        metric.load_state_dict(wrong)


def test_update_rejects_bad_shapes() -> None:
    metric = PairwiseCorrelation(3, 2)

    with pytest.raises(ValueError, match=r"x must have shape \(N, 3\), got \(5, 4\)"):
        metric.update(torch.zeros(5, 4), torch.zeros(5, 2))
    with pytest.raises(ValueError, match=r"y must have shape \(N, 2\), got \(5,\)"):
        metric.update(torch.zeros(5, 3), torch.zeros(5))
    with pytest.raises(ValueError, match=r"same number of rows, got x \(5, 3\) and y \(4, 2\)"):
        metric.update(torch.zeros(5, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="must have a floating dtype, got torch.int64"):
        metric.update(torch.zeros(5, 3, dtype=torch.long), torch.zeros(5, 2))


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), float("-inf")])
def test_update_rejects_non_finite_values(bad_value: float) -> None:
    metric = PairwiseCorrelation(3, 2)
    y = torch.zeros(4, 2)
    y[2, 1] = bad_value

    with pytest.raises(ValueError, match="y contains NaN or infinite values"):
        metric.update(torch.zeros(4, 3), y)
    assert metric.count == 0


def test_constructor_rejects_bad_unit_counts() -> None:
    with pytest.raises(ValueError, match="num_x must be a positive int, got 0"):
        PairwiseCorrelation(0, 3)
    with pytest.raises(ValueError, match=r"num_y must be a positive int, got 2\.0"):
        PairwiseCorrelation(3, 2.0)


class _HalfPrecisionModule(L.LightningModule):
    """Feeds a linear layer's fp16 outputs and its inputs to the metric."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 3)
        self.metric = PairwiseCorrelation(4, 3)
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        (inputs,) = batch
        outputs = self.layer(inputs)
        self.metric.update(inputs, outputs.detach())
        self.seen.append((inputs.detach().clone(), outputs.detach().clone()))
        return outputs.float().square().mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=1e-3)


def test_lightning_16_true_keeps_float64_states(tmp_path) -> None:
    generator = torch.Generator().manual_seed(16)
    inputs = torch.randn(96, 4, generator=generator) + 10
    loader = DataLoader(TensorDataset(inputs), batch_size=32)
    module = _HalfPrecisionModule()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision="16-true",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )

    trainer.fit(module, loader)

    assert module.layer.weight.dtype == torch.float16
    for name, value in module.metric.metric_state.items():
        assert value.dtype == torch.float64, name
    all_inputs = torch.cat([seen[0] for seen in module.seen])
    all_outputs = torch.cat([seen[1] for seen in module.seen])
    assert all_inputs.dtype == torch.float16
    assert module.metric.count == 96
    assert max_error(module.metric.compute(), reference_table(all_inputs, all_outputs)) <= 1e-6


def test_pickle_and_clone_keep_behaviour() -> None:
    x, y = correlated_data(seed=17, rows=300)
    metric = run_metric(x[:200].float(), y[:200].float(), batch_rows=64)

    copies = [pickle.loads(pickle.dumps(metric)), metric.clone()]
    metric.update(x[200:].float(), y[200:].float())
    for copy in copies:
        copy.update(x[200:].float(), y[200:].float())

    for copy in copies:
        assert torch.equal(copy.compute(), metric.compute())


def test_prepared_x_matches_tensor_x():
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(300, 5, generator=generator) * 3 + 100
    ys = [torch.randn(300, 4, generator=generator), torch.randn(300, 6, generator=generator)]
    prepared = prepare_observations(x)
    for y in ys:
        direct = PairwiseCorrelation(5, y.shape[1])
        shared = PairwiseCorrelation(5, y.shape[1])
        direct.update(x, y)
        shared.update(prepared, y)
        for name, value in direct.state_dict().items():
            assert torch.equal(value, shared.state_dict()[name]), name


def test_prepared_x_checks_shapes():
    prepared = prepare_observations(torch.randn(10, 3))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 4\), got \(10, 3\)"):
        PairwiseCorrelation(4, 2).update(prepared, torch.randn(10, 2))
    with pytest.raises(ValueError, match="same number of rows"):
        PairwiseCorrelation(3, 2).update(prepared, torch.randn(9, 2))
    with pytest.raises(ValueError, match="NaN or infinite"):
        prepare_observations(torch.tensor([[float("nan")]]))
