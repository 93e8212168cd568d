"""Versioned PostgreSQL schema migrations: ``sql/NNNN_name.sql`` files and a version table.

Each file is applied once, in order, in its own transaction together with its row in
``schema_migrations``; an advisory lock keeps workers starting at once from racing.
Running them again is harmless.
"""

from __future__ import annotations

from importlib import resources

import psycopg

from acme_customer.adapters.postgres import connection_failed

_LOCK_KEY = 0x0AC3E_C057  # any constant shared by all workers of this service


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) for every migration shipped with the package, in order."""
    folder = resources.files("acme_customer.adapters") / "sql"
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), (folder / name).read_text()) for name in names]


def apply_migrations(database_url: str) -> list[str]:
    """Apply the migrations not yet recorded; return the versions applied now.

    Raises StoreUnavailable (PostgreSQL unreachable) or StoreDefect (a statement refused).
    """
    try:
        return _apply(database_url)
    except psycopg.Error as error:
        raise connection_failed(error) from error


def _apply(database_url: str) -> list[str]:
    applied_now: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as connection:
        with connection.transaction():
            # under the lock too: concurrent CREATE TABLE IF NOT EXISTS can still collide
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version VARCHAR(200) PRIMARY KEY,"
                " applied_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW())"
            )
        for version, sql in migration_files():
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                done = connection.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (version,)).fetchone()
                if done:
                    continue
                connection.execute(sql.encode())
                connection.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                applied_now.append(version)
    return applied_now
