"""The alert lifecycle, through each store (PostgresStore and SupabaseStore) on the real database."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import active, add_leads, ago, assert_counts_exact, later, log
from leadwatch import NotFound, PostgresStore, ValidationFailed
from leadwatch.models.requests import AlertQuery


def test_reference_scenario_outbound_no_reply_then_reply_resolves(store, db):
    """The reference's end to end: outbound → 3 days → NoReply3d listed with name and action → reply clears it."""
    add_leads(store, L1={"name": "Sophie Martin", "email": "sophie.martin@example.com"})
    log(
        store, direction="out", occurredAt=ago(days=3, minutes=5), messageSnippet="Bonjour, avez-vous reçu notre devis?"
    )

    swept = store.sweep()
    assert swept["created"]["NoReply3d"] == 1

    listed = store.list_active_alerts("acme", AlertQuery())
    [alert] = listed["alerts"]
    assert alert["type"] == "NoReply3d" and alert["severity"] == "med"
    assert alert["lead_name"] == "Sophie Martin" and alert["lead_email"] == "sophie.martin@example.com"
    assert alert["suggested_action"] == {
        "label": "Relancer par WhatsApp",
        "action": "send_whatsapp",
        "params": {"leadId": "L1", "template": "relance_sans_reponse"},
    }
    assert alert["message"] == "Pas de réponse depuis 3 jours à notre dernier message."

    reply = log(store, direction="in", status="replied", messageSnippet="Oui, je suis intéressé")
    assert reply["alerts"] == {"created": [], "resolved": ["NoReply3d"]}
    assert active(db) == {}


def test_no_reply_is_not_raised_before_three_days(store, db):
    log(store, direction="out", occurredAt=ago(days=2, hours=23))
    assert store.sweep()["created"]["NoReply3d"] == 0
    assert active(db) == {}


def test_no_contact_raised_at_7_days_escalated_at_14_and_cleared_by_any_activity(store, db):
    log(store, direction="in", occurredAt=ago(days=7, minutes=1))
    assert store.sweep()["created"]["NoContact7d"] == 1
    assert active(db) == {("L1", "NoContact7d"): "med"}
    [first] = store.list_active_alerts("acme", AlertQuery())["alerts"]
    assert first["message"] == "Aucun contact depuis 7 jours. Lead à risque de perte."

    assert store.sweep(now=later(days=6))["escalated"] == 0  # 13 days: still med
    escalation = store.sweep(now=later(days=7))  # 14 days
    assert escalation["escalated"] == 1 and sum(escalation["created"].values()) == 0
    [escalated] = store.list_active_alerts("acme", AlertQuery())["alerts"]
    assert escalated["id"] == first["id"], "escalation changes severity in place"
    assert escalated["severity"] == "high" and escalated["escalated_at"] is not None
    assert escalated["message"] == "Aucun contact depuis 14 jours. Lead à risque de perte."

    cleared = log(store, channel="email", direction="out")
    assert cleared["alerts"]["resolved"] == ["NoContact7d"]
    assert active(db) == {}
    events = db.execute("select event, severity from alert_events order by id").fetchall()
    assert events == [("created", "med"), ("escalated", "high"), ("resolved", "high")]
    assert_counts_exact(db)


def test_lead_in_directory_without_activity_goes_silent_from_entry(store, db):
    add_leads(store, L1={"name": "Nouveau"})
    assert store.sweep(now=later(days=6))["created"]["NoContact7d"] == 0
    assert store.sweep(now=later(days=7, minutes=1))["created"]["NoContact7d"] == 1


def test_repeated_sweeps_never_create_a_second_active_alert(store, db):
    log(store, direction="out", occurredAt=ago(days=9))
    first = store.sweep()
    assert first["created"]["NoContact7d"] == 1 and first["created"]["NoReply3d"] == 1
    for _ in range(3):
        again = store.sweep()
        assert sum(again["created"].values()) == 0 and again["escalated"] == 0
    assert db.execute("select count(*) from max_alerts").fetchone()[0] == 2


