"""POST /api/activities/log with a list: one transaction, one answer per activity, in order."""

from __future__ import annotations

import random

import pytest
from helpers import active, add_leads, ago
from leadwatch.models.requests import ActivityIn
from test_access import AGENT, bearer, token, world  # noqa: F401  (world: the access test's fixture)

LOG = "/api/activities/log"
H = {"X-Tenant": "acme"}


def activity_rows(db, tenant="acme"):
    return db.execute("select count(*) from lead_activities where tenant_id = %s", [tenant]).fetchone()[0]


def test_a_list_is_logged_with_one_answer_per_activity_in_order(client, db):
    body = [
        {"leadId": "L1", "channel": "whatsapp", "direction": "in", "messageSnippet": "Bonjour"},
        {"leadId": "L2", "channel": "email", "direction": "out"},
        {"leadId": "L1", "channel": "call", "direction": "out", "externalId": "call-7"},
    ]
    response = client.post(LOG, headers=H, json=body)

    assert response.status_code == 200
    answer = response.get_json()
    assert answer["success"] is True
    results = answer["results"]
    assert [(r["activity"]["lead_id"], r["activity"]["channel"]) for r in results] == [
        ("L1", "whatsapp"),
        ("L2", "email"),
        ("L1", "call"),
    ]
    assert [r["duplicate"] for r in results] == [False, False, False]
    assert results[0]["activity"]["message_snippet"] == "Bonjour"
    assert all(set(r["alerts"]) == {"created", "resolved"} for r in results)
    assert activity_rows(db) == 3


def test_a_retried_list_stores_each_activity_once(client, db):
    body = [{"leadId": f"L{n}", "channel": "whatsapp", "direction": "in", "externalId": f"wa-{n}"} for n in range(5)]
    first = client.post(LOG, headers=H, json=body).get_json()["results"]
    again = client.post(LOG, headers=H, json=body).get_json()["results"]

    assert [r["duplicate"] for r in again] == [True] * 5
    assert [r["activity"]["id"] for r in again] == [r["activity"]["id"] for r in first]
    assert activity_rows(db) == 5


def test_an_external_id_repeated_within_the_list_is_stored_once(client, db):
    item = {"leadId": "L1", "channel": "whatsapp", "direction": "in", "externalId": "wa-1"}
    other_lead = {**item, "leadId": "L2"}  # the same message id on the same channel: the same message
    results = client.post(LOG, headers=H, json=[item, other_lead, item]).get_json()["results"]

    assert [r["duplicate"] for r in results] == [False, True, True]
    assert {r["activity"]["id"] for r in results} == {results[0]["activity"]["id"]}
    assert activity_rows(db) == 1


def test_an_invalid_activity_refuses_the_whole_list_naming_its_place(client, db):
    body = [
        {"leadId": "L1", "channel": "whatsapp", "direction": "in"},
        {"channel": "whatsapp", "direction": "in"},
        {"leadId": "L3", "channel": "whatsapp", "direction": "sideways"},
        {"leadId": "L4", "channel": "whatsapp", "direction": "in", "occurredAt": "2999-01-01T00:00:00Z"},
    ]
    response = client.post(LOG, headers=H, json=body)

    assert response.status_code == 422
    fields = [d["field"] for d in response.get_json()["error"]["details"]]
    assert fields == ["[1].leadId", "[2].direction", "[3].occurredAt"]
    assert activity_rows(db) == 0


def test_unstorable_text_in_a_list_is_named_by_its_place(client, db):
    body = [{"leadId": "L1", "channel": "whatsapp", "direction": "in", "messageSnippet": "a\u0000b"}]
    response = client.post(LOG, headers=H, json=body)

    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["field"] == "[0].messageSnippet"
    assert activity_rows(db) == 0


@pytest.mark.parametrize(("size", "status"), [(1000, 200), (1001, 422), (0, 422)], ids=["1000", "1001", "empty"])
def test_a_list_holds_one_to_1000_activities(client, db, size, status):
    body = [
        {"leadId": f"L{n % 300}", "channel": "whatsapp", "direction": "in", "messageSnippet": "x" * 60}
        for n in range(size)
    ]
    response = client.post(LOG, headers=H, json=body)  # 1,000 of them: a body over 64 KiB

    assert response.status_code == status
    if status == 200:
        assert len(response.get_json()["results"]) == size
        assert activity_rows(db) == size
    else:
        assert response.get_json()["error"]["details"][0]["field"] == "body"
        assert activity_rows(db) == 0


def test_an_object_over_64_kib_is_still_413(client, db):
    response = client.post(
        LOG, headers=H, json={"leadId": "L1", "channel": "email", "direction": "in", "meta": {"x": "y" * 70_000}}
    )
    assert response.status_code == 413
    assert activity_rows(db) == 0


