"""The Supabase CLI project (config.toml, seed.sql) and Supabase Cron (pg_cron) scheduling of the sweep."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import psycopg
import pytest
from leadwatch.devtools.demo import DEMO_TENANT, load_demo
from leadwatch.migrate import SEED, migrate

ROOT = Path(__file__).resolve().parents[1]
LEADWATCH = [sys.executable, "-m", "leadwatch.cli"]


def test_config_toml_is_a_supabase_cli_project_seeded_by_seed_sql():
    config = tomllib.loads((ROOT / "supabase" / "config.toml").read_text())
    assert config["project_id"] == "leadwatch"
    assert config["db"]["major_version"] in (15, 17)
    assert config["db"]["migrations"]["enabled"] is True
    assert config["db"]["seed"] == {"enabled": True, "sql_paths": ["./seed.sql"]}
    assert (ROOT / "supabase" / "seed.sql").is_file()


def test_the_dev_demo_is_supabase_seed_sql():
    """One source: `leadwatch dev` applies the very file `supabase db reset` loads."""
    assert SEED.resolve() == (ROOT / "supabase" / "seed.sql").resolve()


@pytest.fixture
def fresh_database(server_url):
    name = f"leadwatch_seed_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    migrate(url)
    yield url
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'drop database "{name}" with (force)')


def test_seed_raises_alerts_of_every_severity_once(fresh_database):
    first = load_demo(fresh_database)
    assert load_demo(fresh_database) == first  # idempotent: a second run adds nothing
    with psycopg.connect(fresh_database) as conn:
        severities = dict(
            conn.execute(
                "select severity, count(*) from max_alerts where tenant_id = %s and resolved_at is null group by 1",
                [DEMO_TENANT],
            ).fetchall()
        )
        sophie = conn.execute(
            "select type from max_alerts where lead_id = '694d0bed15df5b9e1' and resolved_at is null"
        ).fetchall()
        activities = conn.execute("select count(*) from lead_activities").fetchone()[0]
        types = {r[0] for r in conn.execute("select type from max_alerts where resolved_at is null").fetchall()}
    assert set(severities) == {"high", "med", "low"} and sum(severities.values()) == first
    assert sophie == [("NoReply3d",)]
    assert activities == 11
    # a follow-up on WhatsApp, a call and a switch to the lead's channel: every kind of action
    assert types == {"NoReply3d", "NoContact7d", "StaleLead30d", "HighValueRisk", "PreferredChannel"}


def _cron_server(server_url: str) -> str | None:
    """Why pg_cron cannot be tested on this server, or None when it can."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        preloaded = conn.execute("select current_setting('shared_preload_libraries')").fetchone()[0]
    if "pg_cron" in preloaded:
        return None
    return (
        "needs a PostgreSQL with pg_cron preloaded; .ci/run starts one (Debian postgresql-15-cron): "
        "or set LEADWATCH_TEST_DATABASE_URL to a server with shared_preload_libraries = 'pg_cron'"
    )


@pytest.mark.pg_cron
def test_pg_cron_schedules_the_daily_sweep_and_unschedules_it(server_url, fresh_database):
    reason = _cron_server(server_url)
    if reason:
        if os.environ.get("LEADWATCH_REQUIRE_PG_CRON"):
            pytest.fail(reason)
        pytest.skip(reason)
    env = {**os.environ, "DATABASE_URL": fresh_database}
    database = psycopg.conninfo.conninfo_to_dict(fresh_database)["dbname"]
    for _ in range(2):  # a second run updates the job, never adds one
        scheduled = subprocess.run([*LEADWATCH, "schedule", "--pg-cron"], capture_output=True, text=True, env=env)
        assert scheduled.returncode == 0, scheduled.stderr
    with psycopg.connect(server_url, autocommit=True) as conn:
        cron_database = conn.execute("select current_setting('cron.database_name')").fetchone()[0]
    cron_url = psycopg.conninfo.make_conninfo(server_url, dbname=cron_database)
    with psycopg.connect(cron_url, autocommit=True) as cron:
        jobs = cron.execute("select schedule, command, active from cron.job where database = %s", [database]).fetchall()
    assert jobs == [("0 8 * * *", "call public.scheduled_sweep()", True)]

    with psycopg.connect(fresh_database, autocommit=True) as conn:  # what pg_cron will run, run here
        conn.execute(
            "select public.log_activity('acme', 'L1', 'email', 'in', 'sent', null, null, now() - interval '9 days')"
        )
        conn.execute(jobs[0][1])
        raised = conn.execute("select type from max_alerts where resolved_at is null").fetchall()
    assert raised == [("NoContact7d",)]

    unscheduled = subprocess.run(
        [*LEADWATCH, "schedule", "--pg-cron", "--unschedule"], capture_output=True, text=True, env=env
    )
    assert unscheduled.returncode == 0 and unscheduled.stdout.strip() == "unscheduled", unscheduled.stderr
    with psycopg.connect(cron_url, autocommit=True) as cron:
        assert cron.execute("select count(*) from cron.job where database = %s", [database]).fetchone()[0] == 0


def test_schedule_without_pg_cron_says_how_to_get_it(server_url, fresh_database):
    if _cron_server(server_url) is None:
        pytest.skip("this server has pg_cron: the test above covers it")
    result = subprocess.run(
        [*LEADWATCH, "schedule", "--pg-cron", "--database-url", fresh_database], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "pg_cron is not loaded" in result.stderr and "postgresql-15-cron" in result.stderr
    assert "Traceback" not in result.stderr


def test_on_plain_postgres_the_supabase_stores_sweep_of_every_tenant_is_one_call(supabase_store):
    """PostgREST knows no sweep_tenants() there (supabase/citus/distribute.sql alone creates it, on Citus):
    the Supabase store asks once, then sweeps every tenant in one call and prunes the due index, as before."""
    supabase_store.sweep()
    supabase_store.sweep()
    assert supabase_store.fake.calls == ["sweep_tenants"] + ["sweep_alerts", "prune_due_index"] * 2
