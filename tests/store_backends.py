"""Database back-ends for the store tests: a SQLite file per test, and PostgreSQL when one is available.

PostgreSQL comes from, in order:
1. $LIVEWATCH_TEST_PG_URL (CI sets it from tests/store_pg_setup.sh). If it is set but the server cannot
   be reached, the tests fail: a configured database that is down is an error, not a reason to skip.
2. $LIVEWATCH_TEST_PG_UNAVAILABLE: the setup script's reason why there is no server; the tests skip
   with it.
3. The server tests/store_pg_setup.sh makes (livewatch@127.0.0.1:5432/livewatch_test), if it answers;
   otherwise the tests skip, saying how to get one.

Each PostgreSQL test gets a fresh schema (selected through the URL's search_path option, so
`Database(url)` needs nothing special) and drops it afterwards.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

PG_URL_ENV = "LIVEWATCH_TEST_PG_URL"
PG_UNAVAILABLE_ENV = "LIVEWATCH_TEST_PG_UNAVAILABLE"
DEFAULT_PG_URL = "postgresql+psycopg://livewatch:livewatch@127.0.0.1:5432/livewatch_test"
BACKENDS = ("sqlite", "postgresql")


@functools.cache
def _pg_server() -> tuple[str | None, str]:
    """(url, "") when a server answers, (None, why) when the tests should skip."""
    configured = os.environ.get(PG_URL_ENV)
    url = configured or DEFAULT_PG_URL
    if not configured and os.environ.get(PG_UNAVAILABLE_ENV):
        return None, f"PostgreSQL tests skipped: {os.environ[PG_UNAVAILABLE_ENV]}"
    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as e:
        shown = make_url(url).render_as_string(hide_password=True)
        first_line = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
        if configured:
            return None, f"FAIL:{PG_URL_ENV}={shown} is set but unreachable: {first_line}"
        return None, (
            f"PostgreSQL tests skipped: {PG_URL_ENV} is not set and {shown} does not answer "
            f"({first_line}); start one with `bash tests/store_pg_setup.sh` (root, Debian)"
        )
    finally:
        engine.dispose()
    return url, ""


def pg_base_url() -> str:
    url, why = _pg_server()
    if url is None:
        if why.startswith("FAIL:"):
            pytest.fail(why.removeprefix("FAIL:"), pytrace=False)
        pytest.skip(why)
    return url


@contextmanager
def pg_schema_url() -> Iterator[str]:
    """A URL whose connections work in a new, empty schema; the schema is dropped on exit."""
    base = pg_base_url()
    schema = f"lw_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '20s'"))
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


@contextmanager
def backend_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database of the given back-end ('sqlite' or 'postgresql')."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'livewatch.db'}"
    elif backend == "postgresql":
        with pg_schema_url() as url:
            yield url
    else:
        raise ValueError(backend)
