"""The alert desk: snooze, bulk actions, history, overdue, rules over the API, retention — on both stores."""

from __future__ import annotations

import uuid

import pytest
from helpers import active, add_leads, ago, assert_counts_exact, later, log
from leadwatch import Api
from leadwatch.devtools.dev import create_app
from leadwatch.http.identity import VerifiedAccess
from leadwatch.models.desk import RuleIn
from test_access import ADMIN, AGENT, OTHER_AGENT, SETTINGS, bearer, token

ACME = {"X-Tenant": "acme"}


def silent_lead(store, db, lead="L1", days=8, tenant="acme") -> str:
    """A lead silent for `days`, swept: its NoContact7d alert's id."""
    log(store, tenant=tenant, lead=lead, direction="in", occurredAt=ago(days=days))
    store.sweep()
    return str(
        db.execute(
            "select id from max_alerts where tenant_id = %s and lead_id = %s and resolved_at is null", [tenant, lead]
        ).fetchone()[0]
    )


def events_of(db, alert_id: str) -> list[tuple[str, str, str]]:
    return [
        tuple(r)
        for r in db.execute(
            "select event, severity, actor from alert_events where alert_id = %s order by id", [alert_id]
        )
    ]


def hot_lead(store, lead="L1", minutes=(30, 20, 10)) -> None:
    for m in minutes:
        log(store, lead=lead, direction="in", occurredAt=ago(minutes=m))


# Snooze ------------------------------------------------------------------------------------------


def test_snoozed_alert_leaves_the_active_list_and_its_stats(client, store, db):
    alert_id = silent_lead(store, db)
    response = client.post(f"/api/alerts/{alert_id}/snooze", headers=ACME, json={"for": "4h"})
    assert response.status_code == 200, response.get_json()
    alert = response.get_json()["alert"]
    assert set(alert) == {"id", "type", "lead_id", "snoozed_until", "severity"}
    assert alert["id"] == alert_id and alert["type"] == "NoContact7d" and alert["snoozed_until"] is not None

    listed = client.get("/api/alerts/active", headers=ACME).get_json()
    assert listed["alerts"] == [] and listed["stats"]["total"] == 0 and listed["stats"]["snoozed"] == 1
    assert listed["stats"]["by_type"]["NoContact7d"] == 0
    snoozed = client.get("/api/alerts/active?state=snoozed", headers=ACME).get_json()
    [shown] = snoozed["alerts"]
    assert shown["id"] == alert_id and shown["snoozed_until"] == alert["snoozed_until"] and shown["overdue"] is False
    assert_counts_exact(db)


def test_snooze_then_condition_still_holds_at_until_brings_it_back_with_the_ladders_severity(store, db):
    alert_id = silent_lead(store, db)  # 8 days: med; the ladder makes it high at 14 days
    store.snooze_alert("acme", alert_id, later(days=7), "user_manual")
    assert store.sweep(now=later(days=3))["reopened"] == 0
    assert db.execute("select snoozed_until is not null from max_alerts").fetchone()[0]

    woken = store.sweep(now=later(days=7, minutes=1))
    assert woken["reopened"] == 1
    assert active(db) == {("L1", "NoContact7d"): "high"}
    assert db.execute("select snoozed_until from max_alerts").fetchone()[0] is None
    [listed] = store.list_active_alerts("acme", _query())["alerts"]
    assert listed["id"] == alert_id and listed["severity"] == "high"
    assert store.sweep(now=later(days=7, minutes=2))["reopened"] == 0, "woken once"


def test_snooze_then_the_lead_answered_resolves_it_and_it_does_not_come_back(store, db):
    log(store, direction="out", occurredAt=ago(days=4))
    store.sweep()
    [(alert_id,)] = db.execute("select id::text from max_alerts where type = 'NoReply3d'").fetchall()
    store.snooze_alert("acme", alert_id, later(days=2), "user_manual")

    reply = log(store, direction="in")
    assert "NoReply3d" in reply["alerts"]["resolved"]
    assert store.sweep(now=later(days=2, minutes=1))["reopened"] == 0
    resolved_at, resolution = db.execute(
        "select resolved_at, resolution from max_alerts where id = %s", [alert_id]
    ).fetchone()
    assert resolved_at is not None and resolution == "activity"
    assert active(db) == {}


