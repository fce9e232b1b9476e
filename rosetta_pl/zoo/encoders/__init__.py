"""Discriminative models of the zoo, one module per family."""
