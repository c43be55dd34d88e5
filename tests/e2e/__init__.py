"""End-to-end tests: a real GC process, real MC processes, simulated MHs and real Redis."""