def test_snoozed_alert_whose_condition_no_longer_holds_is_resolved_at_until(store, db):
    alert_id = silent_lead(store, db)  # 8 days of silence
    store.snooze_alert("acme", alert_id, later(days=2), "user_manual")
    store.set_rule("acme", "NoContact7d", RuleIn(threshold="30d", escalateAfter="60d"))
    result = store.sweep(now=later(days=2, minutes=1))
    assert result["reopened"] == 0 and result["resolved"] == 1
    assert db.execute("select resolution, resolved_by from max_alerts where id = %s", [alert_id]).fetchone() == (
        "rule",
        "system",
    )


def test_unsnooze_brings_it_back_now_and_is_recorded(client, store, db):
    alert_id = silent_lead(store, db)
    client.post(f"/api/alerts/{alert_id}/snooze", headers=ACME, json={"until": later(days=1).isoformat()})
    response = client.post(f"/api/alerts/{alert_id}/unsnooze", headers=ACME)
    assert response.status_code == 200
    assert response.get_json()["alert"]["snoozed_until"] is None
    assert [a["id"] for a in client.get("/api/alerts/active", headers=ACME).get_json()["alerts"]] == [alert_id]
    assert [e[0] for e in events_of(db, alert_id)] == ["created", "snoozed", "unsnoozed"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"for": "31d"}, "for"),
        ({"for": "4 hours"}, "for"),
        ({"until": "2020-01-01T00:00:00Z"}, "until"),
        ({"for": "4h", "until": later(days=1).isoformat()}, "body"),
        ({}, "body"),
        ({"for": "4h", "note": "x"}, "note"),
    ],
    ids=["over-30-days", "not-a-duration", "in-the-past", "both", "neither", "unknown-field"],
)
def test_snooze_rejects_bad_times_naming_the_field_and_writes_nothing(client, store, db, body, field):
    alert_id = silent_lead(store, db)
    response = client.post(f"/api/alerts/{alert_id}/snooze", headers=ACME, json=body)
    assert response.status_code == 422
    assert field in [d["field"] for d in response.get_json()["error"]["details"]]
    assert db.execute("select snoozed_until from max_alerts").fetchone()[0] is None
    assert [e[0] for e in events_of(db, alert_id)] == ["created"]


def test_snoozing_a_resolved_alert_is_a_conflict_and_an_unknown_one_not_found(client, store, db):
    alert_id = silent_lead(store, db)
    client.post(f"/api/alerts/{alert_id}/resolve", headers=ACME)
    assert client.post(f"/api/alerts/{alert_id}/snooze", headers=ACME, json={"for": "1d"}).status_code == 409
    assert client.post(f"/api/alerts/{uuid.uuid4()}/snooze", headers=ACME, json={"for": "1d"}).status_code == 404
    assert (
        client.post(f"/api/alerts/{alert_id}/snooze", headers={"X-Tenant": "other"}, json={"for": "1d"}).status_code
        == 404
    )


# Bulk --------------------------------------------------------------------------------------------