def at_once(database_url: str, n: int, action) -> list:
    """Run `action(store)` on n stores, each with its own connection, released together."""
    stores = [PostgresStore(database_url) for _ in range(n)]
    barrier, results = threading.Barrier(n), []

    def run(store):
        barrier.wait()
        results.append(action(store))

    threads = [threading.Thread(target=run, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert len(results) == n, "an action failed"
    return results


def test_one_sweep_creates_one_leads_alert_and_escalates_anothers_each_with_its_history(store, db):
    """Creating and escalating share one lookup of the active alerts: a sweep doing both writes each
    alert, message and history row once, with the severity and actor of each path."""
    log(store, lead="L1", direction="in", occurredAt=ago(days=7, minutes=1))
    assert store.sweep()["created"]["NoContact7d"] == 1
    log(store, lead="L2", direction="in", occurredAt=ago(days=1))

    both = store.sweep(now=later(days=7))  # L1 silent 14 days: escalated; L2 silent 8 days: created

    assert both["escalated"] == 1 and both["created"]["NoContact7d"] == 1 and both["leads_checked"] == 2
    assert active(db) == {("L1", "NoContact7d"): "high", ("L2", "NoContact7d"): "med"}
    messages = dict(db.execute("select lead_id, message from max_alerts").fetchall())
    assert messages == {
        "L1": "Aucun contact depuis 14 jours. Lead à risque de perte.",
        "L2": "Aucun contact depuis 8 jours. Lead à risque de perte.",
    }
    events = db.execute("select lead_id, event, severity, actor from alert_events order by lead_id, id").fetchall()
    assert events == [
        ("L1", "created", "med", "system"),
        ("L1", "escalated", "high", "system"),
        ("L2", "created", "med", "system"),
    ]
    assert_counts_exact(db)


def test_concurrent_sweeps_never_create_a_second_active_alert(postgres_store, db, database_url):
    """Four sweeps at once over 300 due leads: each alert is created exactly once."""
    db.execute("""
        insert into lead_state (tenant_id, lead_id, entered_at, last_activity_at, last_outbound_at,
                                no_contact_due_at, no_reply_due_at)
        select 'acme', 'L' || i, now() - interval '10 days', now() - interval '10 days', now() - interval '10 days',
               now() - interval '3 days', now() - interval '7 days'
        from generate_series(1, 300) i""")
    results = at_once(database_url, 4, lambda s: s.sweep())
    assert sum(r["created"]["NoContact7d"] for r in results) == 300
    assert sum(r["created"]["NoReply3d"] for r in results) == 300
    counts = db.execute(
        "select type, count(*), count(distinct lead_id) from max_alerts group by type order by type"
    ).fetchall()
    assert counts == [("NoContact7d", 300, 300), ("NoReply3d", 300, 300)]
    assert_counts_exact(db)


def test_sweep_judges_again_when_an_alert_appears_while_it_waits(postgres_store, db, database_url):
    """An active alert committed for a due lead while the sweep waits on that lead's state row is
    invisible to the sweep's snapshot: the sweep must judge again, not fail nor duplicate it."""
    import psycopg

    log(postgres_store, direction="in", occurredAt=ago(days=16))
    with psycopg.connect(database_url) as other:  # another writer holds the lead's state row...
        other.execute("select 1 from lead_state where tenant_id = 'acme' and lead_id = 'L1' for update")
        with ThreadPoolExecutor(1) as pool:
            sweep = pool.submit(postgres_store.sweep)  # ...the sweep takes its snapshot and waits for it
            deadline = time.monotonic() + 60  # a safety net: the wait is the event checked
            # On a Citus cluster the sweep waits on the worker holding the tenant: every node's activity.
            activity = "citus_stat_activity" if os.environ.get("LEADWATCH_TEST_CITUS") else "pg_stat_activity"
            while not db.execute(
                f"select exists (select from {activity} where wait_event_type = 'Lock' and query like '%sweep_alerts%')"
            ).fetchone()[0]:
                assert time.monotonic() < deadline, "the sweep never waited on the lead's row"
                time.sleep(0.05)
            other.execute("""insert into max_alerts (tenant_id, lead_id, type, severity, message)
                             values ('acme', 'L1', 'NoContact7d', 'med', 'opened elsewhere')""")
            other.commit()
            result = sweep.result(timeout=30)
    assert result["created"]["NoContact7d"] == 0 and result["escalated"] == 1
    assert active(db) == {("L1", "NoContact7d"): "high"}
    assert_counts_exact(db)


def test_inbound_that_occurred_before_our_last_outbound_does_not_resolve_no_reply(store, db):
    log(store, direction="out", occurredAt=ago(days=4))
    store.sweep()
    late = log(store, direction="in", occurredAt=ago(days=5), externalId="late-1")
    assert late["alerts"]["resolved"] == []
    assert ("L1", "NoReply3d") in active(db)


def test_old_event_never_moves_last_activity_back(store, db):
    log(store, direction="in", occurredAt=ago(days=2))
    log(store, direction="in", occurredAt=ago(days=20), externalId="backfill-1")
    assert store.sweep()["created"] == {"NoContact7d": 0, "NoReply3d": 0, "StaleLead30d": 0, "HighValueRisk": 0}
    last = db.execute("select last_activity_at from lead_state where lead_id = 'L1'").fetchone()[0]
    assert abs((last - ago(days=2)).total_seconds()) < 60


def test_new_outbound_restarts_the_no_reply_clock(store, db):
    log(store, direction="out", occurredAt=ago(days=4))
    store.sweep()
    follow_up = log(store, direction="out")
    assert follow_up["alerts"]["resolved"] == ["NoReply3d"]
    assert active(db) == {}
    assert store.sweep(now=later(days=3, minutes=1))["created"]["NoReply3d"] == 1


def test_manually_resolved_alert_is_not_raised_again_for_the_same_silence(store, db):
    log(store, direction="in", occurredAt=ago(days=8))
    store.sweep()
    [alert] = store.list_active_alerts("acme", AlertQuery())["alerts"]
    resolved = store.resolve_alert("acme", alert["id"], "user-42")
    assert resolved["alert"]["resolved_by"] == "user-42" and resolved["alert"]["resolved_at"]

    assert sum(store.sweep()["created"].values()) == 0
    later_sweep = store.sweep(now=later(days=10))  # 18 days: would have been escalated
    assert later_sweep["created"]["NoContact7d"] == 0 and later_sweep["escalated"] == 0
    assert active(db) == {}

    log(store, direction="in")  # a new cycle starts with the next activity
    assert store.sweep(now=later(days=7, minutes=1))["created"]["NoContact7d"] == 1
    assert_counts_exact(db)


def test_resolve_is_idempotent_and_keeps_the_first_resolution(store, db):
    log(store, direction="in", occurredAt=ago(days=8))
    store.sweep()
    [alert] = store.list_active_alerts("acme", AlertQuery())["alerts"]
    first = store.resolve_alert("acme", alert["id"], "user-1")
    second = store.resolve_alert("acme", alert["id"], "user-2")
    assert second == first
    assert db.execute("select count(*) from alert_events where event = 'resolved'").fetchone()[0] == 1


def test_resolving_another_tenants_alert_is_not_found(store, db):
    log(store, tenant="other", direction="in", occurredAt=ago(days=8))
    store.sweep()
    alert_id = db.execute("select id::text from max_alerts").fetchone()[0]
    with pytest.raises(NotFound, match="alert not found"):
        store.resolve_alert("acme", alert_id, "intruder")
    assert db.execute("select resolved_at from max_alerts").fetchone()[0] is None


def test_replayed_external_id_is_stored_once(store, db):
    first = log(store, direction="in", externalId="wamid-1", messageSnippet="Bonjour")
    replay = log(store, direction="in", externalId="wamid-1", messageSnippet="Bonjour")
    assert replay["duplicate"] is True and first["duplicate"] is False
    assert replay["activity"]["id"] == first["activity"]["id"]
    assert db.execute("select count(*) from lead_activities").fetchone()[0] == 1


def test_same_external_id_on_another_channel_or_tenant_is_another_activity(store, db):
    log(store, channel="whatsapp", externalId="m-1")
    log(store, channel="email", externalId="m-1")
    log(store, tenant="other", channel="whatsapp", externalId="m-1")
    assert db.execute("select count(*) from lead_activities").fetchone()[0] == 3


def test_concurrent_replays_are_stored_once(postgres_store, db, database_url):
    results = at_once(database_url, 4, lambda s: log(s, direction="in", externalId="wamid-race"))
    assert db.execute("select count(*) from lead_activities").fetchone()[0] == 1
    assert sorted(r["duplicate"] for r in results) == [False, True, True, True]


def test_failed_send_is_stored_but_is_not_contact(store, db):
    log(store, direction="in", occurredAt=ago(days=8))
    store.sweep()
    failed = log(store, direction="out", status="failed")
    assert failed["alerts"]["resolved"] == []
    assert ("L1", "NoContact7d") in active(db)
    assert db.execute("select count(*) from lead_activities").fetchone()[0] == 2


def test_stale_lead_supersedes_no_contact(store, db):
    log(store, direction="in", occurredAt=ago(days=20))
    store.sweep()
    assert active(db) == {("L1", "NoContact7d"): "high"}
    result = store.sweep(now=later(days=11))
    assert result["created"]["StaleLead30d"] == 1 and result["resolved"] == 1
    assert active(db) == {("L1", "StaleLead30d"): "low"}
    assert_counts_exact(db)


def test_long_silence_first_seen_raises_stale_only(store, db):
    log(store, direction="in", occurredAt=ago(days=40))
    store.sweep()
    assert active(db) == {("L1", "StaleLead30d"): "low"}


def test_high_value_lead_silent_three_days_is_at_risk(store, db):
    add_leads(store, BIG={"value": 25000}, SMALL={"value": 500})
    log(store, lead="BIG", direction="in", occurredAt=ago(days=3, minutes=1))
    log(store, lead="SMALL", direction="in", occurredAt=ago(days=3, minutes=1))
    assert store.sweep()["created"]["HighValueRisk"] == 1
    assert active(db) == {("BIG", "HighValueRisk"): "high"}
    add_leads(store, BIG={"value": 900})  # the deal shrank: no longer high value
    assert active(db) == {}
    assert_counts_exact(db)


def test_tenant_rule_override_changes_threshold_and_language(store, db):
    db.execute("""insert into alert_rules (tenant_id, type, threshold, severity, locale, messages, action)
                  select 'acme', type, '2 days', severity, 'en', messages, action from alert_rules
                  where tenant_id = '*' and type = 'NoContact7d'""")
    log(store, direction="in", occurredAt=ago(days=2, minutes=1))
    log(store, tenant="other", direction="in", occurredAt=ago(days=2, minutes=1))
    store.sweep()
    [alert] = store.list_active_alerts("acme", AlertQuery())["alerts"]
    assert alert["message"] == "No contact for 2 days. Lead at risk of being lost."
    assert alert["suggested_action"]["label"] == "Follow up on WhatsApp"
    assert store.list_active_alerts("other", AlertQuery())["alerts"] == []


def test_sweep_of_one_tenant_leaves_the_others(store, db):
    log(store, tenant="acme", direction="in", occurredAt=ago(days=8))
    log(store, tenant="other", direction="in", occurredAt=ago(days=8))
    store.sweep("acme")
    assert active(db, "acme") and not active(db, "other")


def _alerts_of_every_severity(store):
    add_leads(store, HV={"value": 50000})
    log(store, lead="MED1", direction="in", occurredAt=ago(days=8))  # NoContact7d med
    log(store, lead="LOW", direction="in", occurredAt=ago(days=31))  # StaleLead30d low
    log(store, lead="HV", direction="in", occurredAt=ago(days=4))  # HighValueRisk high
    store.sweep()
    log(store, lead="MED2", direction="out", occurredAt=ago(days=4))  # NoReply3d med, created later
    store.sweep()


def test_alerts_are_ordered_high_med_low_then_newest(store, db):
    _alerts_of_every_severity(store)
    alerts = store.list_active_alerts("acme", AlertQuery())["alerts"]
    assert [(a["lead_id"], a["severity"]) for a in alerts] == [
        ("HV", "high"),
        ("MED2", "med"),
        ("MED1", "med"),
        ("LOW", "low"),
    ]


def test_pagination_walks_every_alert_once_in_order_with_stats_of_all(store, db):
    _alerts_of_every_severity(store)
    full = store.list_active_alerts("acme", AlertQuery())
    seen, cursor, pages = [], None, 0
    while True:
        page = store.list_active_alerts("acme", AlertQuery(limit=1 if pages % 2 else 2, cursor=cursor))
        assert page["stats"] == full["stats"]
        seen += [a["id"] for a in page["alerts"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [a["id"] for a in full["alerts"]] and pages == 3
    assert full["stats"]["total"] == 4
    assert full["stats"]["by_severity"] == {"high": 1, "med": 2, "low": 1}
    assert full["stats"]["by_type"]["NoContact7d"] == 1 and full["stats"]["by_type"]["NoReply3d"] == 1
    assert_counts_exact(db)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"severity": "med"}, {"MED1", "MED2"}),
        ({"type": "StaleLead30d"}, {"LOW"}),
        ({"lead": "HV"}, {"HV"}),
        ({"severity": "low", "lead": "HV"}, set()),
    ],
    ids=["severity", "type", "lead", "combined"],
)
def test_list_filters(store, db, query, expected):
    _alerts_of_every_severity(store)
    alerts = store.list_active_alerts("acme", AlertQuery(**query))["alerts"]
    assert {a["lead_id"] for a in alerts} == expected


