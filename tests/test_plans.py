"""Structural guards on the hot statements (plans, not timings), at a modest scale.

auto_explain reports the plan of every statement run inside the SQL functions, so these check the
statements the functions really run: the sweep reads only due leads, logging touches one lead's
rows, and the list is served by an index in the view's order.
"""

from __future__ import annotations

import json
import re

import pytest
from helpers import add_leads, ago
from leadwatch.models.desk import RuleIn


@pytest.fixture
def scaled(db, postgres_store):
    """20,000 leads of which 50 are due, 60,000 activities, 30,000 active alerts in tenant acme; analysed."""
    db.execute("insert into leads (tenant_id, lead_id) select 'acme', 'L' || i from generate_series(1, 20000) i")
    db.execute("""
        insert into lead_state (tenant_id, lead_id, entered_at, last_activity_at, no_contact_due_at, stale_due_at)
        select 'acme', 'L' || i, now() - interval '60 days', now() - make_interval(hours => i % 100),
               case when i <= 50 then now() - interval '1 hour' else now() + interval '5 days' end,
               now() + interval '25 days'
        from generate_series(1, 20000) i""")
    db.execute("""
        insert into lead_activities (tenant_id, lead_id, channel, direction, occurred_at)
        select 'acme', 'L' || (i % 20000 + 1), 'email', 'in', now() - make_interval(hours => i % 500)
        from generate_series(1, 60000) i""")
    db.execute("""
        insert into max_alerts (tenant_id, lead_id, type, severity, message, created_at)
        select 'acme', 'A' || i, 'NoContact7d', (array['high', 'med', 'low'])[1 + i % 3], 'x',
               now() - make_interval(secs => i)
        from generate_series(1, 30000) i""")
    db.execute("analyze")
    return postgres_store


def plans_of(db, statement: str, params=()) -> list[str]:
    """The plans (text) of every statement `statement` runs, nested ones included."""
    notices: list[str] = []
    db.add_notice_handler(lambda d: notices.append(d.message_primary))
    db.execute("load 'auto_explain'")
    for setting in (
        "auto_explain.log_min_duration = 0",
        "auto_explain.log_nested_statements = on",
        "auto_explain.log_level = notice",
        "auto_explain.log_analyze = on",
        "auto_explain.log_timing = off",
    ):
        db.execute(f"set {setting}")
    try:
        db.execute(statement, params)
    finally:
        db.execute("set auto_explain.log_min_duration = -1")
    return [n for n in notices if "Query Text" in n]


def ran(plan: str, node: str) -> bool:
    """Did a node of this kind run? (Branches a one-time filter skipped say "never executed".)"""
    return any(node in line and "never executed" not in line for line in plan.splitlines())


def the_plan(plans: list[str], marker: str) -> str:
    [plan] = [p for p in plans if marker in p.split("\n", 2)[1]]
    return plan


def test_sweep_reads_only_due_leads_through_the_due_index(scaled, db):
    plans = plans_of(db, "select public.sweep_alerts()")
    sweep = the_plan(plans, "with due as")
    assert re.search(r"Index (Only )?Scan using idx_lead_state_next_due on lead_state", sweep), sweep
    assert not ran(sweep, "Seq Scan on lead_state")
    assert not ran(sweep, "Seq Scan on max_alerts"), "50 due leads look up their active alerts by index, not all 30,000"
    assert not any(ran(p, "on lead_activities") for p in plans), "the sweep never reads activities"


def test_logging_an_activity_touches_only_that_leads_rows(scaled, db):
    plans = "\n".join(plans_of(db, "select public.log_activity('acme', 'L77', 'email', 'out')"))
    for table in ("lead_activities", "lead_state", "max_alerts", "leads"):
        assert not ran(plans, f"Seq Scan on {table}"), table
    assert ran(plans, "lead_state_pkey on lead_state")


def test_list_is_served_by_an_index_in_the_views_order(scaled, db):
    page = the_plan(plans_of(db, "select public.list_active_alerts('acme', 50)"), "with page as")
    assert ran(page, "Index Scan using idx_max_alerts_active_order on max_alerts"), page
    assert not ran(page, "Seq Scan on max_alerts"), "neither the page nor the staff's stats scan the alerts"
    ordered = page[: page.index("Index Scan using idx_max_alerts_active_order")]
    assert "Sort Key: a.severity_rank" not in ordered, "the page comes out of the index already ordered"
    assert ran(page, "on alert_counts"), "staff stats come from the maintained counts"


def test_timeline_reads_the_lead_newest_first_from_its_index(scaled, db):
    text = "\n".join(plans_of(db, "select public.list_lead_activities('acme', 'L5', 20)"))
    assert ran(text, "idx_lead_activities_tenant_lead on lead_activities")
    assert not ran(text, "Seq Scan on lead_activities")