def test_bulk_resolve_with_mixed_ids_answers_each_in_order(client, store, db):
    open_id = silent_lead(store, db, lead="L1")
    done_id = silent_lead(store, db, lead="L2")
    client.post(f"/api/alerts/{done_id}/resolve", headers=ACME)
    foreign_id = silent_lead(store, db, lead="F1", tenant="other")
    unknown_id = str(uuid.uuid4())

    response = client.post(
        "/api/alerts/bulk",
        headers=ACME,
        json={"action": "resolve", "ids": [open_id, done_id, foreign_id, unknown_id]},
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["results"] == [
        {"id": open_id, "result": "done"},
        {"id": done_id, "result": "already_resolved"},
        {"id": foreign_id, "result": "not_found"},
        {"id": unknown_id, "result": "not_found"},
    ]
    assert body["done"] == 1
    assert active(db) == {} and active(db, "other") == {("F1", "NoContact7d"): "med"}
    assert db.execute("select no_contact_due_at from lead_state where lead_id = 'L1'").fetchone()[0] is None, (
        "a manual resolve: the same silence is not raised again"
    )
    assert_counts_exact(db)


def test_bulk_snooze_snoozes_every_alert_and_records_each(client, store, db):
    ids = [silent_lead(store, db, lead=f"L{n}") for n in range(3)]
    body = client.post("/api/alerts/bulk", headers=ACME, json={"action": "snooze", "ids": ids, "for": "2d"}).get_json()
    assert body["done"] == 3
    listed = client.get("/api/alerts/active", headers=ACME).get_json()
    assert listed["alerts"] == [] and listed["stats"]["snoozed"] == 3
    assert db.execute("select count(*) from alert_events where event = 'snoozed'").fetchone()[0] == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "resolve", "ids": [str(uuid.uuid4()) for _ in range(501)]}, "ids"),
        ({"action": "resolve", "ids": []}, "ids"),
        ({"action": "archive", "ids": ["ID"]}, "action"),
        ({"action": "snooze", "ids": ["ID"]}, "body"),
        ({"action": "resolve", "ids": ["ID"], "for": "1d"}, "body"),
        ({"action": "resolve", "ids": ["ID", "ID"]}, "ids"),
        ({"action": "resolve", "ids": ["not-a-uuid"]}, "ids.0"),
    ],
    ids=["over-500", "empty", "unknown-action", "snooze-without-time", "resolve-with-time", "twice", "not-a-uuid"],
)
def test_bulk_rejects_bad_requests_naming_the_field_and_writes_nothing(client, store, db, body, field):
    alert_id = silent_lead(store, db)
    body = {**body, "ids": [alert_id if i == "ID" else i for i in body["ids"]]}
    response = client.post("/api/alerts/bulk", headers=ACME, json=body)
    assert response.status_code == 422
    assert field in [d["field"] for d in response.get_json()["error"]["details"]]
    assert active(db) == {("L1", "NoContact7d"): "med"}
    assert db.execute("select snoozed_until from max_alerts").fetchone()[0] is None


# History -----------------------------------------------------------------------------------------


def test_history_of_an_alert_through_escalate_snooze_reopen_resolve(client, store, db):
    log(store, direction="in", occurredAt=ago(days=7, minutes=1))
    store.sweep()
    [(alert_id,)] = db.execute("select id::text from max_alerts").fetchall()
    store.sweep(now=later(days=7))  # 14 days: escalated to high
    client.post(f"/api/alerts/{alert_id}/snooze", headers=ACME, json={"for": "2d"})
    store.sweep(now=later(days=7, hours=1))  # past the snooze: back
    client.post(f"/api/alerts/{alert_id}/resolve", headers=ACME)

    response = client.get(f"/api/alerts/{alert_id}/history", headers=ACME)
    assert response.status_code == 200
    body = response.get_json()
    assert body["alert"]["id"] == alert_id and body["alert"]["resolved_at"] is not None
    assert [(e["event"], e["severity"], e["actor"]) for e in body["events"]] == [
        ("created", "med", "system"),
        ("escalated", "high", "system"),
        ("snoozed", "high", "user_manual"),
        ("reopened", "high", "system"),
        ("overdue", "high", "system"),  # high for days by then
        ("resolved", "high", "user_manual"),
    ]
    assert all(e["at"] for e in body["events"])
    assert client.get(f"/api/alerts/{alert_id}/history", headers={"X-Tenant": "other"}).status_code == 404


def test_lead_alerts_lists_active_and_past_newest_first_one_page_at_a_time(client, store, db):
    silent_lead(store, db, lead="L1", days=8)  # NoContact7d ...
    log(store, lead="L1", direction="in")  # ... answered
    hot_lead(store, lead="L1")  # HotLead24h, active
    log(store, lead="L1", direction="out", occurredAt=ago(minutes=5))  # answered
    hot_lead(store, lead="L1", minutes=(3, 2, 1))  # a second HotLead24h, active
    silent_lead(store, db, lead="L2")  # another lead's
    ids = [
        r[0]
        for r in db.execute("select id::text from max_alerts where lead_id = 'L1' order by created_at desc, id desc")
    ]
    assert len(ids) == 3

    first = client.get("/api/leads/L1/alerts?limit=2", headers=ACME).get_json()
    assert [a["id"] for a in first["alerts"]] == ids[:2] and first["next_cursor"]
    assert first["alerts"][0]["resolved_at"] is None and first["alerts"][1]["resolved_at"] is not None
    second = client.get(f"/api/leads/L1/alerts?limit=2&cursor={first['next_cursor']}", headers=ACME).get_json()
    assert [a["id"] for a in second["alerts"]] == ids[2:] and second["next_cursor"] is None
    assert client.get("/api/leads/NOBODY/alerts", headers=ACME).status_code == 404


