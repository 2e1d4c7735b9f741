"""Alembic revisions of the livewatch schema, one file per revision (`NNNN_slug.py`), oldest first."""
