"""Tests of `darktower mh` (the Janus-backed media handler)."""