# Who may: the same callers and roles as the single actions ----------------------------------------


@pytest.fixture
def desk_world(store, db):
    """Tenant acme: OWNED (the agent's) and OTHER (another agent's) with an alert each; verified callers."""
    add_leads(store, OWNED={"ownerId": AGENT}, OTHER={"ownerId": OTHER_AGENT})
    ids = {lead: silent_lead(store, db, lead=lead) for lead in ("OWNED", "OTHER")}
    client = create_app(Api(store, VerifiedAccess(SETTINGS))).test_client()
    return client, ids


def test_agent_acts_only_on_their_own_leads_alerts(desk_world, db):
    client, ids = desk_world
    agent = bearer(token(role="agent", sub=AGENT))
    bulk = client.post(
        "/api/alerts/bulk", headers=agent, json={"action": "snooze", "ids": [ids["OWNED"], ids["OTHER"]], "for": "1d"}
    ).get_json()
    assert bulk["results"] == [{"id": ids["OWNED"], "result": "done"}, {"id": ids["OTHER"], "result": "not_found"}]
    assert client.post(f"/api/alerts/{ids['OTHER']}/snooze", headers=agent, json={"for": "1d"}).status_code == 404
    assert client.post(f"/api/alerts/{ids['OTHER']}/unsnooze", headers=agent).status_code == 404
    assert client.get(f"/api/alerts/{ids['OTHER']}/history", headers=agent).status_code == 404
    assert client.get("/api/leads/OTHER/alerts", headers=agent).status_code == 404
    assert client.get(f"/api/alerts/{ids['OWNED']}/history", headers=agent).status_code == 200
    assert [e[2] for e in events_of(db, ids["OWNED"])] == ["system", AGENT], "the snooze is recorded by the user's id"
    assert events_of(db, ids["OTHER"]) == [("created", "med", "system")]


def test_only_admins_and_platform_staff_change_rules(desk_world, db):
    client, _ = desk_world
    change = {"threshold": "5d"}
    callers = {
        "agent": (bearer(token(role="agent", sub=AGENT)), 403),
        "manager": (bearer(token(role="manager")), 403),
        "admin": (bearer(token(role="admin", sub=ADMIN)), 200),
        "platform_admin": ({**bearer(token(role="platform_admin", tenant="staff")), "X-Tenant": "acme"}, 200),
        "scheduler": (bearer("scheduler-token-for-tests"), 403),
    }
    for name, (headers, status) in callers.items():
        assert client.put("/api/rules/NoContact7d", headers=headers, json=change).status_code == status, name
    assert client.get("/api/rules", headers=bearer(token(role="agent", sub=AGENT))).status_code == 200


# Overdue -----------------------------------------------------------------------------------------


def test_high_alert_unresolved_past_the_delay_is_marked_overdue_once(client, store, db):
    hot_lead(store)
    silent_lead(store, db, lead="L2")  # med: never overdue
    assert store.sweep(now=later(hours=23))["overdue"] == 0
    assert store.sweep(now=later(hours=25))["overdue"] == 1
    assert store.sweep(now=later(hours=26))["overdue"] == 0, "marked once"

    listed = client.get("/api/alerts/active", headers=ACME).get_json()["alerts"]
    overdue = {a["lead_id"]: (a["overdue"], a["overdue_at"] is not None) for a in listed}
    assert overdue == {"L1": (True, True), "L2": (False, False)}
    assert db.execute("select type, severity, actor from alert_events where event = 'overdue'").fetchall() == [
        ("HotLead24h", "high", "system")
    ]


