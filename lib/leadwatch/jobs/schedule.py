"""Schedule the daily sweep inside the database with pg_cron (Supabase Cron), instead of Cloud Scheduler."""

from __future__ import annotations

import psycopg

from ..errors import ConfigError

JOB = "leadwatch-daily-sweep"
# The sweep, committed, then the due-time index read past what it left behind (as Store.sweep does).
COMMAND = "call public.scheduled_sweep()"
DEFAULT_SCHEDULE = "0 8 * * *"  # pg_cron reads it in UTC: 09:00 in Paris in winter, 10:00 in summer


def _cron_database(conn: psycopg.Connection) -> tuple[str, str]:
    """(this database, the database pg_cron lives in), or a ConfigError saying how to get pg_cron."""
    row = conn.execute(
        "select current_database(), current_setting('cron.database_name', true), "
        "current_setting('shared_preload_libraries')"
    ).fetchone()
    assert row is not None
    database, cron_database, preloaded = row
    if "pg_cron" not in preloaded or not cron_database:
        raise ConfigError(
            "pg_cron is not loaded in this PostgreSQL (shared_preload_libraries). On Supabase: Database → "
            "Extensions → enable pg_cron (Supabase Cron). Self-hosted: install pg_cron (Debian: postgresql-15-cron), "
            "set shared_preload_libraries = 'pg_cron' and cron.database_name, restart."
        )
    return database, cron_database


def _job_name(database: str, cron_database: str) -> str:
    """One job per database of the server (pg_cron's job names are per user, not per database)."""
    return JOB if database == cron_database else f"{JOB}:{database}"


def _cron_connection(database_url: str, cron_database: str) -> psycopg.Connection:
    conn = psycopg.connect(psycopg.conninfo.make_conninfo(database_url, dbname=cron_database), autocommit=True)
    conn.execute("create extension if not exists pg_cron")
    return conn


def schedule(database_url: str, at: str = DEFAULT_SCHEDULE) -> int:
    """Create or update the job that runs `call public.scheduled_sweep()` at `at` (cron syntax, UTC)
    in the database of `database_url`; return its job id."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        database, cron_database = _cron_database(conn)
    with _cron_connection(database_url, cron_database) as cron:
        name = _job_name(database, cron_database)
        if database == cron_database:  # Supabase: one database
            row = cron.execute("select cron.schedule(%s, %s, %s)", [name, at, COMMAND]).fetchone()
        else:
            row = cron.execute(
                "select cron.schedule_in_database(%s, %s, %s, %s)", [name, at, COMMAND, database]
            ).fetchone()
    assert row is not None
    return int(row[0])


def unschedule(database_url: str) -> bool:
    """Remove the job (True), or say it was not there (False)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        database, cron_database = _cron_database(conn)
    with _cron_connection(database_url, cron_database) as cron:
        jobs = cron.execute(
            "select jobid from cron.job where jobname = %s and database = %s",
            [_job_name(database, cron_database), database],
        ).fetchall()
        for (job_id,) in jobs:
            cron.execute("select cron.unschedule(%s::bigint)", [job_id])
    return bool(jobs)
