"""Apply supabase/migrations/ in order to a Postgres database, once each."""

from __future__ import annotations

from pathlib import Path

import psycopg

from .errors import ConfigError


def _schema_dir() -> Path:
    """The supabase/ folder: shipped in the package as `leadwatch/schema` (a wheel), or the checkout's own."""
    here = Path(__file__).resolve().parent
    packaged = here / "schema"
    return packaged if (packaged / "migrations").is_dir() else here.parents[1] / "supabase"


SCHEMA_DIR = _schema_dir()
MIGRATIONS_DIR = SCHEMA_DIR / "migrations"
BOOTSTRAP = SCHEMA_DIR / "bootstrap" / "plain_postgres.sql"
SEED = SCHEMA_DIR / "seed.sql"
# On a Citus coordinator only: distribute the tables by tenant and delegate the functions (docs/citus.md).
DISTRIBUTE = SCHEMA_DIR / "citus" / "distribute.sql"

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
    """Apply what is pending and return the names applied. Safe to run twice, or concurrently.

    No migration file in `directory` is an error (a broken install), never "up to date".
    On a Citus coordinator, supabase/citus/distribute.sql follows (nothing else runs it).
    """
    if not sorted(Path(directory).glob("*.sql")):
        raise ConfigError(f"no migration files (*.sql) found in {directory}: is leadwatch installed with its SQL?")
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
            if conn.execute("select 1 from pg_extension where extname = 'citus'").fetchone():
                with conn.transaction():
                    conn.execute(DISTRIBUTE.read_text())
        finally:
            conn.execute("select pg_advisory_unlock(hashtext('leadwatch.migrate'))")
    return applied_now
