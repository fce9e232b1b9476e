"""Callbacks that log and save what mining and inversion produce."""

from rosetta_pl.callbacks.neuron_grid import NeuronGrid
from rosetta_pl.callbacks.translation import TranslationMetrics

__all__ = ["NeuronGrid", "TranslationMetrics"]
