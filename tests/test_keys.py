"""Ready to shard by tenant (Citus): every primary key and unique constraint or index of a public table
leads with tenant_id, read from the catalog after all migrations."""

from __future__ import annotations

import psycopg

KEYS = """
    select t.relname, i.relname, pg_get_indexdef(x.indexrelid, 1, true)
    from pg_index x
    join pg_class t on t.oid = x.indrelid
    join pg_class i on i.oid = x.indexrelid
    join pg_namespace n on n.oid = t.relnamespace
    where n.nspname = 'public' and t.relkind in ('r', 'p') and (x.indisunique or x.indisprimary)
    order by 1, 2"""


def keys_not_led_by_the_tenant(conn) -> list[tuple[str, str, str]]:
    """(table, index, its first column) of each primary key or unique index whose first column is not tenant_id."""
    return [row for row in conn.execute(KEYS) if row[2] != "tenant_id"]


def test_every_primary_key_and_unique_constraint_leads_with_tenant_id(db):
    keys = db.execute(KEYS).fetchall()
    assert {table for table, _, _ in keys} >= {"lead_activities", "max_alerts", "alert_events", "webhook_deliveries"}
    assert keys_not_led_by_the_tenant(db) == []


def test_a_table_keyed_by_id_alone_or_unique_without_the_tenant_is_caught(db):
    with db.transaction():
        db.execute("create table public.keyed_by_id (id uuid primary key, tenant_id text not null, ref text)")
        db.execute("create unique index keyed_by_ref on public.keyed_by_id (ref, tenant_id)")
        db.execute("create table public.keyed_well (tenant_id text, id uuid, primary key (tenant_id, id))")
        caught = keys_not_led_by_the_tenant(db)
        raise psycopg.Rollback
    assert caught == [("keyed_by_id", "keyed_by_id_pkey", "id"), ("keyed_by_id", "keyed_by_ref", "ref")]


def test_foreign_keys_between_tenant_tables_carry_the_tenant(db):
    """A delivery's endpoint is found within the delivery's own tenant (one shard under Citus)."""
    foreign = db.execute("""
        select conrelid::regclass::text, pg_get_constraintdef(oid) from pg_constraint
        where contype = 'f' and connamespace = 'public'::regnamespace""").fetchall()
    for table, definition in foreign:
        assert definition.startswith("FOREIGN KEY (tenant_id,"), (table, definition)