def test_row_level_security_checks_an_agents_leads_once_per_query_not_once_per_row(db):
    """The policies are planned with the query: an agent's own leads are read once (a hashed SubPlan),
    not by a call of can_see_lead for every alert read."""
    db.execute("""
        insert into leads (tenant_id, lead_id, owner_id) select 'acme', 'L' || i, 'owner-' || (i % 50)
        from generate_series(1, 2000) i""")
    db.execute("""
        insert into max_alerts (tenant_id, lead_id, type, severity, message)
        select 'acme', 'L' || i, 'NoContact7d', 'med', 'x' from generate_series(1, 2000) i""")
    db.execute("analyze")
    claims = '{"role": "authenticated", "sub": "owner-7", "app_metadata": {"tenant_id": "acme", "role": "agent"}}'

    with db.transaction():
        db.execute(
            "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)", [claims]
        )
        plan = "\n".join(
            row[0]
            for row in db.execute(
                "explain (analyze, costs off) select count(*) from max_alerts where tenant_id = 'acme'"
            )
        )
        (count,) = db.execute("select count(*) from max_alerts where tenant_id = 'acme'").fetchone()

    assert count == 40  # the agent's own leads only
    assert "can_see_lead" not in plan, plan
    assert ran(plan, "hashed SubPlan"), plan


def test_ingest_rules_read_only_the_leads_newest_activities_through_its_index(scaled, db):
    """HotLead24h and PreferredChannel, judged as an inbound arrives for a lead with 400 activities,
    read a handful of its newest rows from idx_lead_activities_tenant_lead, never the whole history."""
    db.execute("""
        insert into lead_activities (tenant_id, lead_id, channel, direction, occurred_at)
        select 'acme', 'L77', 'email', (array['in', 'out'])[1 + i % 2],
               now() - make_interval(mins => 30 + i)
        from generate_series(1, 400) i""")
    db.execute(
        "select public.log_activity('acme', 'L77', 'whatsapp', 'out', p_occurred_at => now() - interval '20 minutes')"
    )
    db.execute("analyze lead_activities")
    plans = plans_of(db, "select public.log_activity('acme', 'L77', 'email', 'in')")
    text = "\n".join(plans)
    assert not ran(text, "Seq Scan on lead_activities")
    reads = [line for line in text.splitlines() if "idx_lead_activities_tenant_lead on lead_activities" in line]
    assert len(reads) >= 2, "the burst and the channels are read through the lead's index"
    for line in reads:
        rows = float(re.search(r"actual rows=([\d.]+)", line)[1])
        # The newest 5 inbound (limit 5), plus the one row the numbering window reads ahead on PostgreSQL 15.
        assert rows <= 6, line


def json_plans_of(db, statement: str, params=()) -> list[dict]:
    """EXPLAIN (ANALYZE, FORMAT JSON) of every statement `statement` runs, nested ones included."""
    notices: list[str] = []
    db.add_notice_handler(lambda d: notices.append(d.message_primary))
    db.execute("load 'auto_explain'")
    for setting in (
        "auto_explain.log_min_duration = 0",
        "auto_explain.log_nested_statements = on",
        "auto_explain.log_level = notice",
        "auto_explain.log_analyze = on",
        "auto_explain.log_timing = off",
        "auto_explain.log_format = json",
    ):
        db.execute(f"set {setting}")
    try:
        db.execute(statement, params)
    finally:
        db.execute("set auto_explain.log_min_duration = -1")
    return [json.loads(n[n.index("{") :]) for n in notices if '"Query Text"' in n]


def nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def sweep_scans_of_alerts(plans: list[dict]) -> list[tuple[str, float]]:
    """The sweep statement's scans of max_alerts: (node type, rows read, kept or filtered out)."""
    [sweep] = [p for p in plans if p["Query Text"].lstrip().startswith("with due as")]
    return [
        (node["Node Type"], node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0))
        for node in nodes(sweep["Plan"])
        if node.get("Relation Name") == "max_alerts" and "Scan" in node["Node Type"]
    ]


def test_first_sweep_of_an_imported_tenant_reads_each_set_once_whatever_the_statistics(db, postgres_store):
    """A tenant imports 3,000 silent leads after the last ANALYZE (lead_state's statistics say nothing
    is due) into an empty, never-analysed max_alerts. Every node of every statement the sweep runs
    executes once, except a lead's own list of rules and index probes of one row: nothing (max_alerts,
    the judged rules, the due leads) is rescanned for each due lead."""
    db.execute("""
        insert into lead_state (tenant_id, lead_id, entered_at, last_activity_at, no_contact_due_at, stale_due_at)
        select 'acme', 'L' || i, now() - interval '60 days', now() - interval '1 hour',
               now() + interval '7 days', now() + interval '30 days'
        from generate_series(1, 20000) i""")
    db.execute("analyze lead_state")
    db.execute("""
        insert into lead_state (tenant_id, lead_id, entered_at, last_activity_at, last_inbound_at, last_outbound_at,
                                no_contact_due_at, no_reply_due_at, stale_due_at)
        select 'newco', 'N' || i, now() - interval '60 days', now() - interval '8 days',
               now() - interval '10 days', now() - interval '8 days',
               now() - interval '1 day', now() - interval '5 days', now() + interval '22 days'
        from generate_series(1, 3000) i""")
    assert db.execute("select relpages, reltuples from pg_class where relname = 'max_alerts'").fetchone() == (0, -1)

    plans = json_plans_of(db, "select public.sweep_alerts()")

    assert db.execute("select count(*) from max_alerts where tenant_id = 'newco'").fetchone() == (6000,)
    sweep = [p for p in plans if p["Query Text"].lstrip().startswith("with due as")]
    assert len(sweep) == 1 and len(plans) > 1, "the sweep's statement and its triggers' statements were all seen"
    for plan in plans:
        for node in nodes(plan["Plan"]):
            loops, rows = node.get("Actual Loops", 1), node.get("Actual Rows", 0)
            if loops <= 1:
                continue
            what = f"{node['Node Type']} on {node.get('Relation Name', node.get('CTE Name', '?'))}, {loops} loops"
            per_row_probe = node["Node Type"] in ("Index Scan", "Index Only Scan") and rows <= 1
            own_rules = node["Node Type"] == "Values Scan"
            assert per_row_probe or own_rules, what + " in: " + plan["Query Text"][:60]


