"""The dashboard widget in a real Chromium (Debian's `chromium`, driven by Playwright) against a real
`leadwatch dev` with demo data: states, order, Résoudre, Action, refresh, analytics, keyboard, axe-core.

Each test seeds its own tenant through the HTTP API, so they do not depend on one another. Each state
is saved as a PNG in test-artifacts/widget/ (gitignored); docs/widget.png is one of them.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from helpers import free_port, leadwatch_env, start_dev

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "widget"
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOW_TO_INSTALL = (
    "Install one to run them: `sudo apt-get install -y chromium` (Debian/Ubuntu; CI's .ci/run does it), "
    "or point LEADWATCH_CHROMIUM at a Chromium/Chrome binary; Playwright itself comes with "
    "`pip install -e '.[test]'` (its own browser download is not needed)."
)
WHATSAPP_TENANT = "wa-shop"


def _chromium() -> str | None:
    wanted = os.environ.get("LEADWATCH_CHROMIUM")
    if wanted:
        return wanted if Path(wanted).exists() else None
    for candidate in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(candidate)
        if found:
            return found
    return None


# The outside world: a fake Green-API that accepts every send -----------------------------------


class _GreenApi(BaseHTTPRequestHandler):
    sent: ClassVar[list[dict]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _GreenApi.sent.append({"path": self.path, **body})
        answer = json.dumps({"idMessage": f"BAE5{len(_GreenApi.sent):08d}"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def greenapi():
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _GreenApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


# The server and the browser -------------------------------------------------------------------


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory, greenapi):
    """`leadwatch dev` as `make dev` runs it (embedded database, demo data in tenant macrea), with one
    Green-API instance (the fake above) for tenant wa-shop."""
    env = leadwatch_env(
        GREENAPI_INSTANCE_ID="1101000001",
        GREENAPI_TOKEN="green-token",
        GREENAPI_API_URL=f"http://127.0.0.1:{greenapi.server_address[1]}",
        GREENAPI_WEBHOOK_TOKEN="webhook-token",
        LEADWATCH_GREENAPI_TENANT=WHATSAPP_TENANT,
    )
    data_dir = tmp_path_factory.mktemp("widget") / "data"
    process, base = start_dev("--data-dir", str(data_dir), env=env, cwd=tmp_path_factory.getbasetemp())
    yield base
    process.terminate()
    process.wait(timeout=30)


def _cannot_run(why: str):
    """Skip the browser tests saying how to get a browser; fail instead where one is required (CI)."""
    if os.environ.get("LEADWATCH_REQUIRE_BROWSER"):
        pytest.fail(f"LEADWATCH_REQUIRE_BROWSER is set but {why}. {HOW_TO_INSTALL}")
    pytest.skip(f"browser tests skipped: {why}. {HOW_TO_INSTALL}")


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    if executable is None:
        wanted = os.environ.get("LEADWATCH_CHROMIUM")
        _cannot_run(
            f"LEADWATCH_CHROMIUM={wanted} does not exist"
            if wanted
            else "no Chromium found (looked for /usr/bin/chromium, chromium, chromium-browser, google-chrome)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _cannot_run("playwright is not installed")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    """A fresh page (the dev page's CSP bypassed only so that axe-core can be injected); any JavaScript
    error in it fails the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="fr-FR", bypass_csp=True)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page
    context.close()
    assert not page.errors, f"JavaScript errors in the page: {page.errors}"


def shoot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# Data through the public API, each test in its own tenant ---------------------------------------


def call(base, method, path, tenant=None, **kwargs):
    headers = {"X-Tenant": tenant} if tenant else {}
    response = httpx.request(method, f"{base}{path}", headers=headers, timeout=30, **kwargs)
    return response.status_code, response.json()


def seed(base, tenant, **leads):
    """seed(base, "t", L1={"name": ..., "history": [("in", 9)], ...}): the leads, their history (days
    ago), then a sweep of the tenant. Returns its active alerts as the API lists them."""
    rows = [{"leadId": lead_id, **{k: v for k, v in spec.items() if k != "history"}} for lead_id, spec in leads.items()]
    assert call(base, "POST", "/api/leads", tenant, json=rows)[0] == 200
    now = datetime.now(UTC)
    for lead_id, spec in leads.items():
        for direction, days in spec.get("history", []):
            status, body = call(
                base,
                "POST",
                "/api/activities/log",
                tenant,
                json={
                    "leadId": lead_id,
                    "channel": "whatsapp",
                    "direction": direction,
                    "messageSnippet": f"{direction} {days} days ago",
                    "occurredAt": (now - timedelta(days=days, hours=1)).isoformat(),
                },
            )
            assert status == 200, body
    assert call(base, "POST", "/api/alerts/sweep", tenant)[0] == 200
    return active_alerts(base, tenant)


def active_alerts(base, tenant):
    status, body = call(base, "GET", "/api/alerts/active?limit=200", tenant)
    assert status == 200, body
    return body


def open_widget(page, base, tenant, lang="fr", state="list"):
    page.goto(f"{base}/?tenant={tenant}&lang={lang}")
    page.locator(f"leadwatch-alerts [data-state='{state}']").wait_for()
    return page.locator("leadwatch-alerts")


def shown(page):
    """The alerts the widget shows, in its order: (id, lead name, severity)."""
    return page.locator("leadwatch-alerts li.alert").evaluate_all(
        "items => items.map(li => [li.dataset.id, li.querySelector('.lead').textContent, li.dataset.severity])"
    )


