"""Entry point of ``python -m rosetta_pl``."""

from rosetta_pl.cli import main

if __name__ == "__main__":
    main()
