"""A simulated media handler: registers with a GC and reports a plausible, moving load."""