def badges(page):
    counts = page.locator("leadwatch-alerts .badges li").evaluate_all(
        "items => items.map(li => [li.dataset.severity, Number(li.dataset.count)])"
    )
    total = page.locator("leadwatch-alerts .total").get_attribute("data-count")
    return int(total), dict(counts)


def deep_focus(page):
    """What has the keyboard focus, through open shadow roots: its data-focus key."""
    return page.evaluate(
        """() => { let a = document.activeElement
                   while (a && a.shadowRoot && a.shadowRoot.activeElement) a = a.shadowRoot.activeElement
                   return a ? (a.dataset.focus || a.tagName) : null }"""
    )


ANALYTICS = {
    "success": True,
    "from": "2026-10-24",
    "to": "2026-11-22",
    "tz": "Europe/Paris",
    "per_day": [
        {
            "day": (date(2026, 10, 24) + timedelta(days=i)).isoformat(),
            "created": (i * 7) % 5,
            "resolved": (i * 3) % 4,
            "escalated": 1 if i % 6 == 0 else 0,
        }
        for i in range(30)
    ],
    "resolved_within_24h": {"resolved": 40, "within_24h": 31, "share": 0.775},
    "time_to_resolve": {
        "by_type": [
            {"type": "NoReply3d", "count": 12, "median_hours": 5.5, "p90_hours": 30.1},
            {"type": "NoContact7d", "count": 9, "median_hours": 20.25, "p90_hours": 70.0},
        ],
        "by_owner": [
            {"owner_id": "u-1", "count": 9, "median_hours": 4.0, "p90_hours": 20.0},
            {"owner_id": None, "count": 3, "median_hours": 48.0, "p90_hours": 96.0},
        ],
    },
    "open_by_age": [
        {"bucket": "<1d", "count": 2},
        {"bucket": "1-3d", "count": 5},
        {"bucket": "3-7d", "count": 3},
        {"bucket": "7-30d", "count": 7},
        {"bucket": ">30d", "count": 1},
    ],
}


def fulfill_json(route, status, body):
    route.fulfill(status=status, content_type="application/json", body=json.dumps(body))


def drawn(page, chart):
    """What Chart.js holds for the panel's `chart` canvas, and how many pixels it painted."""
    return page.locator(f"leadwatch-analytics canvas[data-chart='{chart}']").evaluate(
        """canvas => {
             const chart = window.Chart.getChart(canvas)
             const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data
             let painted = 0
             for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) painted++
             return {labels: chart.data.labels, data: chart.data.datasets.map(d => d.data), painted}
           }"""
    )


def run_axe(page):
    page.add_script_tag(path=str(AXE))
    results = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']]}"
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]


# Serving --------------------------------------------------------------------------------------


def test_dev_serves_the_page_and_the_widget_files_with_their_types(dev_server):
    page = httpx.get(f"{dev_server}/")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert "<leadwatch-alerts" in page.text and "script-src 'self'" in page.headers["content-security-policy"]
    for name in ("leadwatch-alerts.js", "leadwatch-analytics.js", "vendor/chart.js/chart.umd.min.js"):
        served = httpx.get(f"{dev_server}/widget/{name}")
        assert (served.status_code, served.headers["content-type"]) == (200, "text/javascript; charset=utf-8"), name
    assert httpx.get(f"{dev_server}/widget/vendor/chart.js/LICENSE.md").status_code == 200
    for outside in ("/widget/../pyproject.toml", "/widget/%2e%2e/widget.py", "/widget/.hidden.js", "/widget/x.py"):
        assert httpx.get(f"{dev_server}{outside}").status_code == 404, outside
    # every other request still reaches the API
    assert httpx.post(f"{dev_server}/").json()["error"]["code"] == "not_found"
    assert httpx.get(f"{dev_server}/api/alerts/active", headers={"X-Tenant": "macrea"}).json()["success"] is True


def test_deployed_functions_do_not_serve_the_widget(database_url, monkeypatch):
    """functions/main.py as the cloud loads it: GET / and the widget's files are not routes there."""
    import functions_framework

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SUPABASE_SERVICE_KEY", "cloud-service-key")
    source = str(ROOT / "functions" / "main.py")
    client = functions_framework.create_app(target="alerts", source=source).test_client()
    auth = {"Authorization": "Bearer cloud-service-key"}
    for path in ("/", "/widget/leadwatch-alerts.js"):
        response = client.get(path, headers=auth)
        assert response.status_code == 404 and response.get_json()["success"] is False, path


# The widget's states ---------------------------------------------------------------------------


def test_demo_alerts_render_in_dashboard_order_with_severity_badges(page, dev_server):
    requested = []
    page.on("request", lambda r: requested.append(r.url))
    api = active_alerts(dev_server, "macrea")
    open_widget(page, dev_server, "macrea")
    assert [a[0] for a in shown(page)] == [a["id"] for a in api["alerts"]]
    severities = [a[2] for a in shown(page)]
    assert severities == sorted(severities, key=["high", "med", "low"].index) and set(severities) == {
        "high",
        "med",
        "low",
    }
    assert badges(page) == (api["stats"]["total"], api["stats"]["by_severity"])
    sophie = page.locator("leadwatch-alerts li.alert", has_text="Sophie Martin")
    assert sophie.locator(".email").inner_text() == "sophie.martin@example.com"
    assert sophie.locator(".message").inner_text() == "Pas de réponse depuis 4 jours à notre dernier message."
    assert sophie.locator(".action-label").inner_text() == "Relancer par WhatsApp"
    assert sophie.get_by_role("button", name="Résoudre – Sophie Martin").is_visible()
    assert sophie.get_by_role("button", name="Action : Relancer par WhatsApp – Sophie Martin").is_visible()
    assert page.locator("leadwatch-alerts .total").inner_text() == f"{api['stats']['total']} alertes"
    assert all(url.startswith(dev_server) for url in requested), "the page loaded something from elsewhere"
    shoot(page, "normal")
    page.locator("leadwatch-alerts").screenshot(path=str(ARTIFACTS / "widget.png"))  # docs/widget.png


