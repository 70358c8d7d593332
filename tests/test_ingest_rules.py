"""HotLead24h and PreferredChannel: judged by log_activity (and the WhatsApp path) as each activity arrives."""

from __future__ import annotations

from helpers import active, add_leads, ago, assert_counts_exact, log
from leadwatch.integrations.greenapi import WhatsAppActivity
from leadwatch.models.desk import RuleIn


def inbound(store, **fields):
    return log(store, direction="in", **fields)


def whatsapp_inbound(store, phone: str, name: str, n: int, at):
    """Message `n` from `phone` through the WhatsApp path (the lead owning the number, else a provisional one)."""
    chat = f"{phone[1:]}@c.us"
    message = WhatsAppActivity(chat, phone, name, "in", "whatsapp", f"message {n}", at, f"wa-{n}")
    return store.log_whatsapp("acme", message)


def test_three_message_burst_raises_hot_lead_and_our_reply_clears_it(store, db):
    first = inbound(store, occurredAt=ago(hours=3))
    second = inbound(store, occurredAt=ago(hours=2))
    assert first["alerts"]["created"] == [] and second["alerts"]["created"] == []
    third = inbound(store, occurredAt=ago(minutes=5))
    assert third["alerts"] == {"created": ["HotLead24h"], "resolved": []}
    assert active(db) == {("L1", "HotLead24h"): "high"}
    message, since = db.execute("select message, cycle_started_at from max_alerts").fetchone()
    assert message == "3 messages du lead en 24 h sans réponse de notre part. Lead très actif, à prioriser."
    assert abs((since - ago(hours=3)).total_seconds()) < 60, "evidence: the burst began with the first message"

    assert inbound(store)["alerts"]["created"] == [], "one active HotLead24h per lead"
    reply = log(store, direction="out")
    assert reply["alerts"]["resolved"] == ["HotLead24h"]
    assert active(db) == {}
    assert_counts_exact(db)


def test_backfilled_burst_does_not_raise_hot_lead(store, db):
    for days in (32, 31, 30):
        assert inbound(store, occurredAt=ago(days=days, minutes=5))["alerts"]["created"] == []
    assert active(db) == {}


def test_burst_spread_over_more_than_24_hours_is_not_hot(store, db):
    inbound(store, occurredAt=ago(hours=30))
    inbound(store, occurredAt=ago(hours=10))
    assert inbound(store)["alerts"]["created"] == []
    assert active(db) == {}


def test_messages_we_answered_in_between_do_not_make_a_burst(store, db):
    inbound(store, occurredAt=ago(hours=5))
    log(store, direction="out", occurredAt=ago(hours=4))
    inbound(store, occurredAt=ago(hours=3))
    assert inbound(store, occurredAt=ago(hours=1))["alerts"]["created"] == []
    assert active(db) == {}


def test_outbound_that_occurred_before_the_burst_does_not_clear_hot_lead(store, db):
    for hours in (3, 2, 1):
        inbound(store, occurredAt=ago(hours=hours))
    backfilled = log(store, direction="out", occurredAt=ago(hours=5))
    assert backfilled["alerts"]["resolved"] == []
    assert active(db) == {("L1", "HotLead24h"): "high"}


def test_failed_send_does_not_clear_hot_lead(store, db):
    for hours in (3, 2, 1):
        inbound(store, occurredAt=ago(hours=hours))
    assert log(store, direction="out", status="failed")["alerts"]["resolved"] == []
    assert active(db) == {("L1", "HotLead24h"): "high"}


def test_whatsapp_burst_raises_hot_lead_through_the_phone_path(store, db):
    add_leads(store, L1={"name": "Sophie", "phone": "+33612345678"})
    results = [whatsapp_inbound(store, "+33612345678", "Sophie", n, ago(minutes=30 - n)) for n in range(3)]
    assert [r["alerts"]["created"] for r in results] == [[], [], ["HotLead24h"]]
    assert active(db) == {("L1", "HotLead24h"): "high"}


def test_preferred_channel_from_history_and_an_outbound_on_it_clears_it(store, db):
    for days in (6, 5, 4):
        inbound(store, channel="email", occurredAt=ago(days=days))
    assert log(store, channel="whatsapp", direction="out", occurredAt=ago(days=3))["alerts"]["created"] == []
    second = log(store, channel="whatsapp", direction="out", occurredAt=ago(days=2))
    assert second["alerts"]["created"] == ["PreferredChannel"]
    assert active(db) == {("L1", "PreferredChannel"): "low"}
    message, action = db.execute("select message, suggested_action from max_alerts").fetchone()
    assert message == "Le lead préfère le canal email, mais nos 2 derniers messages sont passés par un autre canal."
    assert action["params"] == {"leadId": "L1", "channel": "email"}

    assert log(store, channel="whatsapp", direction="out")["alerts"]["resolved"] == []
    answered = log(store, channel="email", direction="out")
    assert answered["alerts"]["resolved"] == ["PreferredChannel"]
    assert active(db) == {}


def test_preferred_channel_from_the_directory(store, db):
    add_leads(store, L1={"name": "Marc", "preferredChannel": "call"})
    assert log(store, channel="email", direction="out", occurredAt=ago(days=2))["alerts"]["created"] == []
    assert log(store, channel="whatsapp", direction="out", occurredAt=ago(days=1))["alerts"]["created"] == [
        "PreferredChannel"
    ]
    [(params,)] = db.execute("select suggested_action -> 'params' from max_alerts").fetchall()
    assert params["channel"] == "call"


