"""Apply supabase/migrations/ in order to a Postgres database, once each."""

from __future__ import annotations

from pathlib import Path

import psycopg

_SUPABASE = Path(__file__).resolve().parents[2] / "supabase"
MIGRATIONS_DIR = _SUPABASE / "migrations"
BOOTSTRAP = _SUPABASE / "bootstrap" / "plain_postgres.sql"

# The Supabase CLI's own bookkeeping table, so `leadwatch migrate` and `supabase db push` agree.
_HISTORY = """
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (
  version text primary key, statements text[], name text)
"""


def pending_files(applied: set[str], directory: Path = MIGRATIONS_DIR) -> list[Path]:
    """Migration files not yet applied, in version order."""
    files = sorted(directory.glob("*.sql"))
    return [f for f in files if f.name.split("_", 1)[0] not in applied]


def migrate(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply what is pending and return the names applied. Safe to run twice, or concurrently."""
    applied_now: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(hashtext('leadwatch.migrate'))")
        try:
            row = conn.execute("select to_regprocedure('auth.jwt()') is not null").fetchone()
            has_auth = bool(row and row[0])
            if not has_auth:  # plain Postgres: create what Supabase would provide
                conn.execute(BOOTSTRAP.read_text())
            conn.execute(_HISTORY)
            applied = {row[0] for row in conn.execute("select version from supabase_migrations.schema_migrations")}
            for path in pending_files(applied, directory):
                version, name = path.stem.split("_", 1)
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute(
                        "insert into supabase_migrations.schema_migrations (version, name) values (%s, %s)",
                        (version, name),
                    )
                applied_now.append(path.name)
        finally:
            conn.execute("select pg_advisory_unlock(hashtext('leadwatch.migrate'))")
    return applied_now