def test_a_big_sweep_looks_up_the_active_alerts_of_its_raised_rules_once(db, postgres_store):
    """3,000 due leads without an alert next to 30,000 active alerts of other leads: the sweep (hash
    joins from 1,000 due leads) reads max_alerts once to learn which raised rules already have an
    active alert; creating reuses that answer, and escalating, with nothing to escalate, reads none."""
    db.execute("""
        insert into lead_state (tenant_id, lead_id, entered_at, last_activity_at, no_contact_due_at, stale_due_at)
        select 'acme', 'N' || i, now() - interval '60 days', now() - interval '8 days',
               now() - interval '1 day', now() + interval '22 days'
        from generate_series(1, 3000) i""")
    db.execute("""
        insert into max_alerts (tenant_id, lead_id, type, severity, message)
        select 'acme', 'A' || i, 'NoContact7d', 'med', 'x' from generate_series(1, 30000) i""")
    db.execute("analyze")

    plans = json_plans_of(db, "select public.sweep_alerts()")

    assert db.execute("select count(*) from max_alerts where lead_id like 'N%'").fetchone() == (3000,)
    scans = sweep_scans_of_alerts(plans)
    assert len([rows for _, rows in scans if rows > 1]) == 1, scans


def test_a_tenants_sweep_reads_only_that_tenants_alerts(db, postgres_store):
    """One tenant's sweep (3,000 due leads, the hash joins' plan) next to another tenant's 30,000
    active alerts: looking up the raised rules' active alerts, and those they supersede, reads the
    swept tenant's alerts only (a sharded database would not touch the other tenant's shard)."""
    db.execute("""
        insert into lead_state (tenant_id, lead_id, entered_at, last_activity_at, last_inbound_at, last_outbound_at,
                                no_contact_due_at, no_reply_due_at, stale_due_at)
        select 'newco', 'N' || i, now() - interval '60 days', now() - interval '40 days',
               now() - interval '42 days', now() - interval '40 days',
               now() - interval '1 day', now() - interval '5 days', now() - interval '1 day'
        from generate_series(1, 3000) i""")
    db.execute("""
        insert into max_alerts (tenant_id, lead_id, type, severity, message)
        select 'acme', 'A' || i, 'NoContact7d', 'med', 'x' from generate_series(1, 30000) i""")
    db.execute("analyze")

    plans = json_plans_of(db, "select public.sweep_alerts('newco')")

    assert db.execute("select count(*) from max_alerts where tenant_id = 'newco'").fetchone()[0] >= 3000
    read = sweep_scans_of_alerts(plans)
    assert read and all(rows == 0 for _, rows in read), read


def test_escalating_thousands_of_alerts_at_once_pairs_their_old_and_new_rows_in_one_pass(db, postgres_store):
    """The history trigger pairs each changed alert's old and new row (transition tables, estimated
    at one row each whatever their size): a hash join, not a rescan of the old rows per new row."""
    db.execute("""
        insert into max_alerts (tenant_id, lead_id, type, severity, message)
        select 'acme', 'L' || i, 'NoContact7d', 'med', 'x' from generate_series(1, 3000) i""")

    plans = json_plans_of(db, "update max_alerts set severity = 'high', escalated_at = now() where tenant_id = 'acme'")

    assert db.execute("select count(*) from alert_events where event = 'escalated'").fetchone() == (3000,)
    history = [p for p in plans if "join old_alerts o on o.id = n.id" in p["Query Text"]]
    assert history, [p["Query Text"][:60] for p in plans]
    for node in nodes(history[0]["Plan"]):
        assert node.get("Actual Loops", 1) <= 1, f"{node['Node Type']}: {node.get('Actual Loops')} loops"


def _due_index_blocks(plans: list[dict]) -> int:
    """Buffers read by every scan of the due-time index in these statements (its pages and the rows it visits)."""
    return sum(
        node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0)
        for plan in plans
        for node in nodes(plan["Plan"])
        if node.get("Index Name") == "idx_lead_state_next_due"
    )