def test_timeline_is_newest_first_and_paginated(store, db):
    for days in (5, 1, 3):
        log(store, direction="in", occurredAt=ago(days=days), externalId=f"m{days}")
    from leadwatch.models.requests import TimelineQuery

    first = store.list_lead_activities("acme", "L1", TimelineQuery(limit=2))
    second = store.list_lead_activities("acme", "L1", TimelineQuery(limit=2, cursor=first["next_cursor"]))
    ids = [a["external_id"] for a in first["activities"] + second["activities"]]
    assert ids == ["m1", "m3", "m5"] and second["next_cursor"] is None


def test_timeline_of_unknown_lead_is_not_found(store, db):
    from leadwatch.models.requests import TimelineQuery

    with pytest.raises(NotFound):
        store.list_lead_activities("acme", "nobody", TimelineQuery())


def test_database_refuses_an_occurred_at_in_the_future(store, db):
    """The SQL function guards its own rule, whoever calls it."""
    from leadwatch.models.requests import ActivityIn

    activity = ActivityIn.model_construct(
        leadId="L1",
        channel="email",
        direction="in",
        status="sent",
        messageSnippet=None,
        meta=None,
        occurredAt=later(hours=1),
        externalId=None,
    )
    with pytest.raises(ValidationFailed) as caught:
        store.log_activity("acme", activity)
    assert caught.value.details == [
        {"field": "occurredAt", "message": "occurredAt is more than 5 minutes in the future"}
    ]
    assert db.execute("select count(*) from lead_activities").fetchone()[0] == 0
