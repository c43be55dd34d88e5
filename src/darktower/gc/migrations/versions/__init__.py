"""Alembic revisions of the GC store, oldest first (`down_revision` chains them)."""