def test_the_sweep_right_after_a_big_sweep_does_not_visit_the_due_times_it_moved(db, postgres_store):
    """3,000 of 23,000 leads due, swept through the store: the next sweep (nothing due, no VACUUM in
    between) reads the due-time index without visiting the 3,000 row versions the big sweep left behind."""
    db.execute("""
        insert into lead_state (tenant_id, lead_id, entered_at, last_activity_at, no_contact_due_at, stale_due_at)
        select 'acme', 'L' || i, now() - interval '60 days', now() - interval '1 hour',
               now() + interval '7 days', now() + interval '30 days'
        from generate_series(1, 20000) i""")
    db.execute("analyze lead_state")
    db.execute("""
        insert into lead_state (tenant_id, lead_id, entered_at, last_activity_at, no_contact_due_at, stale_due_at)
        select 'acme', 'N' || i, now() - interval '60 days', now() - interval '8 days',
               now() - interval '1 day' - make_interval(mins => (i * 7919) % 1440), now() + interval '22 days'
        from generate_series(1, 3000) i""")  # due times in no particular order: the index jumps across the table
    assert postgres_store.sweep()["leads_checked"] == 3000
    db.execute("set auto_explain.log_buffers = on")

    plans = json_plans_of(db, "select public.sweep_alerts()")

    assert not any(p["Query Text"].lstrip().startswith("with due as") for p in plans), "nothing due: not planned"
    assert any(n.get("Index Name") == "idx_lead_state_next_due" for p in plans for n in nodes(p["Plan"]))
    assert _due_index_blocks(plans) < 100, "one visit per index page, not one per dead row version"


def test_the_sweep_after_a_scheduled_big_sweep_does_not_visit_the_due_times_it_moved(db, postgres_store):
    """The same when the database's scheduler runs the big sweep (`call public.scheduled_sweep()`, as
    Supabase Cron does): the next sweep, run as the scheduler runs it, visits none of the 3,000 row
    versions the big sweep left behind."""
    db.execute("""
        insert into lead_state (tenant_id, lead_id, entered_at, last_activity_at, no_contact_due_at, stale_due_at)
        select 'acme', 'L' || i, now() - interval '60 days', now() - interval '1 hour',
               now() + interval '7 days', now() + interval '30 days'
        from generate_series(1, 20000) i""")
    db.execute("analyze lead_state")
    db.execute("""
        insert into lead_state (tenant_id, lead_id, entered_at, last_activity_at, no_contact_due_at, stale_due_at)
        select 'acme', 'N' || i, now() - interval '60 days', now() - interval '8 days',
               now() - interval '1 day' - make_interval(mins => (i * 7919) % 1440), now() + interval '22 days'
        from generate_series(1, 3000) i""")
    db.execute("call public.scheduled_sweep()")
    assert db.execute("select count(*) from max_alerts where resolved_at is null").fetchone() == (3000,)
    db.execute("set auto_explain.log_buffers = on")

    plans = json_plans_of(db, "select public.sweep_alerts()")

    assert any(n.get("Index Name") == "idx_lead_state_next_due" for p in plans for n in nodes(p["Plan"]))
    assert _due_index_blocks(plans) < 100, "one visit per index page, not one per dead row version"


def test_ingest_rules_read_the_leads_newest_activities_from_the_index_alone(scaled, db):
    """The direction, status and channel the ingest-time rules read are in idx_lead_activities_tenant_lead
    itself: an index-only scan, not a heap page per activity (supabase/schemas/20_activities.sql)."""
    db.execute("""
        insert into lead_activities (tenant_id, lead_id, channel, direction, occurred_at)
        select 'acme', 'L77', 'email', (array['in', 'out'])[1 + i % 2], now() - make_interval(mins => 30 + i)
        from generate_series(1, 400) i""")
    db.execute(
        "select public.log_activity('acme', 'L77', 'whatsapp', 'out', p_occurred_at => now() - interval '20 minutes')"
    )
    db.execute("vacuum (analyze) lead_activities")
    text = "\n".join(plans_of(db, "select public.log_activity('acme', 'L77', 'email', 'in')"))
    reads = [line for line in text.splitlines() if "Scan" in line and "on lead_activities" in line]
    assert len(reads) >= 2, text
    assert all("Index Only Scan using idx_lead_activities_tenant_lead" in line for line in reads), reads


def test_an_inbound_after_a_silence_reads_no_activity_for_hot_lead(db, postgres_store):
    """HotLead24h alone (PreferredChannel off): an inbound from a lead whose last inbound is older than
    the window reads none of its activities (this inbound is the burst's only one); one from a lead
    heard from an hour ago reads its newest inbound."""
    postgres_store.set_rule("acme", "PreferredChannel", RuleIn(enabled=False))
    db.execute("select public.log_activity('acme', 'Q1', 'whatsapp', 'in', p_occurred_at => now() - interval '3 days')")
    db.execute("select public.log_activity('acme', 'H1', 'whatsapp', 'in', p_occurred_at => now() - interval '1 hour')")

    def reads(lead: str) -> list[str]:
        text = "\n".join(plans_of(db, "select public.log_activity('acme', %s, 'whatsapp', 'in')", [lead]))
        return [line for line in text.splitlines() if "Scan" in line and "on lead_activities" in line]

    assert reads("Q1") == []
    assert reads("H1"), "the burst is read when an earlier inbound is in the window"


def test_a_lists_answers_are_built_inline_not_by_a_call_per_activity(db, postgres_store):
    """activity_json is stable, so Postgres inlines it: no statement of its own for each activity answered."""
    activities = [{"lead_id": f"L{n}", "channel": "email", "direction": "in"} for n in range(5)]
    plans = plans_of(db, "select public.log_activities('acme', %s::jsonb)", [json.dumps(activities)])
    assert db.execute("select count(*) from lead_activities").fetchone() == (5,)
    assert not [p for p in plans if "p_activity.message_snippet" in p], "activity_json ran as a statement"


