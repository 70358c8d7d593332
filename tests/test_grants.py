"""Grants that do not trust the platform's defaults, and an append-only history.

The schema is migrated into a scratch database whose migrating role first gets Supabase's default
privileges (ALL on every new table, sequence and function of `public` for anon, authenticated and
service_role), as on a hosted project; the privileges that remain must be exactly the ones we grant.
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from helpers import add_leads, ago, log
from leadwatch.migrate import BOOTSTRAP, migrate

ROLES = ("anon", "authenticated", "service_role")
READ = {"SELECT"}
WRITE = {"SELECT", "INSERT", "UPDATE", "DELETE"}
TABLES = {
    "leads": {"authenticated": READ, "service_role": WRITE},
    "lead_state": {"authenticated": READ, "service_role": WRITE},
    "lead_activities": {"authenticated": READ, "service_role": WRITE},
    "alert_rules": {"authenticated": READ, "service_role": WRITE},
    "max_alerts": {"authenticated": READ, "service_role": WRITE},
    "alert_events": {"authenticated": READ, "service_role": {"SELECT", "INSERT"}},
    "alert_counts": {"authenticated": READ, "service_role": READ},
    "active_alerts": {"authenticated": READ, "service_role": READ},
    "alert_events_id_seq": {},
}
USERS = ("authenticated", "service_role")
FUNCTIONS = {
    "is_trusted_caller()": ("anon", *USERS),
    **dict.fromkeys(
        [
            "current_tenant()",
            "current_app_role()",
            "sees_all_tenants()",
            "sees_whole_tenant()",
            "raise_error(text,text,text)",
            "uuid_v7()",
            "owned_leads()",
            "can_see_lead(text,text)",
            "assert_acts_in(text,text[])",
            "rules_for(text)",
            "rule_thresholds(text)",
            "counts_as_contact(text)",
            "activity_json(lead_activities)",
            "log_activity(text,text,text,text,text,text,jsonb,timestamp with time zone,text)",
            "alert_json(max_alerts,text,text)",
            "list_active_alerts(text,integer,jsonb,text,text,text,text)",
            "resolve_alert(text,uuid,text)",
            "list_lead_activities(text,text,integer,jsonb)",
            "lead_json(leads)",
            "upsert_leads(text,jsonb)",
            "prepare_whatsapp(text,uuid,text)",
            "prepare_action(text,uuid)",
        ],
        USERS,
    ),
    **dict.fromkeys(
        [
            "ping()",
            "sweep_alerts(text,timestamp with time zone)",
            "refresh_alert_statistics(bigint)",
            "scheduled_sweep(text)",
            "refresh_lead_state(text,text)",
            (
                "log_activity_by_phone(text,text,text,text,text,text,text,text,jsonb,"
                "timestamp with time zone,text,boolean)"
            ),
            "status_rank(text)",
            "set_activity_status(text,text,text,text)",
        ],
        ("service_role",),
    ),
    **dict.fromkeys(
        [
            "record_created_alerts()",
            "record_changed_alerts()",
            "record_deleted_alerts()",
            "merge_lead(text,text,text)",
            "refuse_history_change()",
        ],
        (),
    ),
}

SUPABASE_DEFAULTS = """
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
"""


@pytest.fixture(scope="module")
def hosted(server_url):
    """A database migrated as on hosted Supabase: its default privileges in place before the first migration."""
    name = f"leadwatch_grants_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(BOOTSTRAP.read_text())  # Supabase's roles and auth.jwt(), as the platform has them
        conn.execute(SUPABASE_DEFAULTS)
    migrate(url)
    yield url
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'drop database "{name}" with (force)')


def _table_privileges(conn) -> dict[str, dict[str, set[str]]]:
    rows = conn.execute(
        """select c.relname, coalesce(r.rolname, 'PUBLIC'), a.privilege_type
           from pg_class c join pg_namespace n on n.oid = c.relnamespace
           cross join lateral aclexplode(c.relacl) a
           left join pg_roles r on r.oid = a.grantee
           where n.nspname = 'public' and c.relkind in ('r', 'v', 'm', 'S', 'p') and a.grantee <> c.relowner"""
    ).fetchall()
    privileges: dict[str, dict[str, set[str]]] = {}
    for table, role, privilege in rows:
        privileges.setdefault(table, {}).setdefault(role, set()).add(privilege)
    return privileges


def _function_executors(conn) -> dict[str, tuple[str, ...]]:
    rows = conn.execute(
        """select regexp_replace(p.oid::regprocedure::text, '^public\\.', ''),
                  coalesce(array_agg(coalesce(r.rolname, 'PUBLIC') order by r.rolname)
                           filter (where a.privilege_type = 'EXECUTE' and a.grantee <> p.proowner), '{}')
           from pg_proc p join pg_namespace n on n.oid = p.pronamespace
           left join lateral aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a on true
           left join pg_roles r on r.oid = a.grantee
           where n.nspname = 'public'
           group by p.oid"""
    ).fetchall()
    return {name: tuple(roles) for name, roles in rows}


def test_supabase_default_privileges_leave_exactly_our_table_grants(hosted):
    with psycopg.connect(hosted) as conn:
        privileges = _table_privileges(conn)
    for table, expected in TABLES.items():
        assert privileges.get(table, {}) == expected, table
    for table, granted in privileges.items():  # whatever other migrations add: no TRUNCATE, nothing for anon
        assert "anon" not in granted and "PUBLIC" not in granted, table
        assert not any({"TRUNCATE", "REFERENCES", "TRIGGER"} & p for p in granted.values()), table


def test_supabase_default_privileges_leave_exactly_our_function_grants(hosted):
    with psycopg.connect(hosted) as conn:
        executors = _function_executors(conn)
    for function, expected in FUNCTIONS.items():
        assert executors[function] == tuple(sorted(expected)), function
    assert [f for f, roles in executors.items() if "PUBLIC" in roles] == []


def test_functions_created_after_the_migration_are_executable_by_nobody_until_granted(hosted):
    with psycopg.connect(hosted) as conn:
        conn.execute("create function public.later_helper() returns int language sql as 'select 1'")
        conn.execute("create table public.later_table (n int)")
        assert _function_executors(conn)["later_helper()"] == ()
        assert "later_table" not in _table_privileges(conn)
        conn.rollback()


def _as(conn, role: str) -> None:
    conn.execute(f"set local role {role}")
    claims = {"role": role, "app_metadata": {"tenant_id": "acme", "role": "admin"}}
    conn.execute("select set_config('request.jwt.claims', %s, true)", [json.dumps(claims)])


@pytest.mark.parametrize("role", ["service_role", "authenticated", "owner"])
@pytest.mark.parametrize(
    "statement",
    ["update public.alert_events set actor = 'x'", "delete from public.alert_events", "truncate public.alert_events"],
    ids=["update", "delete", "truncate"],
)
def test_alert_events_cannot_be_rewritten(hosted, role, statement):
    with psycopg.connect(hosted) as conn:
        conn.execute(
            "insert into public.alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor) "
            "values ('acme', gen_random_uuid(), 'L1', 'NoContact7d', 'created', 'med', 'system')"
        )
        if role != "owner":
            _as(conn, role)
        with pytest.raises(psycopg.Error) as e:
            conn.execute(statement)
        # an API role lacks the privilege (42501); the owner has it and the trigger refuses (LW403)
        assert e.value.sqlstate == ("LW403" if role == "owner" else "42501"), e.value


@pytest.mark.parametrize("operation", ["update", "delete", "truncate"])
def test_history_stays_append_only_even_if_someone_grants_more(hosted, operation):
    """The trigger, not only the grants: a role given UPDATE/DELETE/TRUNCATE by hand is refused as well."""
    statement = {
        "update": "update public.alert_events set actor = 'x'",
        "delete": "delete from public.alert_events",
        "truncate": "truncate public.alert_events",
    }[operation]
    with psycopg.connect(hosted) as conn:
        conn.execute(f"grant {operation} on public.alert_events to service_role")
        _as(conn, "service_role")
        with pytest.raises(psycopg.Error, match="append-only") as e:
            conn.execute(statement)
        assert e.value.sqlstate == "LW403"


def test_merging_a_provisional_lead_still_moves_its_history(postgres_store, db):
    """merge_lead, the maintenance function, is the one path allowed to rewrite alert_events."""
    db.execute(
        "insert into leads (tenant_id, lead_id, phone, provisional) "
        "values ('acme', 'wa:+33655555555', '+33655555555', true)"
    )
    log(postgres_store, lead="wa:+33655555555", direction="in", occurredAt=ago(days=9))
    postgres_store.sweep()
    assert db.execute("select distinct lead_id from alert_events").fetchall() == [("wa:+33655555555",)]
    result = add_leads(postgres_store, **{"CRM-42": {"name": "Julien Roux", "phone": "+33655555555"}})
    assert result["merged"] == ["CRM-42"]
    assert db.execute("select distinct lead_id from alert_events").fetchall() == [("CRM-42",)]
    with pytest.raises(psycopg.Error, match="append-only"):
        db.execute("update alert_events set actor = 'x'")  # the flag did not outlive the merge


def test_sweep_work_mem_is_sized_for_a_1gb_instance(db):
    [config] = db.execute(
        "select proconfig from pg_proc where oid = 'public.sweep_alerts(text, timestamptz)'::regprocedure"
    ).fetchone()
    assert "work_mem=16MB" in config
