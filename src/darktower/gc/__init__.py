"""The Global Controller service."""