def test_overdue_delay_is_per_tenant(store, db):
    store.set_rule("acme", "HotLead24h", RuleIn(overdueAfter="2h"))
    hot_lead(store, lead="L1")
    for minutes in (30, 20, 10):
        log(store, tenant="other", lead="O1", direction="in", occurredAt=ago(minutes=minutes))
    assert store.sweep(now=later(hours=3))["overdue"] == 1
    assert db.execute("select tenant_id from max_alerts where overdue_at is not null").fetchall() == [("acme",)]


# Rules over the API --------------------------------------------------------------------------------


def test_rules_list_the_defaults_merged_with_the_tenants_own(client, store, db):
    rules = client.get("/api/rules", headers=ACME).get_json()["rules"]
    assert [r["type"] for r in rules] == sorted(
        ["NoContact7d", "NoReply3d", "StaleLead30d", "HighValueRisk", "HotLead24h", "PreferredChannel"]
    )
    no_contact = next(r for r in rules if r["type"] == "NoContact7d")
    assert (
        no_contact["threshold"] == "7d" and no_contact["escalate_after"] == "14d" and no_contact["source"] == "default"
    )
    assert no_contact["overdue_after"] == "1d"

    response = client.put(
        "/api/rules/NoContact7d",
        headers=ACME,
        json={"threshold": "5d", "locale": "en", "messages": {"en": "Silent for {days} days."}},
    )
    assert response.status_code == 200, response.get_json()
    rule = response.get_json()["rule"]
    assert rule["threshold"] == "5d" and rule["escalate_after"] == "14d" and rule["source"] == "tenant"
    assert rule["messages"]["en"] == "Silent for {days} days." and rule["messages"]["fr"].startswith("Aucun contact")
    other = client.get("/api/rules", headers={"X-Tenant": "other"}).get_json()["rules"]
    assert next(r for r in other if r["type"] == "NoContact7d")["threshold"] == "7d"

    log(store, direction="in", occurredAt=ago(days=6))
    store.sweep()
    assert db.execute("select message from max_alerts").fetchone()[0] == "Silent for 6 days."


def test_shortened_threshold_raises_on_the_next_sweep_without_a_new_activity(client, store, db):
    log(store, direction="out", occurredAt=ago(days=2))
    assert sum(store.sweep()["created"].values()) == 0
    response = client.put("/api/rules/NoReply3d", headers=ACME, json={"threshold": "1d", "escalateAfter": "5d"})
    assert response.status_code == 200
    assert store.sweep()["created"]["NoReply3d"] == 1
    assert active(db) == {("L1", "NoReply3d"): "med"}


def test_lowered_value_threshold_watches_more_leads(store, db):
    add_leads(store, L1={"value": 2000})
    store.set_rule("acme", "HighValueRisk", RuleIn(minValue=1000))
    assert store.sweep(now=later(days=3, minutes=1))["created"]["HighValueRisk"] == 1
    store.set_rule("acme", "HighValueRisk", RuleIn(minValue=5000))
    assert ("L1", "HighValueRisk") not in active(db), "a lead no longer watched has its alert resolved"


def test_disabled_rule_resolves_its_alerts_and_raises_no_more(client, store, db):
    hot_lead(store, lead="L1")
    response = client.put("/api/rules/HotLead24h", headers=ACME, json={"enabled": False})
    assert response.status_code == 200 and response.get_json()["rule"]["enabled"] is False
    assert active(db) == {}
    hot_lead(store, lead="L2")
    assert active(db) == {}
    assert db.execute("select resolution from max_alerts").fetchall() == [("rule",)]


