import pytest
import torch

from rosetta_pl.callbacks.neuron_grid import NeuronGrid, colorize, label_grid, overlay, strongest_neurons
from rosetta_pl.matching import RosettaSet


def test_colorize_spans_colormap_ends():
    maps = torch.tensor([[[0.0, 1.0], [2.0, 4.0]]])
    colors = colorize(maps, "gray")
    assert colors.shape == (1, 3, 2, 2)
    assert torch.allclose(colors[0, :, 0, 0], torch.zeros(3))
    assert torch.allclose(colors[0, :, 1, 1], torch.ones(3))


def test_colorize_constant_map_is_finite():
    colors = colorize(torch.full((2, 3, 3), 7.0))
    assert torch.isfinite(colors).all()


def test_overlay_resizes_map_to_image():
    images = torch.rand(2, 1, 16, 16)
    result = overlay(images, torch.rand(2, 4, 4))
    assert result.shape == (2, 3, 16, 16)
    assert result.min() >= 0
    assert result.max() <= 1


def test_strongest_neurons_rank_by_weakest_partner():
    chosen = RosettaSet(
        units=torch.tensor([3, 5, 9]),
        partners={"a": torch.tensor([0, 1, 2]), "b": torch.tensor([0, 1, 2])},
        scores={"a": torch.tensor([0.9, 0.6, 0.8], dtype=torch.float64),
                "b": torch.tensor([0.2, 0.7, float("nan")], dtype=torch.float64)},
    )
    assert strongest_neurons(chosen, 2) == [1, 0]


def test_unknown_colormap_is_rejected():
    with pytest.raises(ValueError, match="unknown colormap 'infernoo'"):
        NeuronGrid(colormap="infernoo")


def test_label_grid_adds_margin_and_header():
    grid = torch.rand(3, 40, 60)
    labelled = label_grid(grid, ["image", "generator"], [["neuron 0", "generator: main.2[3]"]], 2, 18, 2)
    assert labelled.shape == (3, 40 + 18, 60 + 220)
    assert torch.equal(labelled[:, 18:, 220:], (grid * 255).round() / 255)
    assert labelled[:, :18, :].min() < 1  # header text drawn