def test_resolve_removes_the_alert_and_the_api_confirms_it(page, dev_server):
    seed(
        dev_server,
        "t-resolve",
        A={"name": "Anna Roy", "history": [("in", 9)]},
        B={"name": "Bruno Roy", "history": [("in", 16)]},
    )
    open_widget(page, dev_server, "t-resolve")
    page.evaluate("() => document.addEventListener('leadwatch:resolved', e => (window.resolved = e.detail.id))")
    (bruno_id, _, _), (anna_id, _, _) = shown(page)
    page.get_by_role("button", name="Résoudre – Anna Roy").click()
    page.locator(f"leadwatch-alerts li[data-id='{anna_id}']").wait_for(state="detached")
    page.locator("leadwatch-alerts .notice[data-kind='ok']").wait_for()
    assert [a[0] for a in shown(page)] == [bruno_id]
    assert badges(page) == (1, {"high": 1, "med": 0, "low": 0})
    assert page.evaluate("() => window.resolved") == anna_id
    assert [a["id"] for a in active_alerts(dev_server, "t-resolve")["alerts"]] == [bruno_id]
    again = call(dev_server, "POST", f"/api/alerts/{anna_id}/resolve", "t-resolve")[1]
    assert again["alert"]["resolved_by"] == "user_manual" and again["alert"]["resolved_at"]
    shoot(page, "resolved")


def test_failing_resolve_rolls_back_with_a_visible_error(page, dev_server):
    seed(dev_server, "t-rollback", A={"name": "Anna Roy", "history": [("in", 9)]})
    open_widget(page, dev_server, "t-rollback")
    [(alert_id, _, _)] = shown(page)
    page.locator("leadwatch-alerts").evaluate(
        """(el, id) => new MutationObserver(() => {
             if (!el.shadowRoot.querySelector(`li[data-id="${id}"]`)) window.removedOnce = true
           }).observe(el.shadowRoot, {childList: true, subtree: true})""",
        alert_id,
    )
    unavailable = {"success": False, "error": {"code": "database_unavailable", "message": "database unreachable"}}
    page.route("**/api/alerts/*/resolve", lambda route: fulfill_json(route, 503, unavailable))
    page.get_by_role("button", name="Résoudre – Anna Roy").click()
    error = page.locator("leadwatch-alerts .notice[data-kind='error']")
    error.wait_for()
    assert (
        "Impossible de résoudre l'alerte de Anna Roy : la base de données est indisponible, réessayez dans un instant"
        in error.inner_text()
    )
    assert page.evaluate("() => window.removedOnce") is True, "the alert was not removed at once (optimistic)"
    assert [a[0] for a in shown(page)] == [alert_id] and badges(page) == (1, {"high": 0, "med": 1, "low": 0})
    assert [a["id"] for a in active_alerts(dev_server, "t-rollback")["alerts"]] == [alert_id]
    shoot(page, "resolve-failed")


def test_new_alert_appears_after_a_manual_refresh(page, dev_server):
    seed(dev_server, "t-refresh", A={"name": "Anna Roy", "history": [("in", 9)]})
    open_widget(page, dev_server, "t-refresh")
    seed(dev_server, "t-refresh", B={"name": "Bruno Roy", "history": [("in", 16)]})
    assert [a[1] for a in shown(page)] == ["Anna Roy"]
    page.get_by_role("button", name="Actualiser", exact=True).click()
    page.locator("leadwatch-alerts li.alert", has_text="Bruno Roy").wait_for()
    assert [a[1] for a in shown(page)] == ["Bruno Roy", "Anna Roy"]


def test_list_refreshes_every_60_s_and_pauses_while_the_tab_is_hidden(page, dev_server):
    reads = []
    page.on("request", lambda r: reads.append(r.url) if "/api/alerts/active" in r.url else None)
    page.clock.install()
    seed(dev_server, "t-timer", A={"name": "Anna Roy", "history": [("in", 9)]})
    open_widget(page, dev_server, "t-timer")
    seed(dev_server, "t-timer", B={"name": "Bruno Roy", "history": [("in", 16)]})
    page.clock.run_for(55_000)
    page.wait_for_timeout(300)
    assert [a[1] for a in shown(page)] == ["Anna Roy"], "refreshed before 60 s"
    page.clock.run_for(10_000)
    page.locator("leadwatch-alerts li.alert", has_text="Bruno Roy").wait_for()

    page.evaluate(
        """() => { Object.defineProperty(document, 'hidden', {configurable: true, get: () => true})
                   document.dispatchEvent(new Event('visibilitychange')) }"""
    )
    seed(dev_server, "t-timer", C={"name": "Chloé Roy", "history": [("in", 35)]})
    before = len(reads)
    page.clock.run_for(180_000)
    page.wait_for_timeout(300)
    assert len(reads) == before and "Chloé Roy" not in [a[1] for a in shown(page)], "refreshed while hidden"
    page.evaluate(
        """() => { Object.defineProperty(document, 'hidden', {configurable: true, get: () => false})
                   document.dispatchEvent(new Event('visibilitychange')) }"""
    )
    page.locator("leadwatch-alerts li.alert", has_text="Chloé Roy").wait_for()
    assert [a[1] for a in shown(page)] == ["Bruno Roy", "Anna Roy", "Chloé Roy"]


