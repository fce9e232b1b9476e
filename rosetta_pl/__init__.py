"""rosetta_pl: Rosetta neurons shared by unrelated vision models, mined with PyTorch Lightning."""

__version__ = "0.1.0"