def test_a_list_visits_each_leads_state_twice_the_lock_and_the_update(scaled, db):
    """50 activities of 50 known leads as one list: lead_state is read by the lock (which returns the
    state it locked, judged from then on) and by the update, and no row is offered for creation
    (log_activities in supabase/schemas/20_activities.sql; it was four visits: create, lock, read, update)."""
    activities = [{"lead_id": f"L{n}", "channel": "email", "direction": ("in", "out")[n % 2]} for n in range(100, 150)]
    text = "\n".join(plans_of(db, "select public.log_activities('acme', %s::jsonb)", [json.dumps(activities)]))
    visits = [line for line in text.splitlines() if "Scan" in line and "on lead_state" in line and ran(line, "Scan")]
    assert len(visits) == 2, visits
    assert not re.search(r"Conflicting Tuples: [1-9]", text), "no state row was offered for creation"


def test_a_list_reads_the_newest_activities_only_of_leads_whose_rule_can_fire(scaled, db):
    """50 inbound activities of leads we never wrote to, none heard from within HotLead24h's window:
    neither ingest-time rule can fire, so judging the list reads none of their activities (each read's
    condition gates it; in the join's ON it was tested after the read, 2 index scans a lead)."""
    activities = [{"lead_id": f"L{n}", "channel": "email", "direction": "in"} for n in range(200, 250)]
    judged = the_plan(
        plans_of(db, "select public.log_activities('acme', %s::jsonb)", [json.dumps(activities)]), "with rules as"
    )
    reads = [line for line in judged.splitlines() if "Scan" in line and "on lead_activities" in line]
    assert len(reads) == 2, judged
    assert not [line for line in reads if ran(line, "Scan")], reads


def test_preferred_channel_reads_no_page_of_the_directory(scaled, db, postgres_store):
    """A lead we wrote to twice whose inbound name no channel: PreferredChannel falls back on the
    directory's channel, which the lead's state carries (lead_state.preferred_channel): neither a list nor a
    single call reads a page of leads, and the alert names the directory's channel."""
    add_leads(postgres_store, D1={"preferredChannel": "whatsapp"}, D2={"preferredChannel": "call"})
    for lead in ("D1", "D2"):
        for minutes in (50, 40):  # our last 2 outbound, both by email
            db.execute(
                "select public.log_activity('acme', %s, 'email', 'out', p_occurred_at => %s)",
                [lead, ago(minutes=minutes)],
            )
    db.execute("vacuum (analyze) leads")
    activities = [{"lead_id": "D1", "channel": "email", "direction": "in"}]
    plans = plans_of(db, "select public.log_activities('acme', %s::jsonb)", [json.dumps(activities)])
    plans += plans_of(db, "select public.log_activity('acme', 'D2', 'email', 'in')")
    text = "\n".join(plans)
    assert not [line for line in text.splitlines() if "on leads" in line and ran(line, "Scan")], text
    raised = db.execute(
        "select lead_id, channel from max_alerts where type = 'PreferredChannel' and resolved_at is null order by 1"
    ).fetchall()
    assert raised == [("D1", "whatsapp"), ("D2", "call")]


def test_a_list_reaches_the_alerts_it_resolves_by_their_leads_keys_under_empty_statistics(db):
    """max_alerts analysed while empty (a fresh deployment), then 2,000 active alerts: a list whose
    activity answers one lead's alert reads that lead's alerts, not every active alert of the tenant
    (the resolve statement's plan is made once per connection, under those statistics)."""
    db.execute("analyze max_alerts")
    db.execute("""
        insert into max_alerts (tenant_id, lead_id, type, severity, message)
        select 'acme', 'L' || i, 'NoContact7d', 'med', 'silent' from generate_series(1, 2000) i""")
    activities = [{"lead_id": "L5", "channel": "email", "direction": "in"}]
    plans = plans_of(db, "select public.log_activities('acme', %s::jsonb)", [json.dumps(activities)])
    resolve = the_plan(plans, "with resolved as")
    scanned = [int(m) for m in re.findall(r"on max_alerts .*actual rows=(\d+)", resolve)]
    assert scanned and max(scanned) <= 1, resolve
    assert db.execute("select count(*) from max_alerts where resolved_at is null").fetchone()[0] == 1999


def test_a_list_resolves_the_alerts_it_answers_by_their_keys_without_a_join(db):
    """100,000 alerts of 20,000 leads (20,000 active), 300 of those leads answered in one list: the
    resolve statement updates the 300 alerts judging found answered, by their keys. It joins nothing:
    a join of the list with the alerts, planned once per connection, compared every activity with
    every alert at 1,000,000 leads (711,492 pairs for 844 alerts)."""
    db.execute("""
        insert into max_alerts (tenant_id, lead_id, type, severity, message, resolved_at)
        select 'acme', 'L' || i, 'NoContact7d', 'med', 'silent', case when k < 5 then now() end
        from generate_series(1, 20000) i, generate_series(1, 5) k""")
    db.execute("analyze max_alerts")
    activities = [{"lead_id": f"L{i}", "channel": "email", "direction": "in"} for i in range(1, 301)]
    plans = plans_of(db, "select public.log_activities('acme', %s::jsonb)", [json.dumps(activities)])
    resolve = the_plan(plans, "with resolved as")
    assert not any(ran(resolve, join) for join in ("Nested Loop", "Hash Join", "Merge Join")), resolve
    read = [int(m) for m in re.findall(r"Scan .* on max_alerts .*actual rows=(\d+)", resolve)]
    assert read == [300], resolve
    assert db.execute("select count(*) from max_alerts where resolved_at is null").fetchone()[0] == 19700


