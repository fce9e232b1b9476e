"""Callbacks that log and save what mining and inversion produce."""

from rosetta_pl.callbacks.neuron_grid import NeuronGrid

__all__ = ["NeuronGrid"]
