"""Best-buddy matching on correlation tables, Rosetta sets and concept clustering.

A table has one row per generator unit and one column per unit of a
discriminative model. NaN entries (units with zero variance) never win a
maximum and never form a pair, and ties break to the lowest index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from torch import Tensor

__all__ = ["BuddyMode", "RosettaSet", "best_buddies", "cluster_concepts", "rosetta_set"]

BuddyMode = Literal["mutual", "asymmetric"]


def _descending_order(table: Tensor, dim: int) -> Tensor:
    """Return the indices that sort ``table`` along ``dim`` from best to worst.

    NaN entries come last, and equal values keep their index order, so ties
    break to the lowest index.
    """
    is_nan = table.isnan()
    filled = table.masked_fill(is_nan, float("-inf"))
    by_value = torch.sort(filled, dim=dim, descending=True, stable=True).indices
    # A stable sort on the NaN flag moves NaN entries behind -inf ones.
    nan_flags = is_nan.gather(dim, by_value).to(torch.uint8)
    by_flag = torch.sort(nan_flags, dim=dim, stable=True).indices
    return by_value.gather(dim, by_flag)


def _top_k_mask(table: Tensor, k: int, dim: int) -> Tensor:
    """Mark the k best entries of every row (``dim=1``) or column (``dim=0``).

    Returns:
        A boolean tensor of the shape of ``table``.
    """
    order = _descending_order(table, dim)
    top = order.narrow(dim, 0, min(k, table.shape[dim]))
    mask = torch.zeros_like(table, dtype=torch.bool)
    return mask.scatter_(dim, top, True)


def _check_table(table: Tensor) -> None:
    if not isinstance(table, Tensor):
        raise TypeError(f"table must be a torch.Tensor, got {type(table).__name__}")
    if table.ndim != 2:
        raise ValueError(f"table must have shape (rows, columns), got {tuple(table.shape)}")
    if not table.is_floating_point():
        raise ValueError(f"table must have a floating dtype, got {table.dtype}")


def _check_k_and_mode(k: int, mode: str) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if mode not in ("mutual", "asymmetric"):
        raise ValueError(f"mode must be 'mutual' or 'asymmetric', got {mode!r}")


def _buddy_mask(table: Tensor, k: int, mode: BuddyMode) -> Tensor:
    """Mark the (row, column) pairs that are buddies, as defined in ``best_buddies``.

    Returns:
        (rows, columns) bool tensor.
    """
    if table.numel() == 0:
        return torch.zeros_like(table, dtype=torch.bool)
    row_choice = _top_k_mask(table, 1 if mode == "asymmetric" else k, dim=1)
    column_choice = _top_k_mask(table, k, dim=0)
    return row_choice & column_choice & ~table.isnan()


def best_buddies(table: Tensor, k: int = 1, mode: BuddyMode = "mutual") -> Tensor:
    """Find the best-buddy pairs of a table.

    With ``mode="mutual"``, (i, j) is a pair when column j is among the k
    highest entries of row i and row i is among the k highest entries of
    column j; k=1 gives the mutual argmax. With ``mode="asymmetric"``, (i, j)
    is a pair when j is row i's highest entry and i is among the k highest
    entries of column j. NaN entries never count as high and never form a
    pair, and among equal values the lower index ranks higher.

    Args:
        table: (rows, columns) floating tensor, for instance a correlation
            table with one row per generator unit.
        k: Number of top entries per row and column that count; values larger
            than a dimension include the whole dimension.
        mode: ``"mutual"`` or ``"asymmetric"``, as described above.

    Returns:
        (P, 2) int64 tensor of (row, column) pairs, sorted by row then column,
        on the device of ``table``.

    Raises:
        ValueError: If ``table`` is not 2-D and floating, ``k`` is not a
            positive int, or ``mode`` is unknown.

    Example:
        >>> best_buddies(torch.tensor([[0.9, 0.1], [0.8, 0.2]]))
        tensor([[0, 0]])
    """
    _check_table(table)
    _check_k_and_mode(k, mode)
    return _buddy_mask(table, k, mode).nonzero()


@dataclass(frozen=True)
class RosettaSet:
    """Generator units that have a buddy in every table, with their partners.

    Attributes:
        units: (R,) int64 sorted generator units (table rows).
        partners: For each table name, the (R,) int64 column of each unit's
            highest-scoring buddy in that table.
        scores: For each table name, the (R,) float64 table entry of each
            unit and its partner.
    """

    units: Tensor
    partners: dict[str, Tensor]
    scores: dict[str, Tensor]


def rosetta_set(tables: dict[str, Tensor], k: int = 1, mode: BuddyMode = "mutual") -> RosettaSet:
    """Select the generator units that have a buddy in every table.

    Buddies are found per table as in ``best_buddies``. When a unit has
    several buddies in one table (possible for k > 1), its partner is the
    buddy with the highest entry, the lowest column among equal entries.

    Args:
        tables: Non-empty dict from a name (for instance a discriminative
            model) to its (rows, columns_name) floating table. All tables must
            have the same rows, one per generator unit.
        k: As in ``best_buddies``.
        mode: As in ``best_buddies``.

    Returns:
        The selected units, their partners and the partners' scores, on the
        device of the first table.

    Raises:
        ValueError: If ``tables`` is empty, a table is invalid, or the tables
            have different numbers of rows.
    """
    if not isinstance(tables, dict) or not tables:
        raise ValueError(f"tables must be a non-empty dict of name -> table, got {tables!r}")
    _check_k_and_mode(k, mode)
    for table in tables.values():
        _check_table(table)
    row_counts = {name: table.shape[0] for name, table in tables.items()}
    if len(set(row_counts.values())) > 1:
        raise ValueError(f"all tables must have the same number of rows (generator units), got {row_counts}")

    device = next(iter(tables.values())).device
    num_rows = next(iter(row_counts.values()))
    has_buddy_everywhere = torch.ones(num_rows, dtype=torch.bool, device=device)
    best_partner: dict[str, Tensor] = {}
    for name, table in tables.items():
        mask = _buddy_mask(table, k, mode).to(device)
        has_buddy_everywhere &= mask.any(dim=1)
        if table.shape[1] == 0:
            best_partner[name] = torch.zeros(num_rows, dtype=torch.long, device=device)
            continue
        # The first buddy in each row's best-first order is the highest-scoring one.
        order = _descending_order(table, dim=1).to(device)
        first_buddy = mask.gather(1, order).to(torch.uint8).argmax(dim=1)
        best_partner[name] = order.gather(1, first_buddy[:, None]).squeeze(1)

    units = has_buddy_everywhere.nonzero().squeeze(1)
    partners = {name: partner[units] for name, partner in best_partner.items()}
    scores = {name: tables[name].to(device=device, dtype=torch.float64)[units, partners[name]] for name in tables}
    return RosettaSet(units=units, partners=partners, scores=scores)


def cluster_concepts(similarity: Tensor, min_similarity: float = 0.5) -> Tensor:
    """Group units into concepts by average-linkage hierarchical clustering.

    The distance is ``1 - similarity``, and the dendrogram is cut at
    ``1 - min_similarity``, so two clusters join only while their average
    pairwise similarity is at least ``min_similarity``. NaN similarities count
    as 0. The matrix is symmetrised by averaging it with its transpose, and the
    diagonal is ignored. Clustering uses ``scipy.cluster.hierarchy``.

    Args:
        similarity: (R, R) floating tensor, for instance the correlation
            between the generator maps of the Rosetta units.
        min_similarity: Threshold in [-1, 1].

    Returns:
        (R,) int64 labels 0..C-1 on the device of ``similarity``, numbered in
        order of first appearance.

    Raises:
        ValueError: If ``similarity`` is not a square floating matrix or
            ``min_similarity`` is outside [-1, 1].

    Example:
        >>> similarity = torch.tensor([[1.0, 0.9, 0.0], [0.9, 1.0, 0.1], [0.0, 0.1, 1.0]])
        >>> cluster_concepts(similarity)
        tensor([0, 0, 1])
    """
    if not isinstance(similarity, Tensor):
        raise TypeError(f"similarity must be a torch.Tensor, got {type(similarity).__name__}")
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"similarity must have shape (R, R), got {tuple(similarity.shape)}")
    if not similarity.is_floating_point():
        raise ValueError(f"similarity must have a floating dtype, got {similarity.dtype}")
    if not -1.0 <= min_similarity <= 1.0:
        raise ValueError(f"min_similarity must be in [-1, 1], got {min_similarity}")

    num_units = similarity.shape[0]
    if num_units < 2:
        return torch.zeros(num_units, dtype=torch.long, device=similarity.device)

    values = similarity.detach().to(device="cpu", dtype=torch.float64).numpy()
    values = np.nan_to_num(values, nan=0.0)
    distance = 1.0 - (values + values.T) / 2
    np.fill_diagonal(distance, 0.0)
    distance = np.clip(distance, 0.0, None)

    tree = linkage(squareform(distance, checks=False), method="average")
    cluster_ids = fcluster(tree, t=1.0 - min_similarity, criterion="distance")

    # Renumber scipy's 1-based ids in order of first appearance.
    _, first_index, inverse = np.unique(cluster_ids, return_index=True, return_inverse=True)
    rank_of_cluster = np.argsort(np.argsort(first_index))
    labels = rank_of_cluster[inverse]
    return torch.as_tensor(labels, dtype=torch.long, device=similarity.device)
