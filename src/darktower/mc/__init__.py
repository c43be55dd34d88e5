"""The Meeting Controller service."""