@pytest.mark.parametrize(
    ("rule_type", "body", "field"),
    [
        ("NoContact7d", {"escalateAfter": "5d"}, "escalateAfter"),
        ("NoContact7d", {"escalatedSeverity": "low"}, "escalatedSeverity"),
        ("NoContact7d", {"escalateAfter": None}, "escalateAfter"),
        ("NoContact7d", {"threshold": "0d"}, "threshold"),
        ("NoContact7d", {"threshold": None}, "threshold"),
        ("NoContact7d", {"severity": "urgent"}, "severity"),
        ("NoContact7d", {"messages": {"de": "Hallo"}}, "messages.de"),
        ("NoContact7d", {"enabled": None}, "enabled"),
        ("NoContact7d", {}, "body"),
        ("PreferredChannel", {"minCount": 6}, "minCount"),
        ("HighValueRisk", {"minValue": -1}, "minValue"),
    ],
    ids=[
        "ladder-earlier",
        "ladder-lower",
        "half-a-ladder",
        "zero-threshold",
        "no-threshold",
        "unknown-severity",
        "unknown-locale",
        "null-enabled",
        "nothing",
        "more-than-five",
        "negative-value",
    ],
)
def test_rule_changes_are_validated_naming_the_field_and_write_nothing(client, db, rule_type, body, field):
    response = client.put(f"/api/rules/{rule_type}", headers=ACME, json=body)
    assert response.status_code == 422, response.get_json()
    assert any(d["field"].startswith(field) for d in response.get_json()["error"]["details"])
    assert db.execute("select count(*) from alert_rules where tenant_id <> '*'").fetchone()[0] == 0


def test_every_rule_read_is_written_back_unchanged(client, db):
    """GET /api/rules → PUT each rule back as read (snake_case, "7d", nulls, read-only fields): 200,
    and nothing changes (a default rule stays the default)."""
    rules = client.get("/api/rules", headers=ACME).get_json()["rules"]
    assert len(rules) == 6

    for rule in rules:
        response = client.put(f"/api/rules/{rule['type']}", headers=ACME, json=rule)
        assert response.status_code == 200, (rule["type"], response.get_json())
        assert response.get_json()["rule"] == rule

    assert client.get("/api/rules", headers=ACME).get_json()["rules"] == rules
    assert db.execute("select count(*) from alert_rules where tenant_id <> '*'").fetchone()[0] == 0


def test_a_rule_read_and_changed_is_written_back_with_its_changes(client, db):
    rules = client.get("/api/rules", headers=ACME).get_json()["rules"]
    no_reply = next(r for r in rules if r["type"] == "NoReply3d")
    changed = {**no_reply, "threshold": "2d", "escalate_after": "5d", "action": {**no_reply["action"]}}
    changed["action"]["text"] = {**no_reply["action"]["text"], "en": "Any news, {name}?"}

    response = client.put("/api/rules/NoReply3d", headers=ACME, json=changed)

    assert response.status_code == 200, response.get_json()
    after = next(r for r in client.get("/api/rules", headers=ACME).get_json()["rules"] if r["type"] == "NoReply3d")
    assert after == {**changed, "source": "tenant"} == response.get_json()["rule"]
    # The camelCase body of before is read as ever.
    response = client.put("/api/rules/NoReply3d", headers=ACME, json={"escalateAfter": "6d", "minCount": 2})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["rule"]["escalate_after"] == "6d" and response.get_json()["rule"]["min_count"] == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "NoReply3d"}, "type"),
        ({"source": "tenant"}, "source"),
        ({"supersedes": "NoReply3d"}, "supersedes"),
        ({"params": {"template": "autre"}}, "action"),  # an action's params are read-only
        ({"escalate_after": "5d"}, "escalateAfter"),  # the ladder's check (in set_rule) names it so
        ({"min_count": 0}, "min_count"),
        ({"currency": "euro"}, "currency"),
    ],
    ids=["type", "source", "supersedes", "action", "ladder-earlier", "zero-count", "bad-currency"],
)
def test_a_rule_read_and_written_back_wrong_names_the_field_and_writes_nothing(client, db, change, field):
    rule = next(r for r in client.get("/api/rules", headers=ACME).get_json()["rules"] if r["type"] == "NoContact7d")
    if field == "action":
        change = {"action": {**rule["action"], **change}}

    response = client.put("/api/rules/NoContact7d", headers=ACME, json={**rule, **change})

    assert response.status_code == 422, response.get_json()
    assert [d["field"] for d in response.get_json()["error"]["details"]] == [field]
    assert db.execute("select count(*) from alert_rules where tenant_id <> '*'").fetchone()[0] == 0


def test_a_rule_written_back_unchanged_still_needs_an_admin(desk_world, db):
    client, _ = desk_world
    agent = bearer(token(role="agent", sub=AGENT))
    rule = client.get("/api/rules", headers=agent).get_json()["rules"][0]
    for headers, status in (
        (agent, 403),
        (bearer(token(role="manager")), 403),
        (bearer(token(role="admin", sub=ADMIN)), 200),
    ):
        assert client.put(f"/api/rules/{rule['type']}", headers=headers, json=rule).status_code == status