def test_an_agent_logs_a_list_only_for_their_own_leads(world, db):  # noqa: F811
    client, _ = world
    agent = bearer(token("agent", sub=AGENT))
    before = activity_rows(db)
    owned = {"leadId": "OWNED", "channel": "call", "direction": "out"}
    refused = client.post(LOG, headers=agent, json=[owned, {**owned, "leadId": "OTHER"}])

    assert refused.status_code == 404
    assert refused.get_json()["error"]["details"] == {"field": "[1].leadId"}
    assert activity_rows(db) == before, "nothing is stored when one activity is refused"
    assert client.post(LOG, headers=agent, json=[owned, owned]).status_code == 200
    assert activity_rows(db) == before + 2


def _random_activities(rng: random.Random, count: int, leads=("L1", "L2", "L3", "L4")) -> list[ActivityIn]:
    """A mix that exercises every rule: bursts, replies, backfill, failed sends, replays, channels."""
    return [
        ActivityIn(
            leadId=rng.choice(leads),
            channel=rng.choice(["whatsapp", "whatsapp", "email", "call"]),
            direction=rng.choice(["in", "in", "out"]),
            status=rng.choice(["sent"] * 6 + ["failed"]),
            # within HotLead24h's window, or days before (never near its edge: both sides judge at their now)
            occurredAt=rng.choice([ago(minutes=rng.randint(1, 1380))] * 3 + [ago(days=rng.randint(2, 40))]),
            externalId=rng.choice([None, None, f"ext-{rng.randint(0, count // 3)}"]),
        )
        for _ in range(count)
    ]


def _comparable(result: dict) -> tuple:
    activity = result["activity"]
    return (
        activity["lead_id"],
        activity["channel"],
        activity["external_id"],
        result["duplicate"],
        tuple(result["alerts"]["created"]),
        tuple(result["alerts"]["resolved"]),
    )


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_list_answers_and_acts_exactly_as_logging_its_activities_one_by_one(store, db, seed):
    """The same activities logged one call each (tenant one) and as one list (tenant many): the same
    answers, the same lead state, the same alerts (HotLead24h, PreferredChannel and the time-based ones)."""
    silent_since = ago(days=8)
    for tenant in ("one", "many"):
        add_leads(store, tenant=tenant, L3={"preferredChannel": "call"}, L4={"value": 50000})
        for lead in ("L1", "L2", "L3", "L4"):  # an alert to answer for every lead
            db.execute(
                "insert into max_alerts (tenant_id, lead_id, type, severity, message, cycle_started_at)"
                " values (%s, %s, 'NoContact7d', 'med', 'x', %s)",
                [tenant, lead, silent_since],
            )
    activities = _random_activities(random.Random(seed), 60)

    singles = [store.log_activity("one", activity) for activity in activities]
    batch = store.log_activities("many", activities)["results"]

    assert [_comparable(r) for r in batch] == [_comparable(r) for r in singles]
    state = (
        "select lead_id, entered_at is not null, last_activity_at, last_inbound_at, last_outbound_at,"
        " no_contact_due_at, no_reply_due_at, stale_due_at, high_value_due_at from lead_state"
        " where tenant_id = %s order by lead_id"
    )
    assert db.execute(state, ["many"]).fetchall() == db.execute(state, ["one"]).fetchall()
    assert active(db, "many") == active(db, "one")
    alerts = (
        "select lead_id, type, severity, message, channel, cycle_started_at, resolved_at is null, resolution"
        " from max_alerts where tenant_id = %s"
    )
    assert sorted(db.execute(alerts, ["many"]).fetchall(), key=repr) == sorted(
        db.execute(alerts, ["one"]).fetchall(), key=repr
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_list_starts_the_state_of_leads_first_heard_of_as_single_calls_do(store, db, seed):
    """Leads not in the directory (N1..N3) and a known one (L1), logged one call each (tenant one)
    and as one list (tenant many): the same answers, the same state rows, the same alerts."""
    for tenant in ("one", "many"):
        add_leads(store, tenant=tenant, L1={"value": 50000})
    activities = _random_activities(random.Random(seed), 40, leads=("N1", "N2", "N3", "L1"))

    singles = [store.log_activity("one", activity) for activity in activities]
    batch = store.log_activities("many", activities)["results"]

    assert [_comparable(r) for r in batch] == [_comparable(r) for r in singles]
    # Their entered_at is their first contact's time; L1's is when the directory added it, in each tenant.
    state = """
        select lead_id, case when lead_id like 'N%%' then entered_at end, high_value, last_activity_at,
               last_inbound_at, last_outbound_at, no_contact_due_at, no_reply_due_at, stale_due_at, high_value_due_at
        from lead_state where tenant_id = %s order by lead_id"""
    many = db.execute(state, ["many"]).fetchall()
    assert {row[0] for row in many} >= {"N1", "N2", "N3"}
    assert many == db.execute(state, ["one"]).fetchall()
    assert active(db, "many") == active(db, "one")
