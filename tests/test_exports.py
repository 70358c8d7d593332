"""CSV exports of alerts and activities: content, RFC 4180 quoting, formula neutralisation, French Excel,
the lists' permissions, and pages read from the database only as the client consumes the stream."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from helpers import add_leads, log
from leadwatch import Api
from leadwatch.devtools.dev import create_app
from leadwatch.http.identity import VerifiedAccess
from test_access import SETTINGS, bearer, token

AGENT, OTHER = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
ACME = {"X-Tenant": "acme"}


def rows(response) -> list[dict[str, str]]:
    text = response.get_data(as_text=True)
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def alerts(store, db):
    """Five alerts of acme created an hour apart from T0 (A3 resolved, A5 another agent's), one of tenant other."""
    add_leads(
        store,
        L1={"name": 'Dupont, "Jean"\nlà', "email": "jean@example.com", "ownerId": AGENT},
        L2={"name": '=HYPERLINK("http://evil")', "ownerId": AGENT},
        L3={"name": "Other's", "ownerId": OTHER},
    )
    specs = [
        ("L1", "NoContact7d", "med", "+33 message"),
        ("L2", "NoReply3d", "high", "-1 jour"),
        ("L1", "NoReply3d", "low", "@SUM(A1)"),
        ("L2", "StaleLead30d", "low", "\tTabbed"),
        ("L3", "NoContact7d", "med", "plain"),
    ]
    for n, (lead, kind, severity, message) in enumerate(specs):
        db.execute(
            "insert into max_alerts (tenant_id, lead_id, type, severity, message, created_at, suggested_action)"
            " values ('acme', %s, %s, %s, %s, %s, '{\"action\": \"send_whatsapp\"}')",
            [lead, kind, severity, message, T0 + timedelta(hours=n)],
        )
    db.execute(
        "update max_alerts set resolved_at = now(), resolved_by = 'u', resolution = 'manual' where message = %s",
        ["@SUM(A1)"],
    )
    db.execute(
        "insert into max_alerts (tenant_id, lead_id, type, severity, message)"
        " values ('other', 'X', 'NoReply3d', 'med', 'x')"
    )


def test_alerts_export_lists_the_active_alerts_oldest_first_as_an_attachment(client, alerts):
    response = client.get("/api/alerts/export.csv", headers=ACME)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="alerts-acme-')
    assert response.headers["Content-Disposition"].endswith('.csv"')
    exported = rows(response)
    assert [r["lead_id"] for r in exported] == ["L1", "L2", "L2", "L3"]  # A3 is resolved
    first = exported[0]
    assert first["type"] == "NoContact7d" and first["severity"] == "med" and first["action"] == "send_whatsapp"
    assert first["lead_email"] == "jean@example.com" and first["owner_id"] == AGENT
    assert datetime.fromisoformat(first["created_at"]) == T0
    assert first["resolved_at"] == ""


def test_alerts_export_takes_the_lists_filters_all_states_and_a_time_range(client, alerts):
    every = rows(client.get("/api/alerts/export.csv?state=all", headers=ACME))
    low = rows(client.get("/api/alerts/export.csv?state=all&severity=low", headers=ACME))
    lead = rows(client.get("/api/alerts/export.csv?lead=L2&type=NoReply3d", headers=ACME))
    window = rows(
        client.get("/api/alerts/export.csv?from=2026-11-01T10:00:00Z&to=2026-11-01T12:00:00Z&state=all", headers=ACME)
    )

    assert len(every) == 5 and every[2]["resolution"] == "manual" and every[2]["resolved_by"] == "u"
    assert [r["type"] for r in low] == ["NoReply3d", "StaleLead30d"]
    assert [(r["lead_id"], r["type"]) for r in lead] == [("L2", "NoReply3d")]
    assert [r["created_at"][:16] for r in window] == ["2026-11-01T10:00", "2026-11-01T11:00"]  # [from, to)


def test_alerts_export_quotes_per_rfc_4180_and_neutralises_formulas(client, alerts):
    response = client.get("/api/alerts/export.csv?state=all", headers=ACME)
    raw = response.get_data(as_text=True)

    assert raw.startswith("id,lead_id,lead_name,")
    assert raw.endswith("\r\n") and raw.count("\r\n") == 6  # header + 5 rows; the name's \n stays inside quotes
    assert '"Dupont, ""Jean""\nlà"' in raw
    exported = rows(response)
    assert exported[0]["lead_name"] == 'Dupont, "Jean"\nlà'
    assert exported[1]["lead_name"] == '\'=HYPERLINK("http://evil")'
    assert [r["message"] for r in exported] == ["'+33 message", "'-1 jour", "'@SUM(A1)", "'\tTabbed", "plain"]


def test_alerts_export_for_french_excel_announces_its_separator(client, alerts):
    response = client.get("/api/alerts/export.csv?sep=semicolon&bom=true&state=all", headers=ACME)
    raw = response.get_data()

    assert raw.startswith("\ufeffsep=;\r\nid;lead_id;lead_name;".encode())
    lines = list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    assert lines[0] == ["sep=", ""] and lines[1][0] == "id"
    assert lines[2][2] == 'Dupont, "Jean"\nlà'  # a comma needs no quotes here, but the quote and newline do
    assert len(lines) == 7


def test_activities_export_takes_a_time_range_and_a_lead(client, store):
    add_leads(store, L1={"name": "Un"}, L2={"name": "Deux"})
    for n, (lead, snippet) in enumerate([("L1", "Bonjour"), ("L2", "=1+1"), ("L1", "Merci, à demain")]):
        log(store, lead=lead, occurredAt=T0 + timedelta(days=n), messageSnippet=snippet)

    everything = rows(client.get("/api/activities/export.csv", headers=ACME))
    one_lead = rows(client.get("/api/activities/export.csv?lead=L1", headers=ACME))
    window = rows(client.get("/api/activities/export.csv?from=2026-11-02&to=2026-11-03", headers=ACME))
    response = client.get("/api/activities/export.csv", headers=ACME)

    assert [r["message_snippet"] for r in everything] == ["Bonjour", "'=1+1", "Merci, à demain"]
    assert [r["lead_id"] for r in one_lead] == ["L1", "L1"]
    assert [(r["lead_id"], r["channel"], r["direction"]) for r in window] == [("L2", "whatsapp", "out")]
    assert response.headers["Content-Disposition"].startswith('attachment; filename="activities-acme-')


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/alerts/export.csv?state=open", "state"),
        ("/api/alerts/export.csv?severity=urgent", "severity"),
        ("/api/alerts/export.csv?from=2026-11-02&to=2026-11-01", "to"),
        ("/api/activities/export.csv?sep=tab", "sep"),
        ("/api/activities/export.csv?from=soon", "from"),
    ],
    ids=["state", "severity", "reversed-range", "sep", "bad-time"],
)
def test_exports_refuse_bad_queries_as_json_naming_the_field(client, alerts, path, field):
    response = client.get(path, headers=ACME)

    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/json"
    assert field in [d["field"] for d in response.json["error"]["details"]]


