"""Store: SQLAlchemy models (SQLite by default, PostgreSQL when configured) and repository functions."""
