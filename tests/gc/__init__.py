"""Tests of the Global Controller."""