@pytest.mark.parametrize(
    ("lang", "lines"),
    [
        (
            "fr",
            [
                "R.A.S. aujourd'hui. Ton pipeline est propre.",
                "Si tu veux, je peux surveiller les leads silencieux et te prévenir dès qu'un contact devient froid.",
            ],
        ),
        (
            "en",
            [
                "All clear today. Your pipeline is clean.",
                "If you like, I can watch the silent leads and tell you as soon as a contact goes cold.",
            ],
        ),
    ],
    ids=["fr", "en"],
)
def test_empty_state_says_the_reference_text(page, dev_server, lang, lines):
    open_widget(page, dev_server, "t-empty", lang=lang, state="empty")
    assert page.locator("leadwatch-alerts [data-state='empty'] p").all_inner_texts() == lines
    assert page.locator("leadwatch-alerts li.alert").count() == 0
    shoot(page, f"empty-{lang}")


def test_loading_state_while_the_list_is_on_its_way(page, dev_server):
    held = []
    # the request waits until the test lets it go (a lambda: Playwright cannot wrap a builtin such as list.append)
    page.route("**/api/alerts/active*", lambda route: held.append(route))  # noqa: PLW0108
    page.goto(f"{dev_server}/?tenant=macrea")
    loading = page.locator("leadwatch-alerts [data-state='loading']")
    loading.wait_for()
    assert loading.inner_text() == "Chargement des alertes…"
    assert page.locator("leadwatch-alerts section").get_attribute("aria-busy") == "true"
    shoot(page, "loading")
    held[0].continue_()
    page.locator("leadwatch-alerts [data-state='list']").wait_for()
    assert page.locator("leadwatch-alerts section").get_attribute("aria-busy") == "false"


def test_error_state_when_the_api_is_down_then_retry(page, dev_server):
    seed(dev_server, "t-down", A={"name": "Anna Roy", "history": [("in", 9)]})
    page.route("**/api/alerts/active*", lambda route: route.abort("connectionrefused"))
    open_widget(page, dev_server, "t-down", state="error")
    error = page.locator("leadwatch-alerts [data-state='error']")
    assert error.get_attribute("role") == "alert"
    assert "Impossible de charger les alertes" in error.inner_text()
    shoot(page, "error")
    page.unroute("**/api/alerts/active*")
    page.get_by_role("button", name="Réessayer").click()
    page.locator("leadwatch-alerts li.alert", has_text="Anna Roy").wait_for()


def test_action_shows_what_was_sent_or_why_not(page, dev_server, greenapi):
    seed(
        dev_server,
        WHATSAPP_TENANT,
        A={"name": "Anna Roy", "phone": "+33611111111", "history": [("in", 6), ("out", 4)]},
        B={"name": "Bruno Roy", "phone": "+33622222222", "value": 20000, "history": [("in", 4)]},
    )
    open_widget(page, dev_server, WHATSAPP_TENANT)
    _GreenApi.sent.clear()
    page.get_by_role("button", name="Action : Relancer par WhatsApp – Anna Roy").click()
    notice = page.locator("leadwatch-alerts .notice[data-kind='ok']")
    notice.wait_for()
    [sent] = _GreenApi.sent
    assert sent["chatId"] == "33611111111@c.us"
    assert notice.inner_text().startswith(f"Envoyé à Anna Roy sur WhatsApp : « {sent['message']} »")
    # the send answers the NoReply3d alert: the list drops it after the refresh that follows
    page.locator("leadwatch-alerts li.alert", has_text="Anna Roy").wait_for(state="detached")
    shoot(page, "action-sent")

    # HighValueRisk's action is a call: a tel: link, then the outcome; no answer logs it and keeps the alert
    dial = page.get_by_role("link", name="Appeler le +33622222222 – Bruno Roy")
    assert dial.get_attribute("href") == "tel:+33622222222"
    assert page.get_by_role("button", name="Action : Appeler le lead – Bruno Roy").count() == 0
    page.locator("leadwatch-alerts summary", has_text="Résultat de l'appel").click()
    page.get_by_role("button", name="Pas de réponse").click()
    logged = page.locator("leadwatch-alerts .notice[data-kind='ok']", has_text="Appel de Bruno Roy enregistré")
    logged.wait_for()
    assert logged.inner_text().startswith("Appel de Bruno Roy enregistré : Pas de réponse.")
    [latest, *_] = call(dev_server, "GET", "/api/leads/B/activities", WHATSAPP_TENANT)[1]["activities"]
    assert (latest["channel"], latest["direction"], latest["status"]) == ("call", "out", "no_answer")
    assert [a["lead_id"] for a in active_alerts(dev_server, WHATSAPP_TENANT)["alerts"]] == ["B"]
    page.locator("leadwatch-alerts li.alert", has_text="Bruno Roy").wait_for()
    assert len(_GreenApi.sent) == 1
    shoot(page, "action-call")


