"""Generators of the zoo, one module per family."""
