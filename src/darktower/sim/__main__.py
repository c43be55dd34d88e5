"""`python -m darktower.sim` = `darktower sim`."""

from __future__ import annotations

import typer

from darktower.sim.cli import sim


def main() -> None:
    """Run `darktower sim` as a program of its own."""
    typer.run(sim)


if __name__ == "__main__":
    main()