def test_exports_follow_the_lists_permissions(store, alerts):
    client = create_app(Api(store, VerifiedAccess(SETTINGS))).test_client()
    log(store, lead="L1", messageSnippet="mine")
    log(store, lead="L3", messageSnippet="not mine")

    agent = bearer(token("agent", sub=AGENT))
    mine = rows(client.get("/api/alerts/export.csv?state=all", headers=agent))
    my_activities = rows(client.get("/api/activities/export.csv", headers=agent))
    foreign = rows(client.get("/api/activities/export.csv?lead=L3", headers=agent))
    admin = rows(client.get("/api/alerts/export.csv?state=all", headers=bearer(token("admin"))))

    assert sorted({r["lead_id"] for r in mine}) == ["L1", "L2"] and len(mine) == 4
    assert [r["message_snippet"] for r in my_activities] == ["mine"]
    assert foreign == []
    assert len(admin) == 5
    assert client.get("/api/alerts/export.csv").status_code == 401
    other_tenant = client.get("/api/alerts/export.csv", headers={**agent, "X-Tenant": "other"})
    assert other_tenant.status_code == 403


def test_export_reads_the_next_page_only_when_the_client_takes_more(store, alerts, monkeypatch):
    """Constant memory: one page in hand at a time; the SQL calls follow the chunks consumed."""
    import leadwatch.models.exports

    monkeypatch.setattr(leadwatch.models.exports, "PAGE_SIZE", 2)
    calls: list[str] = []
    real_call = store._call
    monkeypatch.setattr(
        store, "_call", lambda function, *a, **k: calls.append(function) or real_call(function, *a, **k)
    )
    client = create_app(Api(store, VerifiedAccess(SETTINGS))).test_client()

    response = client.get("/api/alerts/export.csv?state=all", headers=bearer(token("admin")))
    chunks = iter(response.response)
    assert calls == ["export_alerts"]  # the first page, read before answering (errors answer as JSON)
    first = next(chunks)
    assert calls == ["export_alerts"] and first.count(b"\r\n") == 3  # header + 2 rows
    next(chunks)
    assert calls == ["export_alerts"] * 2
    next(chunks)
    assert calls == ["export_alerts"] * 3
    assert list(chunks) == [] and len(calls) == 3  # 5 rows: pages of 2, 2, 1
    response.close()