def test_preferred_channel_follows_a_change_of_the_directory(store, db):
    add_leads(store, L1={"name": "Marc", "preferredChannel": "whatsapp"})
    log(store, channel="email", direction="out", occurredAt=ago(days=3))
    assert log(store, channel="email", direction="out", occurredAt=ago(days=2))["alerts"]["created"] == [
        "PreferredChannel"
    ]
    add_leads(store, L1={"preferredChannel": "email"})  # the lead now prefers the channel we wrote on
    store.resolve_alert("acme", str(db.execute("select id from max_alerts").fetchone()[0]), "agent-1")
    assert log(store, channel="email", direction="out", occurredAt=ago(days=1))["alerts"]["created"] == []
    add_leads(store, L1={"preferredChannel": "call"})
    assert log(store, channel="email", direction="out")["alerts"]["created"] == ["PreferredChannel"]
    [(params,)] = db.execute("select suggested_action -> 'params' from max_alerts where resolved_at is null").fetchall()
    assert params["channel"] == "call"


def test_preferred_channel_of_a_lead_heard_of_before_it_entered_the_directory(store, db):
    """The lead's state exists (activities came first); the directory entry added later is what counts."""
    log(store, channel="email", direction="out", occurredAt=ago(days=3))
    assert log(store, channel="email", direction="out", occurredAt=ago(days=2))["alerts"]["created"] == []
    add_leads(store, L1={"name": "Marc", "preferredChannel": "call"})
    assert log(store, channel="email", direction="out", occurredAt=ago(days=1))["alerts"]["created"] == [
        "PreferredChannel"
    ]


def test_preferred_channel_not_raised_when_one_of_our_last_two_used_it(store, db):
    add_leads(store, L1={"preferredChannel": "email"})
    for days in (6, 5, 4):
        inbound(store, channel="email", occurredAt=ago(days=days))
    log(store, channel="email", direction="out", occurredAt=ago(days=3))
    assert log(store, channel="whatsapp", direction="out", occurredAt=ago(days=2))["alerts"]["created"] == []
    assert active(db) == {}


def test_preferred_channel_needs_three_of_the_last_five_inbound(store, db):
    """Two email messages among the last five inbound are no preference (and no directory channel is set)."""
    for days, channel in ((9, "email"), (8, "email"), (7, "whatsapp"), (6, "call"), (5, "other")):
        inbound(store, channel=channel, occurredAt=ago(days=days))
    log(store, channel="whatsapp", direction="out", occurredAt=ago(days=3))
    assert log(store, channel="whatsapp", direction="out", occurredAt=ago(days=2))["alerts"]["created"] == []
    assert active(db) == {}


def test_log_response_lists_what_the_activity_raised(client, db):
    for hours in (3, 2):
        client.post(
            "/api/activities/log",
            headers={"X-Tenant": "acme"},
            json={"leadId": "L9", "channel": "whatsapp", "direction": "in", "occurredAt": ago(hours=hours).isoformat()},
        )
    body = client.post(
        "/api/activities/log",
        headers={"X-Tenant": "acme"},
        json={"leadId": "L9", "channel": "whatsapp", "direction": "in", "messageSnippet": "Vous êtes là ?"},
    ).get_json()
    assert body["success"] is True
    assert body["alerts"] == {"created": ["HotLead24h"], "resolved": []}


# HotLead24h reads the lead's activities only when its state says an earlier inbound is in the window
# (supabase/schemas/20_activities.sql): the burst must come out the same whatever wrote that state.


def test_a_burst_whose_messages_arrived_out_of_order_raises_hot_lead(store, db):
    assert inbound(store, occurredAt=ago(hours=1))["alerts"]["created"] == []
    assert inbound(store, occurredAt=ago(hours=2))["alerts"]["created"] == [], "backdated: last inbound stays 1 h ago"
    assert inbound(store)["alerts"]["created"] == ["HotLead24h"]
    assert active(db) == {("L1", "HotLead24h"): "high"}


def test_a_burst_of_one_raises_hot_lead_on_the_first_inbound_after_a_silence(store, db):
    store.set_rule("acme", "HotLead24h", RuleIn(minCount=1))
    inbound(store, occurredAt=ago(days=3))
    log(store, direction="out", occurredAt=ago(days=2))
    assert inbound(store)["alerts"]["created"] == ["HotLead24h"]
    assert active(db) == {("L1", "HotLead24h"): "high"}


def test_hot_lead_disabled_then_enabled_judges_the_burst_already_there(store, db):
    store.set_rule("acme", "HotLead24h", RuleIn(enabled=False))
    for hours in (3, 2, 1):
        assert inbound(store, occurredAt=ago(hours=hours))["alerts"]["created"] == []
    store.set_rule("acme", "HotLead24h", RuleIn(enabled=True))
    assert inbound(store)["alerts"]["created"] == ["HotLead24h"]


def test_an_inbound_whose_send_failed_leaves_the_burst_and_the_next_ones_complete_it(store, db):
    inbound(store, occurredAt=ago(hours=3), externalId="m1")
    inbound(store, occurredAt=ago(hours=2), externalId="m2")
    store.set_activity_status("acme", "whatsapp", "m2", "failed")
    assert inbound(store, occurredAt=ago(hours=1))["alerts"]["created"] == [], "two inbound count, not three"
    assert inbound(store)["alerts"]["created"] == ["HotLead24h"]


def test_a_burst_split_across_a_merged_provisional_lead_raises_hot_lead(store, db):
    for n, hours in enumerate((2, 1)):
        whatsapp_inbound(store, "+33655555555", "Julien", n, ago(hours=hours))
    assert active(db) == {}
    assert add_leads(store, **{"CRM-42": {"name": "Julien Roux", "phone": "+33655555555"}})["merged"] == ["CRM-42"]
    assert inbound(store, lead="CRM-42")["alerts"]["created"] == ["HotLead24h"]
    assert active(db) == {("CRM-42", "HotLead24h"): "high"}
