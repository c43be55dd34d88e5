"""darktower's benchmark suite: each hot path against its own baseline, measured in one run.

`python -m bench [--smoke] [--only NAME ...] [--results DIR] [--asyncio] [--profile DIR]`;
see `bench/README.md`.
"""