# A mature deployment right after its morning sweep ---------------------------------------------------


@pytest.fixture
def mature(db, postgres_store):
    """A tenant on day 365, right after its morning sweep: 3,000 leads (ids as long as a CRM's) with a
    year of resolved alerts behind them (8 each) and their history, analysed while no alert was active;
    then 2,000 of them fell due and the sweep (as Supabase Cron runs it) raised 2,000 alerts, with no
    ANALYZE since. Answers the leads' ids, the due ones first."""
    leads = [f"lead-{n:04d}-8d0f4c2e9b7a41d3a6e5c1f0b2d4e6a8" for n in range(1, 3001)]
    db.execute(
        "insert into leads (tenant_id, lead_id, name) select 'acme', l, 'Lead ' || l from unnest(%s::text[]) l",
        [leads],
    )
    db.execute(
        """
        insert into lead_state (tenant_id, lead_id, entered_at, last_activity_at, last_inbound_at, no_contact_due_at,
                                stale_due_at)
        select 'acme', l, now() - interval '400 days', now() - interval '8 days', now() - interval '8 days',
               case when n <= 2000 then now() - interval '1 day' else now() + interval '5 days' end,
               now() + interval '22 days'
        from unnest(%s::text[]) with ordinality u(l, n)""",
        [leads],
    )
    with db.transaction():  # the year's alerts and their history, as the triggers wrote them
        db.execute("set local session_replication_role = replica")
        db.execute(
            """
            with alerts as (
              insert into max_alerts (tenant_id, lead_id, type, severity, message, created_at, resolved_at,
                                      resolved_by, resolution)
              select 'acme', l,
                     (array['NoContact7d', 'NoReply3d', 'StaleLead30d', 'HotLead24h'])[1 + k %% 4]::alert_type,
                     'med', 'history', now() - make_interval(days => 45 * k), now() - make_interval(days => 45 * k - 2),
                     'system', 'activity'
              from unnest(%s::text[]) l, generate_series(1, 8) k
              returning id, tenant_id, lead_id, type, severity, created_at, resolved_at)
            insert into alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor, at)
            select a.tenant_id, a.id, a.lead_id, a.type, e.event, a.severity, 'system', e.at
            from alerts a
            cross join lateral (values ('created', a.created_at), ('resolved', a.resolved_at)) e (event, at)""",
            [leads],
        )
    db.execute("vacuum analyze")
    # The connection served the evening before (its plans made then, no alert active), then the sweep.
    db.execute("select public.log_activity('acme', %s, 'email', 'out')", [leads[-1]])
    db.execute(
        "select public.log_activities('acme', %s::jsonb)",
        [json.dumps([{"lead_id": leads[-2], "channel": "email", "direction": "in"}])],
    )
    db.execute("select public.list_active_alerts('acme', 50)")
    db.execute("select public.list_lead_alerts('acme', %s, 20)", [leads[-1]])
    db.execute("select public.sweep_alerts()")
    assert db.execute("select count(*) from max_alerts where resolved_at is null").fetchone() == (2000,)
    return leads


def reads_of_alerts(plans: list[dict]) -> list[tuple[str, float, float]]:
    """Every scan of max_alerts these statements ran: (index, rows it read a loop, kept or filtered out, loops)."""
    return [
        (
            node.get("Index Name", node["Node Type"]),
            node["Actual Rows"] + node.get("Rows Removed by Filter", 0),
            node["Actual Loops"],
        )
        for plan in plans
        for node in nodes(plan["Plan"])
        if node.get("Relation Name") == "max_alerts" and "Scan" in node["Node Type"] and node["Actual Loops"]
    ]


def test_after_the_morning_sweep_logging_reads_the_leads_active_alerts_through_its_own_index(mature, db):
    """Right after a sweep that the statistics know nothing of, logging an activity of a lead with an
    active alert reads (to know what is open) and resolves that lead's alerts through its unique
    index, one row each time, not the tenant's 2,000 active alerts in the dashboard's order."""
    plans = json_plans_of(db, "select public.log_activity('acme', %s, 'email', 'out')", [mature[0]])
    reads = reads_of_alerts(plans)
    assert [index for index, _, _ in reads] == ["idx_max_alerts_unique_active"] * 2, reads
    assert all(rows <= 1 for _, rows, _ in reads), reads
    assert db.execute("select count(*) from max_alerts where resolved_at is null").fetchone() == (1999,)


def test_after_the_morning_sweep_a_list_reads_its_leads_active_alerts_through_their_own_index(mature, db):
    """The same for a list of 100 activities of leads with an active alert, on a connection whose plans
    were made the evening before: each lead's alerts through its unique index (one row each), then the
    100 it answers resolved by their primary keys; the tenant's 2,000 active alerts are not read."""
    activities = [{"lead_id": lead, "channel": "email", "direction": "in"} for lead in mature[:100]]
    plans = json_plans_of(db, "select public.log_activities('acme', %s::jsonb)", [json.dumps(activities)])
    reads = reads_of_alerts(plans)
    assert sorted(index for index, _, _ in reads) == ["idx_max_alerts_unique_active", "max_alerts_pkey"], reads
    assert all(rows * loops <= 100 for _, rows, loops in reads), reads
    assert db.execute("select count(*) from max_alerts where resolved_at is null").fetchone() == (1900,)


