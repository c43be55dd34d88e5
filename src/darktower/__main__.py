"""`python -m darktower`: the same command as the `darktower` console script."""

from __future__ import annotations

from darktower.cli import main

if __name__ == "__main__":
    main()
