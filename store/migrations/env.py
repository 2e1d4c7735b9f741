"""Alembic environment for the livewatch schema (loaded by Alembic, not imported).

livewatch runs migrations in-process (`store.migrations.ensure_schema`), which hands Alembic an open
connection already inside a locked transaction via `config.attributes["connection"]`; Alembic then
neither begins nor commits, so the whole upgrade commits or rolls back as one. With no connection
and a `sqlalchemy.url` option this opens its own (used by `python -m store.migrations upgrade --sql`).
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from store.migrations import compare_type, include_object
from store.models import Base

config = context.config
target_metadata = Base.metadata


def _run_with(connection: Connection) -> None:
    # render_as_batch: SQLite has almost no ALTER TABLE, so autogenerate writes batch blocks (a table
    # copy on SQLite, plain ALTERs elsewhere) and revisions stay portable.
    # `revision` asks for strict type comparison so that it also writes the ALTERs SQLite would not need
    # (VARCHAR length, INTEGER width); everything else compares as store.migrations.compare_type says.
    strict = bool(config.attributes.get("strict_types"))
    comparator: Any = True if strict else compare_type
    context.configure(
        connection=connection,
        transactional_ddl=True,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=comparator,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        literal_binds=True,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=compare_type,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_with(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection and no sqlalchemy.url: use `python -m store.migrations`")
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            _run_with(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