def test_after_the_morning_sweep_resolving_an_alert_reads_it_by_its_key(mature, db):
    """Resolving one alert by hand in the same state reads and updates that alert through the
    primary key, one row, not a scan of the active alerts."""
    [(alert,)] = db.execute(
        "select id from max_alerts where lead_id = %s and resolved_at is null", [mature[5]]
    ).fetchall()
    reads = reads_of_alerts(json_plans_of(db, "select public.resolve_alert('acme', %s)", [alert]))
    assert reads and all(index == "max_alerts_pkey" and rows <= 1 for index, rows, _ in reads), reads
    assert db.execute("select resolution from max_alerts where id = %s", [alert]).fetchone() == ("manual",)


def test_the_sweep_is_never_jit_compiled_whatever_its_estimated_cost(mature, db):
    """Whether PostgreSQL JIT-compiles a statement follows its estimated cost, which a mature table
    raises: the sweep (and what it calls) runs with JIT off, so a morning sweep is not spent compiling."""
    db.execute("set jit = on")
    db.execute("set jit_above_cost = 0")
    db.execute("set jit_optimize_above_cost = 0")
    db.execute("set jit_inline_above_cost = 0")
    [(config,)] = db.execute(
        "select proconfig from pg_proc where oid = 'public.sweep_alerts(text, timestamptz)'::regprocedure"
    ).fetchall()
    assert "jit=off" in config
    plans = json_plans_of(db, "select public.sweep_alerts()")
    inside = [p for p in plans if p["Query Text"] != "select public.sweep_alerts()"]  # the call itself: the caller's
    assert inside and not [p["Query Text"][:60] for p in inside if "JIT" in p], "a statement of the sweep was compiled"


def test_the_morning_sweep_leaves_statistics_that_know_its_alerts(mature, db):
    """What the plans above rest on: the sweep refreshed max_alerts' statistics before it committed
    (they knew no active alert), so the active alerts are estimated near their number."""
    plan = "\n".join(row[0] for row in db.execute("explain select * from max_alerts where resolved_at is null"))
    estimated = int(re.search(r"rows=(\d+)", plan)[1])
    assert 1000 <= estimated <= 4000, plan


def test_after_the_morning_sweep_the_reads_keep_their_indexes(mature, db):
    """The active list in the dashboard's order, a lead's alerts and an alert's history, in the same
    state: each through its own index, none scans max_alerts."""
    page = the_plan(plans_of(db, "select public.list_active_alerts('acme', 50)"), "with page as")
    assert ran(page, "Index Scan using idx_max_alerts_active_order on max_alerts"), page
    lead = "\n".join(plans_of(db, "select public.list_lead_alerts('acme', %s, 20)", [mature[0]]))
    assert ran(lead, "idx_max_alerts_tenant_lead on max_alerts"), lead
    [(alert,)] = db.execute(
        "select id from max_alerts where lead_id = %s and resolved_at is null", [mature[0]]
    ).fetchall()
    history = "\n".join(plans_of(db, "select public.alert_history('acme', %s)", [alert]))
    assert ran(history, "max_alerts_pkey on max_alerts"), history
    assert ran(history, "alert_events_tenant_lead on alert_events"), history
    for text in (page, lead, history):
        assert not ran(text, "Seq Scan on max_alerts") and not ran(text, "Seq Scan on alert_events"), text


def test_after_the_morning_sweep_nothing_due_reads_only_the_due_index_and_plans_no_raise(mature, db):
    """The next sweep, nothing due, under lead_state's statistics from before the morning sweep (two
    thirds of the leads due): it reads lead_state only through the due-time index, a few pages, and
    neither plans nor runs the raising statement."""
    db.execute("select public.prune_due_index()")  # as the scheduled sweep does once the morning's committed
    db.execute("set auto_explain.log_buffers = on")

    plans = json_plans_of(db, "select public.sweep_alerts()")

    assert not [p for p in plans if p["Query Text"].lstrip().startswith("with due as")]
    reads = [
        (
            node["Node Type"],
            node.get("Index Name"),
            node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0),
        )
        for plan in plans
        for node in nodes(plan["Plan"])
        if node.get("Relation Name") == "lead_state" and node.get("Actual Loops")
    ]
    assert reads and all(index == "idx_lead_state_next_due" and blocks <= 10 for _, index, blocks in reads), reads


def test_after_the_morning_sweep_nothing_to_wake_or_mark_plans_neither_step(mature, db):
    """The next sweep, nothing due, no snoozed alert whose time has come and no high alert past its
    delay: waking and marking are neither planned nor run; each probe reads its own index only."""
    db.execute("select public.prune_due_index()")

    plans = json_plans_of(db, "select public.sweep_alerts()")

    texts = [p["Query Text"].lstrip() for p in plans]
    assert not [t for t in texts if t.startswith(("with woken as", "with candidates as"))], texts
    reads = {node.get("Index Name", node["Node Type"]) for node in alert_scans(plans)}
    assert reads == {"idx_max_alerts_snoozed", "idx_max_alerts_overdue_watch"}, reads


