"""Tests of the GC store, on whichever database `tests/gc/conftest.py` provides."""
