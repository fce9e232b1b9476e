"""Best buddies, Rosetta sets and concept clustering on hand-built tables."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from rosetta_pl.matching import RosettaSet, best_buddies, cluster_concepts, rosetta_set

NAN = float("nan")


def pairs(*expected: tuple[int, int]) -> torch.Tensor:
    return torch.tensor(expected, dtype=torch.long).reshape(-1, 2)


def ranked(values: list[float], k: int) -> set[int]:
    """Indices of the k best values: higher first, NaN last, lower index first on ties."""
    keys = [(math.isnan(value), -value if not math.isnan(value) else 0.0, index) for index, value in enumerate(values)]
    return {index for _, _, index in sorted(keys)[:k]}


def brute_force_buddies(table: torch.Tensor, k: int, mode: str) -> torch.Tensor:
    rows = table.tolist()
    columns = table.T.tolist()
    found = []
    for i, row in enumerate(rows):
        row_choice = ranked(row, 1 if mode == "asymmetric" else k)
        for j in sorted(row_choice):
            if not math.isnan(row[j]) and i in ranked(columns[j], k):
                found.append((i, j))
    return pairs(*found)


def test_best_buddies_mutual_argmax() -> None:
    table = torch.tensor([[0.9, 0.1, 0.3], [0.8, 0.2, 0.7], [0.1, 0.6, 0.5]])

    assert torch.equal(best_buddies(table), pairs((0, 0), (2, 1)))


def test_best_buddies_ties_break_to_lowest_index() -> None:
    table = torch.tensor([[0.5, 0.5, 0.1], [0.5, 0.2, 0.5]])

    assert torch.equal(best_buddies(table), pairs((0, 0)))
    assert torch.equal(best_buddies(table.T), pairs((0, 0)))


def test_best_buddies_skip_nan_rows_and_columns() -> None:
    table = torch.tensor([[NAN, NAN, NAN], [0.3, NAN, 0.9], [0.4, NAN, 0.2]])

    found = best_buddies(table, k=3)

    assert torch.equal(best_buddies(table), pairs((1, 2), (2, 0)))
    assert not (found[:, 0] == 0).any()
    assert not (found[:, 1] == 1).any()


def test_best_buddies_nan_never_wins() -> None:
    table = torch.tensor([[NAN, 0.1], [0.2, 0.3]])

    assert torch.equal(best_buddies(table), pairs((1, 1)))
    assert torch.equal(best_buddies(table, k=2), pairs((0, 1), (1, 0), (1, 1)))
    assert torch.equal(best_buddies(torch.tensor([[NAN, -math.inf]])), pairs((0, 1)))


def test_best_buddies_mutual_top_k() -> None:
    table = torch.tensor([[0.9, 0.8, 0.1], [0.85, 0.2, 0.3], [0.7, 0.75, 0.6]])

    assert torch.equal(best_buddies(table, k=1), pairs((0, 0)))
    assert torch.equal(best_buddies(table, k=2), pairs((0, 0), (0, 1), (1, 0), (1, 2), (2, 1)))
    assert best_buddies(table, k=3).shape == (9, 2)
    assert torch.equal(best_buddies(table, k=10), best_buddies(table, k=3))


def test_best_buddies_asymmetric() -> None:
    table = torch.tensor([[0.9, 0.8, 0.1], [0.85, 0.2, 0.3], [0.7, 0.75, 0.6]])

    assert torch.equal(best_buddies(table, k=1, mode="asymmetric"), pairs((0, 0)))
    assert torch.equal(best_buddies(table, k=2, mode="asymmetric"), pairs((0, 0), (1, 0), (2, 1)))


@pytest.mark.parametrize("mode", ["mutual", "asymmetric"])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_best_buddies_match_brute_force(k: int, mode: str) -> None:
    generator = torch.Generator().manual_seed(k)
    # Rounding to one decimal makes many ties, and some entries are NaN.
    table = torch.rand(12, 9, generator=generator).mul(10).round().div(10)
    table[torch.rand(12, 9, generator=generator) < 0.1] = NAN
    table[3] = NAN
    table[:, 5] = NAN

    found = best_buddies(table, k=k, mode=mode)

    assert found.dtype == torch.long
    assert torch.equal(found, brute_force_buddies(table, k, mode))


def test_best_buddies_empty_and_sorted() -> None:
    assert best_buddies(torch.empty(0, 4)).shape == (0, 2)
    assert best_buddies(torch.full((2, 3), NAN)).shape == (0, 2)
    table = torch.eye(5, dtype=torch.float64).flip(0)

    found = best_buddies(table)

    assert torch.equal(found, pairs((0, 4), (1, 3), (2, 2), (3, 1), (4, 0)))


def test_best_buddies_reject_invalid_arguments() -> None:
    table = torch.rand(3, 4)

    with pytest.raises(ValueError, match=r"table must have shape \(rows, columns\), got \(4,\)"):
        best_buddies(torch.rand(4))
    with pytest.raises(ValueError, match="table must have a floating dtype, got torch.int64"):
        best_buddies(torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="k must be a positive int, got 0"):
        best_buddies(table, k=0)
    with pytest.raises(ValueError, match="mode must be 'mutual' or 'asymmetric', got 'both'"):
        best_buddies(table, mode="both")  # type: ignore[arg-type]


def rosetta_tables() -> dict[str, torch.Tensor]:
    return {
        "a": torch.tensor([[0.9, 0.8, 0.1], [0.85, 0.2, 0.3], [0.7, 0.75, 0.6]]),
        "b": torch.tensor(
            [[0.1, 0.9, 0.2, 0.0], [0.3, 0.1, 0.2, 0.95], [0.5, 0.4, 0.8, 0.1]],
            dtype=torch.float64,
        ),
    }


def test_rosetta_set_needs_buddy_in_every_table() -> None:
    found = rosetta_set(rosetta_tables())

    assert isinstance(found, RosettaSet)
    assert torch.equal(found.units, torch.tensor([0]))
    assert torch.equal(found.partners["a"], torch.tensor([0]))
    assert torch.equal(found.partners["b"], torch.tensor([1]))
    assert torch.equal(found.scores["a"], torch.tensor([0.9], dtype=torch.float32).double())
    assert torch.equal(found.scores["b"], torch.tensor([0.9], dtype=torch.float64))


def test_rosetta_set_picks_best_buddy_for_top_k() -> None:
    found = rosetta_set(rosetta_tables(), k=2)

    assert torch.equal(found.units, torch.tensor([0, 1, 2]))
    assert torch.equal(found.partners["a"], torch.tensor([0, 0, 1]))
    assert torch.equal(found.partners["b"], torch.tensor([1, 3, 2]))
    expected_a = torch.tensor([0.9, 0.85, 0.75], dtype=torch.float32).double()
    assert torch.equal(found.scores["a"], expected_a)
    assert torch.equal(found.scores["b"], torch.tensor([0.9, 0.95, 0.8], dtype=torch.float64))
    assert all(score.dtype == torch.float64 for score in found.scores.values())
    assert all(partner.dtype == torch.long for partner in found.partners.values())


def test_rosetta_set_asymmetric_mode() -> None:
    found = rosetta_set(rosetta_tables(), k=2, mode="asymmetric")

    # Table "a" pairs rows 0, 1 and 2, and table "b" pairs (0, 1), (1, 3) and (2, 2).
    assert torch.equal(found.units, torch.tensor([0, 1, 2]))
    assert torch.equal(found.partners["a"], torch.tensor([0, 0, 1]))
    assert torch.equal(found.partners["b"], torch.tensor([1, 3, 2]))


def test_rosetta_set_excludes_nan_rows() -> None:
    tables = rosetta_tables()
    tables["b"][0] = NAN

    found = rosetta_set(tables, k=2)

    assert torch.equal(found.units, torch.tensor([1, 2]))
    assert torch.equal(found.partners["b"], torch.tensor([3, 2]))


def test_rosetta_set_is_frozen() -> None:
    found = rosetta_set(rosetta_tables())

    with pytest.raises(dataclasses.FrozenInstanceError):
        found.units = torch.tensor([1])  # type: ignore[misc]


def test_rosetta_set_rejects_invalid_tables() -> None:
    with pytest.raises(ValueError, match="tables must be a non-empty dict"):
        rosetta_set({})
    mismatched = {"a": torch.rand(3, 2), "b": torch.rand(4, 2)}
    with pytest.raises(ValueError, match=r"same number of rows .*got \{'a': 3, 'b': 4\}"):
        rosetta_set(mismatched)
    with pytest.raises(ValueError, match="k must be a positive int, got -1"):
        rosetta_set({"a": torch.rand(3, 2)}, k=-1)


def test_cluster_concepts_groups_blocks() -> None:
    similarity = torch.full((5, 5), 0.1)
    similarity[0::2, 0::2] = 0.9
    similarity[1::2, 1::2] = 0.8
    similarity.fill_diagonal_(1.0)

    labels = cluster_concepts(similarity)

    assert labels.dtype == torch.long
    assert torch.equal(labels, torch.tensor([0, 1, 0, 1, 0]))
    assert torch.equal(cluster_concepts(similarity, min_similarity=0.95), torch.arange(5))
    assert torch.equal(cluster_concepts(similarity, min_similarity=-1.0), torch.zeros(5).long())


def test_cluster_concepts_uses_average_linkage() -> None:
    # Single linkage would join unit 2 at similarity 0.6, but average linkage joins it at 0.4.
    similarity = torch.tensor([[1.0, 0.9, 0.2], [0.9, 1.0, 0.6], [0.2, 0.6, 1.0]])

    assert torch.equal(cluster_concepts(similarity, min_similarity=0.5), torch.tensor([0, 0, 1]))
    assert torch.equal(cluster_concepts(similarity, min_similarity=0.35), torch.tensor([0, 0, 0]))


def test_cluster_concepts_treats_nan_as_zero() -> None:
    similarity = torch.tensor([[1.0, 0.9, NAN], [0.9, 1.0, 0.8], [NAN, 0.8, 1.0]])

    assert torch.equal(cluster_concepts(similarity, min_similarity=0.45), torch.tensor([0, 0, 1]))
    assert torch.equal(cluster_concepts(similarity, min_similarity=0.35), torch.tensor([0, 0, 0]))


def test_cluster_concepts_numbers_by_first_appearance() -> None:
    similarity = torch.full((4, 4), 0.0, dtype=torch.float64)
    similarity[0, 3] = similarity[3, 0] = 0.9
    similarity.fill_diagonal_(1.0)

    assert torch.equal(cluster_concepts(similarity), torch.tensor([0, 1, 2, 0]))


def test_cluster_concepts_small_inputs() -> None:
    assert cluster_concepts(torch.empty(0, 0)).shape == (0,)
    assert torch.equal(cluster_concepts(torch.ones(1, 1)), torch.tensor([0]))


def test_cluster_concepts_rejects_invalid_arguments() -> None:
    with pytest.raises(ValueError, match=r"similarity must have shape \(R, R\), got \(2, 3\)"):
        cluster_concepts(torch.rand(2, 3))
    with pytest.raises(ValueError, match=r"min_similarity must be in \[-1, 1\], got 1.5"):
        cluster_concepts(torch.eye(2), min_similarity=1.5)