def test_a_snoozed_alert_whose_time_came_and_an_overdue_one_are_still_handled_by_the_sweep(mature, db):
    """The probes let through what they guard: the sweep wakes a snoozed alert whose time has come
    and marks a high alert past its delay, each step planned and run."""
    db.execute("select public.prune_due_index()")
    woken, overdue = db.execute("select id from max_alerts where resolved_at is null order by id limit 2").fetchall()
    db.execute("update max_alerts set snoozed_until = now() - interval '1 minute' where id = %s", woken)
    db.execute("update max_alerts set severity = 'high', created_at = now() - interval '2 days' where id = %s", overdue)

    plans = json_plans_of(db, "select public.sweep_alerts()")

    texts = [p["Query Text"].lstrip() for p in plans]
    assert [t for t in texts if t.startswith("with woken as")] and [
        t for t in texts if t.startswith("with candidates as")
    ]
    assert db.execute("select snoozed_until from max_alerts where id = %s", woken).fetchone() == (None,)
    assert db.execute("select overdue_at is not null from max_alerts where id = %s", overdue).fetchone() == (True,)


def alert_scans(plans: list[dict]) -> list[dict]:
    """Every scan of max_alerts the statements ran."""
    return [
        node
        for plan in plans
        for node in nodes(plan["Plan"])
        if node.get("Relation Name") == "max_alerts" and "Scan" in node["Node Type"] and node.get("Actual Loops")
    ]


def test_the_sweeps_probes_read_their_index_when_the_statistics_expect_many_rows(mature, db):
    """Statistics taken while 20,000 high alerts were past their delay and snoozed until yesterday,
    then every one of them marked overdue and woken: the probes still read only their own partial
    indexes, a few pages, rather than a scan of max_alerts expected to stop at its first rows."""
    db.execute("select public.prune_due_index()")
    db.execute("""
        insert into max_alerts (tenant_id, lead_id, type, severity, message, created_at, snoozed_until)
        select 'acme', 'old-' || i, 'NoContact7d', 'high', 'old', now() - interval '3 days', now() - interval '1 day'
        from generate_series(1, 20000) i""")
    db.execute("analyze max_alerts")
    db.execute("update max_alerts set overdue_at = now(), snoozed_until = null where lead_id like 'old-%'")
    db.execute("select public.sweep_alerts()")  # its reads mark the index entries of the old row versions dead
    db.execute("set auto_explain.log_buffers = on")

    plans = json_plans_of(db, "select public.sweep_alerts()")

    reads = [
        (
            node.get("Index Name", node["Node Type"]),
            node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0),
        )
        for node in alert_scans(plans)
    ]
    assert {index for index, _ in reads} == {"idx_max_alerts_snoozed", "idx_max_alerts_overdue_watch"}, reads
    assert all(blocks <= 20 for _, blocks in reads), reads


def test_after_the_morning_sweep_analytics_read_owners_and_reopened_alerts_from_their_indexes(mature, db):
    """Analytics right after the sweep, alert_events' statistics from before it: the call computes the
    sweep's 2,000 alerts live (they are younger than the summaries' 5 minutes) and reads each one's
    owner from the leads' covering index alone, a page of the directory never (PostgreSQL 15 joins
    the tenant's leads once instead, by a hash: one pass, never a probe of the directory per alert);
    its check for reopened alerts reads their own index, not the sweep's events. Neither the alerts
    nor their history is scanned whole."""
    today = db.execute("select current_date").fetchone()[0]
    call = "select public.alert_analytics('acme', %s::date - 29, %s::date, 'UTC')"
    db.execute(call, [today, today])  # the first call summarises the closed days and leaves the mark
    db.execute("set auto_explain.log_buffers = on")

    plans = json_plans_of(db, call, [today, today])

    scans = [
        (node["Node Type"], node.get("Relation Name"), node.get("Index Name"), node["Actual Loops"], node)
        for plan in plans
        for node in nodes(plan["Plan"])
        if "Scan" in node["Node Type"] and node.get("Relation Name") and node.get("Actual Loops")
    ]
    leads = [
        (kind, index, loops, node["Actual Rows"]) for kind, relation, index, loops, node in scans if relation == "leads"
    ]
    probes = [(kind, index, loops) for kind, index, loops, _ in leads if loops > 1]
    assert all(kind == "Index Only Scan" and index == "idx_leads_tenant_lead_owner" for kind, index, _ in probes), leads
    one_pass = len(leads) == 1 and leads[0][2] == 1 and leads[0][3] <= 3000  # the tenant's 3,000 leads, once
    assert one_pass or sum(loops for _, _, loops in probes) >= 2000, leads  # else a probe for each alert
    [reopened] = [node for _, _, index, _, node in scans if index == "idx_alert_events_reopened"]
    assert reopened["Shared Hit Blocks"] + reopened.get("Shared Read Blocks", 0) <= 5, reopened
    assert not [
        (kind, relation)
        for kind, relation, _, _, _ in scans
        if kind == "Seq Scan" and relation in ("alert_events", "max_alerts")
    ], scans