def test_unknown_rule_type_is_not_found(client, db):
    assert client.put("/api/rules/Whatever", headers=ACME, json={"enabled": False}).status_code == 404


# Retention ---------------------------------------------------------------------------------------


def _old_resolved_alert(store, db, lead: str, resolved_days_ago: int) -> str:
    """A NoContact7d alert answered by a later activity, its resolution moved back in time."""
    alert_id = silent_lead(store, db, lead=lead, days=400)
    log(store, lead=lead, direction="out", occurredAt=ago(days=300))
    db.execute(
        "update max_alerts set resolved_at = now() - make_interval(days => %s) where id = %s",
        [resolved_days_ago, alert_id],
    )
    return alert_id


def test_retention_removes_only_what_is_past_its_age(store, db):
    db.execute("insert into retention_policies values ('acme', '365 days', '180 days')")
    for days in range(400, 408):  # 8 old inbound, with 5 newer ones: removable
        log(store, lead="L1", direction="in", occurredAt=ago(days=days))
    for days in range(1, 6):
        log(store, lead="L1", direction="in", occurredAt=ago(days=days, hours=2))
    for days in (400, 401, 402):  # a lead's only inbound: what PreferredChannel reads, kept
        log(store, lead="L2", direction="in", occurredAt=ago(days=days))
    log(store, tenant="other", lead="O1", direction="in", occurredAt=ago(days=500))  # no policy: kept
    old = _old_resolved_alert(store, db, "L3", resolved_days_ago=200)
    recent = _old_resolved_alert(store, db, "L4", resolved_days_ago=100)
    state_before = db.execute("select * from lead_state order by tenant_id, lead_id").fetchall()

    result = store.apply_retention()
    assert result == {"activities": 8, "alerts": 1, "events": 2, "more": False}
    remaining = dict(db.execute("select lead_id, count(*) from lead_activities group by lead_id").fetchall())
    assert remaining == {"L1": 5, "L2": 3, "O1": 1, "L3": 2, "L4": 2}, "L3/L4: one each way, kept as their last"
    alerts = {r[0] for r in db.execute("select id::text from max_alerts")}
    assert old not in alerts and recent in alerts
    assert db.execute("select count(*) from alert_events where alert_id = %s", [old]).fetchone()[0] == 0
    assert db.execute("select * from lead_state order by tenant_id, lead_id").fetchall() == state_before
    assert store.apply_retention() == {"activities": 0, "alerts": 0, "events": 0, "more": False}


def test_retention_keeps_a_resolved_alert_while_its_silence_lasts(store, db):
    """Resolved by hand, an alert is what stops its silence being raised again: kept until the next activity."""
    db.execute("insert into retention_policies values ('*', null, '30 days')")
    alert_id = silent_lead(store, db, days=90)
    store.resolve_alert("acme", alert_id, "user_manual")
    db.execute("update max_alerts set resolved_at = now() - interval '60 days'")
    assert store.apply_retention()["alerts"] == 0
    log(store, direction="in")
    assert store.apply_retention()["alerts"] == 1


def test_retention_runs_in_bounded_batches(client, store, db):
    db.execute("insert into retention_policies values ('*', '30 days', null)")
    for days in range(40, 50):
        log(store, lead="L1", direction="out", occurredAt=ago(days=days))
    first = client.post("/api/retention/run?batch=3").get_json()
    assert first["activities"] == 3 and first["more"] is True
    total = first["activities"]
    while (batch := store.apply_retention(batch=3))["activities"]:
        total += batch["activities"]
    assert total == 8, "the last 2 outbound stay"
    assert client.post("/api/retention/run?batch=0").status_code == 422


def test_retention_route_is_for_the_scheduler_and_the_service(desk_world):
    client, _ = desk_world
    assert client.post("/api/retention/run", headers=bearer(token(role="admin"))).status_code == 403
    assert client.post("/api/retention/run", headers=bearer("scheduler-token-for-tests")).status_code == 200


def _query():
    from leadwatch.models.requests import AlertQuery

    return AlertQuery()