@pytest.fixture(scope="module")
def newcomer_server(tmp_path_factory):
    """`leadwatch dev` as a newcomer runs it: the demo data, no Green-API and no email provider (the
    dev outbox takes the sends), with EspoCRM configured so that leads link to it."""
    env = leadwatch_env(ESPO_URL="https://crm.example.com", ESPO_API_KEY="espo-key")
    env = {k: v for k, v in env.items() if not k.startswith("GREENAPI_")}
    data_dir = tmp_path_factory.mktemp("newcomer") / "data"
    process, base = start_dev("--data-dir", str(data_dir), env=env, cwd=tmp_path_factory.getbasetemp())
    yield base
    process.terminate()
    process.wait(timeout=30)


def outbox(base):
    response = httpx.get(f"{base}/dev/outbox", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def test_every_demo_alerts_action_runs_and_the_alert_clears(page, newcomer_server):
    """On the demo, with no provider configured: each alert's Action sends its follow-up to the dev
    outbox (the panel shows it), HighValueRisk's call is logged from its outcome, and every alert clears."""
    base = newcomer_server
    demo = active_alerts(base, "macrea")["alerts"]
    assert {a["type"] for a in demo} == {
        "NoReply3d",
        "NoContact7d",
        "StaleLead30d",
        "HighValueRisk",
        "PreferredChannel",
    }
    assert all(a["suggested_action"]["available"] for a in demo)
    phones = {a["lead_name"]: a["lead_phone"] for a in demo}
    open_widget(page, base, "macrea")
    page.locator("leadwatch-dev-outbox [data-state='empty']").wait_for()
    sends, calls = [], []
    while shown(page):
        alert_id, lead, _ = shown(page)[0]
        item = page.locator(f"leadwatch-alerts li.alert[data-id='{alert_id}']")
        if item.locator("a.call").count():
            assert item.locator("a.call").get_attribute("href") == f"tel:{phones[lead]}"
            item.locator("summary", has_text="Résultat de l'appel").click()
            item.get_by_role("button", name="Joint").click()
            notice = page.locator("leadwatch-alerts .notice[data-kind='ok']", has_text=f"Appel de {lead} enregistré")
            notice.wait_for()
            assert notice.inner_text().startswith(f"Appel de {lead} enregistré : Joint.")
            calls.append(lead)
        else:
            item.locator("button[data-do='action']").click()
            notice = page.locator("leadwatch-alerts .notice[data-kind='ok']", has_text=f"Envoyé à {lead}")
            notice.wait_for()
            sends.append((lead, notice.inner_text()))
            # the panel shows the message kept instead of sent
            page.locator("leadwatch-dev-outbox li.message").nth(len(sends) - 1).wait_for()
        item.wait_for(state="detached")
    page.locator("leadwatch-alerts [data-state='empty']").wait_for()
    assert active_alerts(base, "macrea")["alerts"] == []
    assert calls == ["Chloé Dubois"]
    kept = outbox(base)
    assert len(kept) == len(sends) >= 5 and {m["channel"] for m in kept} == {"whatsapp"}
    for (lead, text), message in zip(sends, reversed(kept), strict=True):
        assert message["to"] == phones[lead].lstrip("+") + "@c.us"
        assert text.startswith(f"Envoyé à {lead} sur WhatsApp : « {message['text']} »")
    assert page.locator("leadwatch-dev-outbox li.message").count() == len(kept)
    [call_logged, *_] = call(base, "GET", "/api/leads/demo-chloe/activities", "macrea")[1]["activities"]
    assert (call_logged["channel"], call_logged["direction"], call_logged["status"]) == ("call", "out", "answered")
    shoot(page, "demo-actions-done")


def test_lead_name_links_to_the_lead_in_espocrm(page, newcomer_server):
    seed(newcomer_server, "t-espo", **{"694d0bed15df5b9e1": {"name": "Sophie Martin", "history": [("in", 9)]}})
    open_widget(page, newcomer_server, "t-espo")
    link = page.locator("leadwatch-alerts li.alert .lead a.crm")
    assert link.inner_text() == "Sophie Martin"
    assert link.get_attribute("href") == "https://crm.example.com/#Lead/view/694d0bed15df5b9e1"
    assert link.get_attribute("target") == "_blank"


def test_lead_name_is_plain_text_without_espocrm(page, dev_server):
    seed(dev_server, "t-noespo", A={"name": "Anna Roy", "history": [("in", 9)]})
    open_widget(page, dev_server, "t-noespo")
    assert page.locator("leadwatch-alerts li.alert .lead").inner_text() == "Anna Roy"
    assert page.locator("leadwatch-alerts li.alert .lead a").count() == 0


def test_an_action_that_cannot_run_is_shown_so_before_any_click(page, dev_server):
    seed(dev_server, "t-nophone", A={"name": "Anna Roy", "history": [("in", 9)]})
    posted = []
    page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
    open_widget(page, dev_server, "t-nophone")
    button = page.get_by_role("button", name="Action : Relancer par WhatsApp – Anna Roy")
    assert button.is_disabled()
    why = page.locator("leadwatch-alerts li.alert .unavailable")
    assert why.get_attribute("data-reason") == "no_phone"
    assert why.inner_text() == "Action indisponible : le lead n'a pas de numéro de téléphone."
    assert button.get_attribute("aria-describedby") == why.get_attribute("id")
    button.click(force=True)  # even a click that gets through runs nothing
    page.wait_for_timeout(300)
    assert posted == [] and page.locator("leadwatch-alerts .notice").count() == 0
    shoot(page, "action-unavailable")


@pytest.mark.parametrize(
    ("lang", "expected", "english"),
    [
        (
            "fr",
            "Action non exécutée pour Anna Roy : WhatsApp limite les envois, réessayez plus tard",
            "Green-API is rate limiting",
        ),
        ("en", "Action not run for Anna Roy: WhatsApp is rate limiting sends, try again later", "Green-API is"),
    ],
)
def test_the_widget_says_an_api_error_from_its_code_in_its_language(page, dev_server, lang, expected, english):
    seed(dev_server, "t-errors", A={"name": "Anna Roy", "phone": "+33699999999", "history": [("in", 9)]})
    refused = {
        "success": False,
        "error": {"code": "whatsapp_rate_limited", "message": "Green-API is rate limiting this instance, retry later"},
    }
    page.route("**/api/alerts/*/action", lambda route: fulfill_json(route, 503, refused))
    open_widget(page, dev_server, "t-errors", lang=lang)
    page.locator("leadwatch-alerts button[data-do='action']").click()
    error = page.locator("leadwatch-alerts .notice[data-kind='error']")
    error.wait_for()
    assert error.inner_text().startswith(expected) and english not in error.inner_text()


def test_an_unknown_error_code_is_said_generically_in_french(page, dev_server):
    seed(dev_server, "t-errors2", A={"name": "Anna Roy", "history": [("in", 9)]})
    odd = {"success": False, "error": {"code": "something_new", "message": "Something went wrong in English"}}
    page.route("**/api/alerts/*/resolve", lambda route: fulfill_json(route, 409, odd))
    open_widget(page, dev_server, "t-errors2")
    page.get_by_role("button", name="Résoudre – Anna Roy").click()
    error = page.locator("leadwatch-alerts .notice[data-kind='error']")
    error.wait_for()
    assert "erreur inattendue (something_new, HTTP 409)" in error.inner_text()
    assert "English" not in error.inner_text()


# Snooze and bulk selection: shown only where the API describes them (the alert-desk contract) --------

DESK_OPENAPI = {"openapi": "3.1.0", "paths": {"/api/alerts/{alert_id}/snooze": {}, "/api/alerts/bulk": {}}}


def test_snooze_and_bulk_are_hidden_when_the_api_does_not_describe_them(page, dev_server):
    seed(dev_server, "t-nodesk", A={"name": "Anna Roy", "history": [("in", 9)]})
    page.route("**/openapi.json", lambda route: fulfill_json(route, 200, {"openapi": "3.1.0", "paths": {}}))
    open_widget(page, dev_server, "t-nodesk")
    page.wait_for_load_state("networkidle")
    assert page.locator("leadwatch-alerts summary").count() == 0
    assert page.locator("leadwatch-alerts input[type='checkbox']").count() == 0
    page.unroute("**/openapi.json")
    page.route("**/openapi.json", lambda route: fulfill_json(route, 200, DESK_OPENAPI))
    page.reload()
    page.locator("leadwatch-alerts summary", has_text="Reporter").wait_for()


def test_snooze_and_bulk_follow_the_alert_desk_contract(page, dev_server):
    alerts = seed(
        dev_server,
        "t-desk",
        A={"name": "Anna Roy", "history": [("in", 9)]},
        B={"name": "Bruno Roy", "history": [("in", 16)]},
        C={"name": "Chloé Roy", "history": [("in", 35)]},
    )["alerts"]
    posted = []

    def desk(route):
        body = json.loads(route.request.post_data)
        posted.append((route.request.url.removeprefix(dev_server), body))
        if body.get("action") == "resolve":
            failing = {"success": False, "error": {"code": "database_unavailable", "message": "down"}}
            return fulfill_json(route, 503, failing)
        return fulfill_json(route, 200, {"success": True, "results": [], "done": len(body.get("ids", [1]))})

    page.route("**/openapi.json", lambda route: fulfill_json(route, 200, DESK_OPENAPI))
    page.route("**/api/alerts/*/snooze", desk)
    page.route("**/api/alerts/bulk", desk)
    open_widget(page, dev_server, "t-desk")
    page.locator("leadwatch-alerts summary", has_text="Reporter").first.wait_for()
    anna = page.locator("leadwatch-alerts li.alert", has_text="Anna Roy")
    menu = anna.locator("details.snooze")
    anna.get_by_text("Reporter").click()
    anna.get_by_role("button", name="Demain").focus()
    page.keyboard.press("Escape")
    assert menu.evaluate("d => !d.open") and deep_focus(page) == f"snooze:{alerts[1]['id']}"
    anna.get_by_text("Reporter").click()
    anna.get_by_role("button", name="4 h").click()
    anna.wait_for(state="detached")
    assert posted[-1] == (f"/api/alerts/{alerts[1]['id']}/snooze", {"for": "4h"})

    page.get_by_role("checkbox", name="Sélectionner l'alerte de Bruno Roy").check()
    page.get_by_role("checkbox", name="Sélectionner l'alerte de Chloé Roy").check()
    page.get_by_role("button", name="Résoudre la sélection").click()
    page.locator("leadwatch-alerts .notice[data-kind='error']", has_text="base de données est indisponible").wait_for()
    assert [a[1] for a in shown(page)] == ["Bruno Roy", "Chloé Roy"], "a failed bulk resolve is rolled back"
    assert posted[-1][1] == {"action": "resolve", "ids": [alerts[0]["id"], alerts[2]["id"]]}

    page.get_by_role("checkbox", name="Tout sélectionner").check()
    page.locator("leadwatch-alerts .bulk summary").click()
    shoot(page, "snooze-menu")
    page.locator("leadwatch-alerts .bulk").get_by_role("button", name="Demain").click()
    page.locator("leadwatch-alerts [data-state='empty']").wait_for()
    path, body = posted[-1]
    until = datetime.fromisoformat(body.pop("until"))
    assert (path, body) == ("/api/alerts/bulk", {"action": "snooze", "ids": [alerts[0]["id"], alerts[2]["id"]]})
    today = datetime.now().astimezone().date()  # the browser's local date (= ours)
    tomorrow_nine = datetime.combine(today + timedelta(days=1), datetime.min.time()).replace(hour=9)
    assert until.astimezone().replace(tzinfo=None) == tomorrow_nine  # 09:00 tomorrow, browser time (= ours)


def test_snooze_and_bulk_resolve_against_the_real_alert_desk(page, dev_server):
    """With the API's own description and routes (no interception): 4 h snooze, then a bulk resolve;
    the API confirms both."""
    alerts = seed(
        dev_server,
        "t-desk-real",
        A={"name": "Anna Roy", "history": [("in", 9)]},
        B={"name": "Bruno Roy", "history": [("in", 16)]},
        C={"name": "Chloé Roy", "history": [("in", 35)]},
    )["alerts"]
    by_name = {a["lead_name"]: a["id"] for a in alerts}
    open_widget(page, dev_server, "t-desk-real")
    anna = page.locator("leadwatch-alerts li.alert", has_text="Anna Roy")
    anna.get_by_text("Reporter").click()
    with page.expect_response(lambda r: r.url.endswith("/snooze") and r.ok):  # the list hides it at once
        anna.get_by_role("button", name="4 h").click()
    anna.wait_for(state="detached")
    snoozed = call(dev_server, "GET", "/api/alerts/active?state=snoozed", "t-desk-real")[1]["alerts"]
    assert [a["id"] for a in snoozed] == [by_name["Anna Roy"]] and snoozed[0]["snoozed_until"]

    page.get_by_role("checkbox", name="Tout sélectionner").check()
    with page.expect_response(lambda r: r.url.endswith("/api/alerts/bulk") and r.ok):
        page.get_by_role("button", name="Résoudre la sélection").click()
    page.locator("leadwatch-alerts [data-state='empty']").wait_for()
    left = call(dev_server, "GET", "/api/alerts/active", "t-desk-real")[1]
    assert left["alerts"] == [] and left["stats"]["snoozed"] == 1


# Analytics -------------------------------------------------------------------------------------


def test_analytics_panel_draws_the_documented_shape(page, dev_server):
    asked = []

    def analytics(route):
        asked.append(route.request.url)
        fulfill_json(route, 200, ANALYTICS)

    page.route("**/api/alerts/analytics?*", analytics)
    page.goto(f"{dev_server}/?tenant=macrea")
    page.locator("leadwatch-analytics section[data-state='ready']").wait_for()
    per_day = drawn(page, "per-day")
    assert per_day["labels"] == [d["day"][5:] for d in ANALYTICS["per_day"]]
    assert per_day["data"] == [[d[k] for d in ANALYTICS["per_day"]] for k in ("created", "resolved", "escalated")]
    by_age = drawn(page, "open-by-age")
    assert by_age["labels"] == ["<1d", "1-3d", "3-7d", "7-30d", ">30d"] and by_age["data"] == [[2, 5, 3, 7, 1]]
    assert per_day["painted"] > 2000 and by_age["painted"] > 2000, "the charts painted nothing"
    assert "77.5 % (31 sur 40)" in page.locator("leadwatch-analytics [data-ref='within24h']").inner_text()
    rows = page.locator("leadwatch-analytics table[data-table='owner'] tbody tr").all_inner_texts()
    assert [r.split("\t") for r in rows] == [["u-1", "9", "4.0", "20.0"], ["Sans commercial", "3", "48.0", "96.0"]]
    query = httpx.URL(asked[0]).params
    today = datetime.now().astimezone().date()
    assert query["to"] == today.isoformat() and query["from"] == (today - timedelta(days=29)).isoformat()
    assert query["tz"]
    page.locator("leadwatch-alerts [data-state]").first.wait_for()
    page.locator("leadwatch-analytics").scroll_into_view_if_needed()
    shoot(page, "analytics")


def test_analytics_panel_says_when_the_server_has_no_analytics(page, dev_server):
    missing = {"success": False, "error": {"code": "not_found", "message": "no route for /api/alerts/analytics"}}
    page.route("**/api/alerts/analytics?*", lambda route: fulfill_json(route, 404, missing))
    page.goto(f"{dev_server}/?tenant=macrea")
    page.locator("leadwatch-analytics [data-state='unavailable']").wait_for()
    assert page.locator("leadwatch-analytics canvas").count() == 0


def test_analytics_panel_draws_the_real_endpoint(page, dev_server):
    status, body = call(dev_server, "GET", "/api/alerts/analytics", "macrea")
    assert status == 200, body
    asked = []
    page.on("request", lambda r: asked.append(r.url) if "/api/alerts/analytics" in r.url else None)
    page.goto(f"{dev_server}/?tenant=macrea")
    page.locator("leadwatch-analytics section[data-state='ready']").wait_for()
    real = call(dev_server, "GET", f"/api/alerts/analytics?{httpx.URL(asked[0]).query.decode()}", "macrea")[1]
    assert sum(d["created"] for d in real["per_day"]) > 0, "the demo's alerts were created in this period"
    per_day = drawn(page, "per-day")
    assert per_day["labels"] == [d["day"][5:] for d in real["per_day"]]
    assert per_day["data"] == [[d[k] for d in real["per_day"]] for k in ("created", "resolved", "escalated")]
    assert drawn(page, "open-by-age")["data"] == [[b["count"] for b in real["open_by_age"]]]
    assert per_day["painted"] > 2000


# Keyboard and accessibility ----------------------------------------------------------------------


def test_keyboard_only_resolve(page, dev_server):
    seed(
        dev_server,
        "t-keys",
        A={"name": "Anna Roy", "history": [("in", 9)]},
        B={"name": "Bruno Roy", "history": [("in", 16)]},
    )
    open_widget(page, dev_server, "t-keys")
    (bruno_id, _, _), (anna_id, _, _) = shown(page)
    for _ in range(30):
        page.keyboard.press("Tab")
        if deep_focus(page) == f"resolve:{bruno_id}":
            break
    else:
        pytest.fail("Tab never reached the first alert's Résoudre button")
    page.keyboard.press("Enter")
    page.locator(f"leadwatch-alerts li[data-id='{bruno_id}']").wait_for(state="detached")
    assert [a["id"] for a in active_alerts(dev_server, "t-keys")["alerts"]] == [anna_id]
    assert deep_focus(page) == f"resolve:{anna_id}", "the focus did not move on to the next alert"
    page.keyboard.press("Space")
    page.locator("leadwatch-alerts [data-state='empty']").wait_for()
    assert active_alerts(dev_server, "t-keys")["alerts"] == []


@pytest.mark.parametrize("state", ["list", "empty", "error", "analytics"])
def test_axe_finds_no_serious_violation(page, dev_server, state):
    tenant = {"list": "macrea", "empty": "t-axe-empty", "error": "t-axe-error", "analytics": "t-axe-empty"}[state]
    if state == "error":
        page.route("**/api/alerts/active*", lambda route: route.abort("connectionrefused"))
    if state == "analytics":
        page.route("**/api/alerts/analytics?*", lambda route: fulfill_json(route, 200, ANALYTICS))
    open_widget(page, dev_server, tenant, state="empty" if state == "analytics" else state)
    page.locator("leadwatch-analytics section[data-state]:not([data-state='loading'])").wait_for()
    if state == "analytics":
        page.locator("leadwatch-analytics section[data-state='ready']").wait_for()
    assert run_axe(page) == []


# Auth: the host page's getToken --------------------------------------------------------------------


def test_deployed_mode_sends_the_users_token_from_get_token(db, database_url, page, tmp_path):
    """`leadwatch dev --auth` verifies callers as the cloud does: without a token the widget shows the
    error; with `element.getToken` set by the host page it sends `Authorization: Bearer` and lists."""
    import jwt

    secret = "widget-test-secret-with-32-characters!"
    process, base = start_dev(
        "--auth", "--database-url", database_url, env=leadwatch_env(SUPABASE_JWT_SECRET=secret), cwd=tmp_path
    )
    try:
        token = jwt.encode(
            {
                "sub": "user-1",
                "aud": "authenticated",
                "role": "authenticated",
                "exp": int(time.time()) + 3600,
                "app_metadata": {"tenant_id": "macrea", "role": "admin"},
            },
            secret,
            algorithm="HS256",
        )
        sent = []
        page.on("request", lambda r: sent.append(r.headers.get("authorization")) if "/api/" in r.url else None)
        open_widget(page, base, "macrea", state="error")
        assert "vous devez vous reconnecter" in page.locator("leadwatch-alerts [data-state='error']").inner_text()
        page.evaluate("token => { document.getElementById('alerts').getToken = async () => token }", token)
        page.locator("leadwatch-alerts [data-state='list']").wait_for()
        assert len(shown(page)) == active_alerts_with(base, token)["stats"]["total"] > 0
        assert f"Bearer {token}" in sent
    finally:
        process.terminate()
        process.wait(timeout=30)


def active_alerts_with(base, token):
    return httpx.get(f"{base}/api/alerts/active?limit=200", headers={"Authorization": f"Bearer {token}"}).json()


def test_get_token_set_before_the_element_is_defined_is_kept(page, dev_server):
    """A host page may set `getToken` before the module has loaded: the element takes it over at its
    upgrade, and a new token set later (a refreshed session) reloads the list with it at once."""
    seen = []
    page.on("request", lambda r: seen.append(r.headers.get("authorization")) if "/api/alerts/active" in r.url else None)
    page.goto(f"{dev_server}/health")  # any page of the same origin, without the element's module
    page.evaluate(
        """async () => {
             document.body.innerHTML = '<leadwatch-alerts tenant="macrea"></leadwatch-alerts>'
             document.querySelector('leadwatch-alerts').getToken = async () => 'early-token'
             await import('/widget/leadwatch-alerts.js')
           }"""
    )
    page.locator("leadwatch-alerts [data-state='list']").wait_for()
    assert seen and set(seen) == {"Bearer early-token"}
    with page.expect_request(lambda r: r.headers.get("authorization") == "Bearer later-token", timeout=5000):
        page.evaluate("() => { document.querySelector('leadwatch-alerts').getToken = async () => 'later-token' }")
