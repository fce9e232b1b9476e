"""The command line: a LightningCLI whose models and data are named by class path.

``python -m rosetta_pl fit --config configs/mine.yaml`` mines Rosetta neurons;
``python -m rosetta_pl fit --config configs/invert.yaml`` inverts targets. Both
make one pass over their data, so ``trainer.max_epochs`` defaults to 1.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

import rosetta_pl.strategies  # noqa: F401  (registers the "rosetta_ddp" strategies)

# Mining and inversion keep every network in eval mode on purpose (batch norm uses
# its running statistics), and the index loaders run in the main process only.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
# Neither module has an optimiser of Lightning's: inversion runs its own per batch.
warnings.filterwarnings("ignore", message=r"`LightningModule.configure_optimizers` returned `None`")
warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined")
# Checkpoints of mining hold the statistics after each step, which is what resuming needs.
warnings.filterwarnings("ignore", message=r"Using ModelCheckpoint with manual optimization")
# The mining data module resumes after the samples its checkpoint consumed,
# which Lightning cannot tell from the loader itself.
warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended")


class ConciseArgumentParser(LightningArgumentParser):
    """LightningArgumentParser whose errors skip the usage line.

    The usage of a LightningCLI lists every trainer, model and data option,
    dozens of lines that bury the one line naming the invalid value. The error
    keeps jsonargparse's tip to run ``--help`` for the options.
    """

    def print_usage(self, file: Any = None) -> None:
        return None


class RosettaCLI(LightningCLI):
    """LightningCLI with one-pass defaults; models and data modules are given by ``class_path``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.set_defaults({"trainer.max_epochs": 1})

    def instantiate_classes(self) -> None:
        """Build the model, data and trainer; a config error exits with its message alone.

        jsonargparse wraps an error raised while a class is built in a report
        on every type it tried. The first error raised is the one that names
        the value and the fix, so only that one is printed. Set
        ``ROSETTA_DEBUG=1`` to get the full traceback instead.
        """
        try:
            super().instantiate_classes()
        except Exception as error:
            if os.environ.get("ROSETTA_DEBUG"):
                raise
            print(f"error: {first_cause(error)}", file=sys.stderr)
            raise SystemExit(2) from error


def first_cause(error: BaseException) -> BaseException:
    """Return the innermost exception of ``error``'s cause and context chain."""
    seen = {id(error)}
    while True:
        inner = error.__cause__ or error.__context__
        if inner is None or id(inner) in seen:
            return error
        seen.add(id(inner))
        error = inner


def main(args: list[str] | None = None) -> RosettaCLI:
    """Run the command line (``args`` replaces ``sys.argv[1:]`` when given)."""
    return RosettaCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        auto_configure_optimizers=False,
        parser_class=ConciseArgumentParser,
    )
