"""Tests of the Meeting Controller service."""
