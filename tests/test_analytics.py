"""GET /api/alerts/analytics: figures checked against a hand-built history with hand-computed values."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from leadwatch import Api
from leadwatch.devtools.dev import create_app
from leadwatch.http.identity import VerifiedAccess
from test_access import SETTINGS, bearer, token

AGENT, OTHER = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
NOW = datetime.now(UTC)


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# (alert, lead, type, created, escalated, resolved, extra events): times in UTC. Leads L1 (AGENT's),
# L2 (OTHER's), L3 (no directory entry: no owner). Europe/Paris is UTC+1 in November.
ALERTS = [
    ("A1", "L1", "NoReply3d", t("2026-10-31 23:30"), None, t("2026-11-01 05:30"), []),  # 6 h; Paris: created Nov 1
    ("A2", "L2", "NoContact7d", t("2026-11-01 10:00"), t("2026-11-02 10:00"), t("2026-11-03 22:00"), []),  # 60 h
    ("A3", "L1", "NoContact7d", t("2026-11-02 12:00"), None, t("2026-11-02 14:00"), []),  # 2 h
    # Created Nov 4 00:30 in Paris (out of range there, Nov 3 in UTC); resolved after the range; reopened (ignored).
    (
        "A4",
        "L3",
        "NoReply3d",
        t("2026-11-03 23:30"),
        None,
        t("2026-11-10 00:00"),
        [("reopened", t("2026-11-02 09:00"))],
    ),
    ("A7", "L2", "NoContact7d", t("2026-10-20 00:00"), None, t("2026-11-02 01:00"), []),  # 313 h, created before
    ("A9", "L3", "NoReply3d", t("2026-11-03 00:00"), None, t("2026-11-03 10:00"), []),  # 10 h
    # Open now, at every age.
    ("A5", "L2", "NoReply3d", NOW - timedelta(days=2), None, None, []),
    ("A6", "L1", "StaleLead30d", NOW - timedelta(days=40), None, None, []),
    ("A8", "L1", "NoReply3d", NOW - timedelta(hours=5), None, None, []),
    ("A10", "L3", "NoContact7d", NOW - timedelta(days=10), None, None, []),
    ("A11", "L2", "HighValueRisk", NOW - timedelta(days=4), None, None, []),
]


@pytest.fixture
def history(db):
    """The history above, written with explicit times (the recording triggers off, as a replica would)."""
    db.execute("set session_replication_role = replica")
    try:
        db.execute(
            "insert into leads (tenant_id, lead_id, name, owner_id) values "
            "('acme', 'L1', 'Lead 1', %s), ('acme', 'L2', 'Lead 2', %s)",
            [AGENT, OTHER],
        )
        for name, lead, kind, created, escalated, resolved, extra in ALERTS:
            severity = "high" if escalated else "med"
            (alert_id,) = db.execute(
                "insert into max_alerts (tenant_id, lead_id, type, severity, message, created_at, escalated_at,"
                " resolved_at, resolved_by, resolution) values ('acme', %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " returning id",
                [lead, kind, severity, name, created, escalated, resolved, resolved and "system", resolved and "rule"],
            ).fetchone()
            events = [("created", created), ("escalated", escalated), ("resolved", resolved), *extra]
            for event, at in events:
                if at is not None and name not in ("A5", "A6", "A8", "A10", "A11"):
                    db.execute(
                        "insert into alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor, at)"
                        " values ('acme', %s, %s, %s, %s, 'med', 'system', %s)",
                        [alert_id, lead, kind, event, at],
                    )
        # Another tenant's history on the same days is never counted.
        db.execute(
            "insert into alert_events (tenant_id, alert_id, lead_id, type, event, severity, actor, at)"
            " values ('other', gen_random_uuid(), 'X', 'NoReply3d', 'created', 'med', 'system', '2026-11-02 12:00Z')"
        )
    finally:
        db.execute("set session_replication_role = origin")


RANGE = "from=2026-11-01&to=2026-11-03"


def test_analytics_counts_each_day_in_the_requested_time_zone(client, history):
    paris = client.get(f"/api/alerts/analytics?{RANGE}&tz=Europe/Paris", headers={"X-Tenant": "acme"})
    utc = client.get(f"/api/alerts/analytics?{RANGE}", headers={"X-Tenant": "acme"})

    assert paris.status_code == 200, paris.json
    assert (
        paris.json["from"] == "2026-11-01" and paris.json["to"] == "2026-11-03" and paris.json["tz"] == "Europe/Paris"
    )
    assert paris.json["per_day"] == [
        {"day": "2026-11-01", "created": 2, "resolved": 1, "escalated": 0},  # A1 (00:30 Paris), A2; A1
        {"day": "2026-11-02", "created": 1, "resolved": 2, "escalated": 1},  # A3; A3, A7; A2
        {"day": "2026-11-03", "created": 1, "resolved": 2, "escalated": 0},  # A9; A2, A9 (A4 is Nov 4 in Paris)
    ]
    assert utc.json["tz"] == "UTC"
    assert utc.json["per_day"] == [
        {"day": "2026-11-01", "created": 1, "resolved": 1, "escalated": 0},  # A2; A1 (A1 created Oct 31)
        {"day": "2026-11-02", "created": 1, "resolved": 2, "escalated": 1},
        {"day": "2026-11-03", "created": 2, "resolved": 2, "escalated": 0},  # A4, A9
    ]


def test_analytics_measures_resolution_times_by_type_and_owner(client, history):
    body = client.get(f"/api/alerts/analytics?{RANGE}&tz=Europe/Paris", headers={"X-Tenant": "acme"}).json

    # Resolved in range: A1 6 h, A2 60 h, A3 2 h, A7 313 h, A9 10 h.
    assert body["resolved_within_24h"] == {"resolved": 5, "within_24h": 3, "share": 0.6}
    assert body["time_to_resolve"]["by_type"] == [
        # [2, 60, 313]: median 60, p90 60 + 0.8 * 253
        {"type": "NoContact7d", "count": 3, "median_hours": 60.0, "p90_hours": 262.4},
        # [6, 10]: median 8, p90 6 + 0.9 * 4
        {"type": "NoReply3d", "count": 2, "median_hours": 8.0, "p90_hours": 9.6},
    ]
    assert body["time_to_resolve"]["by_owner"] == [
        {"owner_id": AGENT, "count": 2, "median_hours": 4.0, "p90_hours": 5.6},  # [2, 6]
        {"owner_id": OTHER, "count": 2, "median_hours": 186.5, "p90_hours": 287.7},  # [60, 313]
        {"owner_id": None, "count": 1, "median_hours": 10.0, "p90_hours": 10.0},  # L3 has no owner
    ]


def test_analytics_buckets_open_alerts_by_age(client, history):
    body = client.get(f"/api/alerts/analytics?{RANGE}", headers={"X-Tenant": "acme"}).json

    assert body["open_by_age"] == [
        {"bucket": "<1d", "count": 1},
        {"bucket": "1-3d", "count": 1},
        {"bucket": "3-7d", "count": 1},
        {"bucket": "7-30d", "count": 1},
        {"bucket": ">30d", "count": 1},
    ]


def test_analytics_of_a_quiet_range_lists_every_day_with_zeros_and_no_share(client, history):
    body = client.get("/api/alerts/analytics?from=2026-06-01&to=2026-06-02", headers={"X-Tenant": "acme"}).json

    assert body["per_day"] == [
        {"day": "2026-06-01", "created": 0, "resolved": 0, "escalated": 0},
        {"day": "2026-06-02", "created": 0, "resolved": 0, "escalated": 0},
    ]
    assert body["resolved_within_24h"] == {"resolved": 0, "within_24h": 0, "share": None}
    assert body["time_to_resolve"] == {"by_type": [], "by_owner": []}


def test_analytics_default_to_the_last_30_days(client, history):
    body = client.get("/api/alerts/analytics?tz=Pacific/Kiritimati", headers={"X-Tenant": "acme"}).json

    today = datetime.now(UTC).astimezone(__import__("zoneinfo").ZoneInfo("Pacific/Kiritimati")).date()
    assert body["to"] == today.isoformat()
    assert body["from"] == (today - timedelta(days=29)).isoformat()
    assert len(body["per_day"]) == 30


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("tz=Mars/Olympus", "tz"),
        ("tz=", "tz"),
        ("from=2026-11-05&to=2026-11-01", "to"),
        ("from=2025-01-01&to=2026-01-02", "to"),  # 367 days
        ("from=2026-13-01&to=2026-11-01", "from"),
        ("from=yesterday", "from"),
    ],
    ids=["unknown-zone", "empty-zone", "reversed", "over-a-year", "bad-month", "not-a-date"],
)
def test_analytics_refuses_a_bad_range_or_zone_naming_the_field(client, history, query, field):
    response = client.get(f"/api/alerts/analytics?{query}", headers={"X-Tenant": "acme"})

    assert response.status_code == 422, response.json
    assert field in [d["field"] for d in response.json["error"]["details"]]


def test_analytics_accepts_a_full_leap_year(client, history):
    response = client.get("/api/alerts/analytics?from=2028-01-01&to=2028-12-31", headers={"X-Tenant": "acme"})

    assert response.status_code == 200
    assert len(response.json["per_day"]) == 366


def test_analytics_sql_refuses_a_zone_postgres_does_not_know(store, history):
    """The database checks the zone too (a name Python's zoneinfo knows but Postgres would not)."""
    from leadwatch.errors import ValidationFailed
    from leadwatch.models.analytics import AnalyticsQuery

    query = AnalyticsQuery.model_construct(start=date(2026, 11, 1), end=date(2026, 11, 2), tz="X/Y")
    with pytest.raises(ValidationFailed) as caught:
        store.alert_analytics("acme", query)
    assert caught.value.details == [{"field": "tz", "message": "unknown time zone"}]


def test_an_agent_gets_the_figures_of_their_own_leads(store, history):
    client = create_app(Api(store, VerifiedAccess(SETTINGS))).test_client()
    agent = bearer(token("agent", sub=AGENT))

    body = client.get(f"/api/alerts/analytics?{RANGE}&tz=Europe/Paris", headers=agent).json

    assert body["per_day"] == [  # L1 only: A1 and A3
        {"day": "2026-11-01", "created": 1, "resolved": 1, "escalated": 0},
        {"day": "2026-11-02", "created": 1, "resolved": 1, "escalated": 0},
        {"day": "2026-11-03", "created": 0, "resolved": 0, "escalated": 0},
    ]
    assert body["resolved_within_24h"] == {"resolved": 2, "within_24h": 2, "share": 1.0}
    assert body["time_to_resolve"]["by_owner"] == [
        {"owner_id": AGENT, "count": 2, "median_hours": 4.0, "p90_hours": 5.6}
    ]
    assert [b["count"] for b in body["open_by_age"]] == [1, 0, 0, 0, 1]  # A8, A6
    admin = client.get(f"/api/alerts/analytics?{RANGE}&tz=Europe/Paris", headers=bearer(token("admin"))).json
    assert admin["resolved_within_24h"]["resolved"] == 5
