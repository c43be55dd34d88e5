"""Tests of the Global Controller's placement decisions."""
