"""Exact streaming Pearson correlation between two sets of units.

Mining scores every (generator unit, discriminative unit) pair by the Pearson
correlation of their activations over all images and grid positions. The
metric here keeps the count, the means, the centred sums of squares and the
centred cross-moment of both sides, so one pass over the data gives the exact
pooled table. Batches, metric objects and DDP processes are combined with the
pairwise update of Chan, Golub and LeVeque ("Updating formulae and a pairwise
algorithm for computing sample variances", 1979), which is exact in real
arithmetic and stable in floating point.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.distributed import gather_all_tensors

__all__ = ["PairwiseCorrelation", "PreparedObservations", "prepare_observations"]

_STATE_NAMES = ("count", "mean_x", "mean_y", "m2_x", "m2_y", "cxy")

# Rows per block of an update. Blocks bound the float32 rounding error and the
# temporary memory, which are O(_BLOCK_ROWS * units) whatever the batch size.
# Merging a block costs a few (num_x, num_y) float64 passes, about
# 1 / _BLOCK_ROWS of the block's product.
_BLOCK_ROWS = 8192


@dataclass(frozen=True)
class _Moments:
    """Count, means, centred sums of squares and centred cross-moment (all float64)."""

    count: Tensor  # () float64
    mean_x: Tensor  # (num_x,) float64
    mean_y: Tensor  # (num_y,) float64
    m2_x: Tensor  # (num_x,) float64
    m2_y: Tensor  # (num_y,) float64
    cxy: Tensor  # (num_x, num_y) float64


def _merge_moments(a: _Moments, b: _Moments) -> _Moments:
    """Combine the moments of two disjoint sets of observations (Chan's pairwise update).

    Returns new tensors and leaves both inputs unchanged.
    """
    count_a = float(a.count)
    count_b = float(b.count)
    if count_b == 0:
        return a
    if count_a == 0:
        return b

    count = count_a + count_b
    weight = count_a * count_b / count
    delta_x = b.mean_x - a.mean_x
    delta_y = b.mean_y - a.mean_y
    return _Moments(
        count=a.count + b.count,
        mean_x=a.mean_x + delta_x * (count_b / count),
        mean_y=a.mean_y + delta_y * (count_b / count),
        m2_x=a.m2_x + b.m2_x + delta_x.square() * weight,
        m2_y=a.m2_y + b.m2_y + delta_y.square() * weight,
        cxy=torch.addr(a.cxy + b.cxy, delta_x, delta_y, alpha=weight),
    )


def _inverse_power_of_two_scale(max_abs: Tensor) -> Tensor:
    """Return 2**-e per column, with 2**e close to the column's max absolute value.

    Multiplying by a power of two is exact, so the rescaled values carry no
    extra rounding. Columns that are all zero get 1.
    """
    _, exponent = torch.frexp(max_abs)
    inverse_scale = torch.ldexp(torch.ones_like(max_abs), -exponent)
    return torch.where(max_abs > 0, inverse_scale, torch.ones_like(max_abs))


def _centre_and_scale(values: Tensor, name: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Centre each column on its approximate batch mean and rescale it by a power of two.

    The scale comes from the column's max absolute value before centring,
    which keeps the centred values and their products away from float32
    subnormals: a column whose spread is so small against its offset that this
    scale would push it into subnormals is constant at float32 precision.

    Args:
        values: (N, U) float32 or float64 observations, N >= 1.
        name: Name of the input in error messages.

    Returns:
        A tuple ``(mean, centred, scale, residual_mean)`` of:
        - the (U,) float64 batch mean,
        - the (N, U) values minus an approximate mean, divided by ``scale``,
          in the dtype of ``values``,
        - the (U,) float64 scale,
        - the (U,) float64 mean of the centred values before scaling, which
          is small but not zero.

    Raises:
        ValueError: If ``values`` contains NaN or infinite values.
    """
    count = values.shape[0]

    # NaN and inf propagate into the column max or min, so no separate pass is needed.
    column_max = values.amax(dim=0)
    column_min = values.amin(dim=0)
    if not (torch.isfinite(column_max).all() and torch.isfinite(column_min).all()):
        raise ValueError(f"{name} contains NaN or infinite values; clean or mask the maps before updating the metric")
    inverse_scale = _inverse_power_of_two_scale(torch.maximum(column_max.abs(), column_min.abs()))

    # Constant columns are centred on their value, so they stay exactly zero.
    # NOTE: the float32 column sum overflows to inf (and the table gets NaN)
    # when a column sums to more than about 3e38, for example 1e34 in 50,000 rows.
    approximate_mean = torch.where(column_max == column_min, column_max, values.sum(dim=0) / count)
    # (values - approximate_mean) * inverse_scale in one pass. Both products by
    # a power of two are exact, so only the subtraction rounds.
    centred = torch.addcmul(-approximate_mean * inverse_scale, values, inverse_scale)

    scale = inverse_scale.double().reciprocal()
    residual_mean = centred.sum(dim=0).double() * scale / count
    mean = approximate_mean.double() + residual_mean
    return mean, centred, scale, residual_mean


@contextlib.contextmanager
def _full_precision_matmul() -> Iterator[None]:
    """Disable TF32 and bfloat16 shortcuts for float32 matrix products in this block."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


@dataclass(frozen=True)
class _CentredBlock:
    """One block of observations centred and rescaled by :func:`_centre_and_scale`."""

    mean: Tensor  # (U,) float64
    scaled: Tensor  # (n, U) float32 or float64
    scale: Tensor  # (U,) float64
    residual: Tensor  # (U,) float64
    m2: Tensor  # (U,) float64 centred sum of squares


def _centre_block(values: Tensor, name: str) -> _CentredBlock:
    mean, scaled, scale, residual = _centre_and_scale(values, name)
    count = values.shape[0]
    m2 = torch.linalg.vecdot(scaled, scaled, dim=0).double() * scale.square()
    m2 = (m2 - count * residual.square()).clamp_(min=0)
    return _CentredBlock(mean, scaled, scale, residual, m2)


@dataclass(frozen=True)
class PreparedObservations:
    """Observations of the ``x`` side, centred and rescaled once for several metrics.

    Made by :func:`prepare_observations`. Pass it as ``x`` to the ``update`` of
    every :class:`PairwiseCorrelation` that shares these observations, such as
    one metric per discriminative model against the same generator units.
    The states end up bit-identical to those of passing the tensor itself.
    """

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device
    blocks: tuple[_CentredBlock, ...]


def prepare_observations(x: Tensor, device: torch.device | str | None = None) -> PreparedObservations:
    """Centre and rescale (N, U) observations block by block for :meth:`PairwiseCorrelation.update`.

    Args:
        x: (N, U) observations, any floating dtype; half precision is upcast to float32.
        device: device of the metrics that will use them (default: the device of ``x``).

    Raises:
        ValueError: If ``x`` is not a 2-D floating tensor or contains NaN or infinite values.
    """
    if not isinstance(x, Tensor) or x.ndim != 2 or not x.is_floating_point():
        raise ValueError(f"x must be a 2-D floating tensor, got {getattr(x, 'shape', type(x).__name__)}")
    device = torch.device(device) if device is not None else x.device
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    blocks = tuple(
        _centre_block(block.detach().to(device=device, dtype=dtype), "x") for block in x.split(_BLOCK_ROWS)
    )
    return PreparedObservations((int(x.shape[0]), int(x.shape[1])), dtype, device, blocks)


def _block_moments(x: Tensor, y: Tensor) -> _Moments:
    """Compute the moments of one block of rows; see :func:`_prepared_block_moments`."""
    return _prepared_block_moments(_centre_block(x, "x"), _centre_block(y, "y"))


def _prepared_block_moments(block_x: _CentredBlock, block_y: _CentredBlock) -> _Moments:
    """Compute the moments of one block of rows with one float32 (or float64) matrix product.

    Each unit is centred on an approximate batch mean and rescaled by a power
    of two, so the float32 product neither loses digits to a large offset nor
    falls into subnormals for tiny values. The product is corrected in float64
    for the small mean that remains after the approximate mean is subtracted.

    Args:
        block_x: (N, num_x) centred float32 or float64 observations, N >= 1.
        block_y: (N, num_y) centred observations. The product is float64 only
            when both sides are float64.

    Returns:
        The float64 moments of the block.
    """
    count = block_x.scaled.shape[0]
    scaled_x, scale_x, residual_x = block_x.scaled, block_x.scale, block_x.residual
    scaled_y, scale_y, residual_y = block_y.scaled, block_y.scale, block_y.residual

    both_float64 = scaled_x.dtype == torch.float64 and scaled_y.dtype == torch.float64
    product_dtype = torch.float64 if both_float64 else torch.float32
    with _full_precision_matmul():
        product = scaled_x.to(product_dtype).T @ scaled_y.to(product_dtype)  # (num_x, num_y)

    # Sums of the centred values minus the residual-mean term give the sums
    # around their own mean.
    cxy = product.double().mul_(torch.outer(scale_x, scale_y))
    cxy.addr_(residual_x, residual_y, alpha=-count)

    return _Moments(
        count=torch.tensor(float(count), dtype=torch.float64, device=scaled_x.device),
        mean_x=block_x.mean,
        mean_y=block_y.mean,
        m2_x=block_x.m2,
        m2_y=block_y.m2,
        cxy=cxy,
    )


def _check_observations(name: str, values: Tensor, num_units: int) -> None:
    if not isinstance(values, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(values).__name__}")
    if values.ndim != 2 or values.shape[1] != num_units:
        raise ValueError(
            f"{name} must have shape (N, {num_units}), got {tuple(values.shape)}; "
            f"flatten maps to one row per observation first"
        )
    if not values.is_floating_point():
        raise ValueError(f"{name} must have a floating dtype, got {values.dtype}")


class PairwiseCorrelation(Metric):
    """Exact streaming Pearson correlation between every unit of ``x`` and every unit of ``y``.

    Each ``update`` adds N observations, one row of ``x`` and the matching row
    of ``y`` per observation. The states are the float64 count, means, centred
    sums of squares and centred cross-moment, so ``compute`` returns the
    pooled correlation over all observations after a single pass, whatever
    the batch sizes. Batches, metric objects (``merge_state``) and DDP
    processes are combined with Chan's pairwise update, so 1 and 2 processes
    over the same batches give the same table up to float64 rounding. Other
    batch splits of the same observations agree to the float32 accuracy of
    ``update``.

    Inside ``sync_context()`` (or after ``sync()``) the states are the merged
    states of all processes, and ``unsync()`` restores the local states.
    The states stay float64 on any dtype conversion of an owning module
    (``.half()``, ``.to(torch.float16)``, Lightning's "16-true" precision),
    while device moves apply as usual. State memory is O(num_x * num_y), independent
    of the number of observations.

    Args:
        num_x: Number of units in ``x``.
        num_y: Number of units in ``y``.
        **kwargs: Keyword arguments of ``torchmetrics.Metric``.

    Example:
        >>> metric = PairwiseCorrelation(num_x=2, num_y=1)
        >>> x = torch.tensor([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0]])
        >>> metric.update(x, x[:, :1] * 3 + 1)
        >>> metric.compute()
        tensor([[1.],
                [0.]], dtype=torch.float64)
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    count: Tensor
    mean_x: Tensor
    mean_y: Tensor
    m2_x: Tensor
    m2_y: Tensor
    cxy: Tensor

    def __init__(self, num_x: int, num_y: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, value in (("num_x", num_x), ("num_y", num_y)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.num_x = num_x
        self.num_y = num_y

        def zeros(*shape: int) -> Tensor:
            return torch.zeros(shape, dtype=torch.float64)

        # dist_reduce_fx=None: _sync_dist below merges the gathered states.
        self.add_state("count", zeros(), dist_reduce_fx=None, persistent=True)
        self.add_state("mean_x", zeros(num_x), dist_reduce_fx=None, persistent=True)
        self.add_state("mean_y", zeros(num_y), dist_reduce_fx=None, persistent=True)
        self.add_state("m2_x", zeros(num_x), dist_reduce_fx=None, persistent=True)
        self.add_state("m2_y", zeros(num_y), dist_reduce_fx=None, persistent=True)
        self.add_state("cxy", zeros(num_x, num_y), dist_reduce_fx=None, persistent=True)

    def _moments(self) -> _Moments:
        return _Moments(**{name: getattr(self, name) for name in _STATE_NAMES})

    def _set_moments(self, moments: _Moments) -> None:
        for name in _STATE_NAMES:
            setattr(self, name, getattr(moments, name))

    def _moments_from_dict(self, state: dict[str, Any], source: str) -> _Moments:
        """Validate a state dict and convert it to float64 moments on this metric's device."""
        expected = {
            "count": (),
            "mean_x": (self.num_x,),
            "mean_y": (self.num_y,),
            "m2_x": (self.num_x,),
            "m2_y": (self.num_y,),
            "cxy": (self.num_x, self.num_y),
        }
        values = {}
        for name, shape in expected.items():
            if name not in state:
                raise ValueError(f"{source} is missing the state {name!r}; it has {sorted(state)}")
            value = torch.as_tensor(state[name])
            if tuple(value.shape) != shape:
                raise ValueError(
                    f"{source} has {name} of shape {tuple(value.shape)}, expected {shape} "
                    f"for num_x={self.num_x}, num_y={self.num_y}"
                )
            values[name] = value.to(device=self.count.device, dtype=torch.float64)
        return _Moments(**values)

    def update(self, x: Tensor | PreparedObservations, y: Tensor) -> None:
        """Add N observations.

        Args:
            x: (N, num_x) observations of the first set of units, any floating
                dtype, or the same observations made once by
                :func:`prepare_observations` to share them between metrics.
                Half-precision inputs are upcast to float32. When both
                inputs are float64 the products and row sums are float64,
                which took about twice as long in benchmarks/bench_update.py
                and gives correlations to about 1e-12. Otherwise they are
                float32, which gives correlations to about 1e-6 and means to
                about 1e-7 of each unit's std.
            y: (N, num_y) observations of the second set of units, any
                floating dtype. N may be 0, which changes nothing.

        Raises:
            ValueError: If a shape does not match, the row counts differ, or an
                input contains NaN or infinite values.
        """
        prepared = x if isinstance(x, PreparedObservations) else None
        if prepared is not None:
            if prepared.shape[1] != self.num_x:
                raise ValueError(f"x must have shape (N, {self.num_x}), got {prepared.shape}")
            num_rows = prepared.shape[0]
        else:
            _check_observations("x", x, self.num_x)
            num_rows = x.shape[0]
        _check_observations("y", y, self.num_y)
        if num_rows != y.shape[0]:
            x_shape = prepared.shape if prepared is not None else tuple(x.shape)
            raise ValueError(
                f"x and y must have the same number of rows, got x {x_shape} and y {tuple(y.shape)}"
            )
        if num_rows == 0:
            return

        device = self.count.device
        if prepared is not None:
            if prepared.device != device:
                raise ValueError(
                    f"x was prepared on {prepared.device} but the metric is on {device}; "
                    "pass device= to prepare_observations"
                )
            blocks_x = prepared.blocks
        else:
            dtype_x = torch.float64 if x.dtype == torch.float64 else torch.float32
            blocks_x = x.split(_BLOCK_ROWS)
        dtype_y = torch.float64 if y.dtype == torch.float64 else torch.float32
        moments = self._moments()
        # The states change only after every block passed the NaN check.
        for block_x, block_y in zip(blocks_x, y.split(_BLOCK_ROWS), strict=True):
            if prepared is None:
                block_x = _centre_block(block_x.detach().to(device=device, dtype=dtype_x), "x")
            centred_y = _centre_block(block_y.detach().to(device=device, dtype=dtype_y), "y")
            moments = _merge_moments(moments, _prepared_block_moments(block_x, centred_y))
        self._set_moments(moments)

    def compute(self) -> Tensor:
        """Return the (num_x, num_y) float64 Pearson table over all observations.

        Entries are clamped to [-1, 1] and are NaN where either unit has zero
        variance, which includes fewer than two observations.
        """
        denominator = torch.outer(self.m2_x, self.m2_y).sqrt_()
        table = self.cxy / denominator
        constant = (self.m2_x == 0)[:, None] | (self.m2_y == 0)[None, :]
        table = table.masked_fill_(constant, float("nan"))
        return table.clamp_(min=-1.0, max=1.0)

    def stats(self) -> dict[str, Tensor]:
        """Return the per-unit count, means and population stds, merged across processes.

        Returns:
            A dict of float64 tensors: ``"count"`` (), ``"mean_x"`` and
            ``"std_x"`` (num_x,), ``"mean_y"`` and ``"std_y"`` (num_y,). The std
            divides by the count. With no observations the means and stds are
            NaN.
        """
        if self._is_synced:
            return self._stats_of_current_states()
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn,
            should_sync=self._to_sync,
            should_unsync=self._should_unsync,
        ):
            return self._stats_of_current_states()

    def _stats_of_current_states(self) -> dict[str, Tensor]:
        count = self.count.clone()
        divisor = count if float(count) > 0 else torch.full_like(count, float("nan"))
        return {
            "count": count,
            "mean_x": torch.where(divisor.isnan(), divisor, self.mean_x),
            "std_x": (self.m2_x / divisor).sqrt(),
            "mean_y": torch.where(divisor.isnan(), divisor, self.mean_y),
            "std_y": (self.m2_y / divisor).sqrt(),
        }

    def merge_state(self, incoming_state: dict[str, Any] | Metric) -> None:
        """Merge the states of another ``PairwiseCorrelation`` (or its state dict) into this one.

        The result is the metric over the union of both sets of observations.

        Raises:
            ValueError: If the incoming metric or dict has other unit counts
                or is not a ``PairwiseCorrelation``.
        """
        if isinstance(incoming_state, Metric):
            if not isinstance(incoming_state, PairwiseCorrelation):
                raise ValueError(f"can only merge a PairwiseCorrelation, got {type(incoming_state).__name__}")
            incoming_state = incoming_state.metric_state
        if not isinstance(incoming_state, dict):
            raise ValueError(
                f"incoming_state must be a dict or a PairwiseCorrelation, got {type(incoming_state).__name__}"
            )
        self._reduce_states(incoming_state)
        self._update_count += 1

    def _reduce_states(self, incoming_state: dict[str, Any]) -> None:
        incoming = self._moments_from_dict(incoming_state, "incoming state")
        self._set_moments(_merge_moments(self._moments(), incoming))
        self._computed = None

    def _sync_dist(
        self,
        dist_sync_fn: Callable = gather_all_tensors,
        process_group: Any | None = None,
    ) -> None:
        """Gather every process's states and merge them in rank order (Chan's update).

        Every process merges the same gathered tensors in the same order, so all
        processes end up with identical states.
        """
        group = process_group or self.process_group
        gathered = {name: dist_sync_fn(getattr(self, name), group=group) for name in _STATE_NAMES}
        world_size = len(gathered["count"])
        per_rank = [_Moments(**{name: gathered[name][rank] for name in _STATE_NAMES}) for rank in range(world_size)]
        self._set_moments(functools.reduce(_merge_moments, per_rank))

    def _wrap_compute(self, compute: Callable) -> Callable:
        """Wrap ``compute`` to work inside ``sync_context()`` and to return a fresh copy.

        Inside ``sync_context()`` the states are already global, and the stock
        wrapper would raise because it tries to synchronise a second time. The
        stock wrapper also returns its cached table itself, so editing the
        result in place would change later results.
        """
        wrapped = super()._wrap_compute(compute)

        @functools.wraps(compute)
        def compute_on_current_states(*args: Any, **kwargs: Any) -> Any:
            if self._is_synced:
                return compute(*args, **kwargs)
            return wrapped(*args, **kwargs).clone()

        return compute_on_current_states

    def _apply(self, fn: Callable, exclude_state: Sequence[str] = "") -> torch.nn.Module:
        """Move the states to the target device of ``fn`` but keep them float64.

        torchmetrics only guards ``.half()``, ``.float()`` and the like, so
        ``.to(torch.float16)`` would otherwise cast the states.
        """
        this = super()._apply(fn, exclude_state=tuple(self._defaults))
        device = this._device
        for name in self._defaults:
            if name in exclude_state:
                continue
            this._defaults[name] = this._defaults[name].to(device=device, dtype=torch.float64)
            setattr(this, name, getattr(this, name).to(device=device, dtype=torch.float64))
        # A cached table may have been cast by the conversion, so recompute it next time.
        this._computed = None
        return this

    def _load_from_state_dict(
        self,
        state_dict: dict,
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        present = {name: state_dict[prefix + name] for name in _STATE_NAMES if prefix + name in state_dict}
        if present:
            incomplete = [name for name in _STATE_NAMES if name not in present]
            if incomplete:
                error_msgs.append(f"state dict for {type(self).__name__} at {prefix!r} is missing {incomplete}")
            else:
                moments = self._moments_from_dict(present, f"state dict at {prefix!r}")
                for name in _STATE_NAMES:
                    state_dict[prefix + name] = getattr(moments, name)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self._computed = None
