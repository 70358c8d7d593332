"""The commands, run for real: `leadwatch dev` on the embedded PostgreSQL, `migrate`, `sweep`, `retain`."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest
from helpers import LEADWATCH, ago, log
from helpers import free_port as _free_port
from helpers import leadwatch_env as _env


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory):
    """`leadwatch dev` exactly as `make dev` runs it, on its own embedded database."""
    port = _free_port()
    data_dir = tmp_path_factory.mktemp("dev") / "data"
    process = subprocess.Popen(
        [*LEADWATCH, "dev", "--port", str(port), "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
        cwd=tmp_path_factory.getbasetemp(),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            if process.poll() is not None:
                pytest.fail(f"leadwatch dev exited: {process.stdout.read()}")
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail("leadwatch dev did not answer /health within 90 s")
    yield base
    process.terminate()  # as a supervisor stops it: the server, its worker and the embedded database stop
    assert process.wait(timeout=30) == 0
    assert not (data_dir / "postmaster.pid").exists(), "the embedded database outlived leadwatch dev"


def test_dev_serves_demo_alerts_of_every_severity(dev_server):
    body = httpx.get(f"{dev_server}/api/alerts/active", headers={"X-Tenant": "macrea"}).json()
    assert body["success"] is True
    assert all(body["stats"]["by_severity"][s] > 0 for s in ("high", "med", "low"))
    sophie = [a for a in body["alerts"] if a["lead_id"] == "694d0bed15df5b9e1"]
    assert sophie and sophie[0]["lead_name"] == "Sophie Martin"
    # no provider configured: the open mode's sends go to the dev outbox, so every action can run
    assert all(a["suggested_action"]["available"] for a in body["alerts"])
    assert httpx.get(f"{dev_server}/dev/outbox").json() == {"success": True, "messages": []}


def test_dev_answers_the_reference_curl_examples(dev_server):
    """The reference's "Guide de test": log OUT, list, log IN (auto-resolve), resolve by id."""
    h = {"X-Tenant": "macrea"}
    out = httpx.post(
        f"{dev_server}/api/activities/log",
        headers=h,
        json={
            "leadId": "694d0bed15df5b9e1",
            "channel": "whatsapp",
            "direction": "out",
            "status": "sent",
            "messageSnippet": "Bonjour, avez-vous reçu notre devis?",
        },
    ).json()
    assert out["success"] is True and out["activity"]["direction"] == "out"
    reply = httpx.post(
        f"{dev_server}/api/activities/log",
        headers=h,
        json={
            "leadId": "demo-emma",
            "channel": "whatsapp",
            "direction": "in",
            "status": "replied",
            "messageSnippet": "Oui, je suis intéressé",
        },
    ).json()
    assert set(reply["alerts"]["resolved"]) == {"NoContact7d", "NoReply3d"}
    alert = httpx.get(f"{dev_server}/api/alerts/active", headers=h).json()["alerts"][0]
    resolved = httpx.post(f"{dev_server}/api/alerts/{alert['id']}/resolve", headers=h).json()
    assert resolved == {
        "success": True,
        "message": "Alerte résolue",
        "alert": {**resolved["alert"], "id": alert["id"], "resolved_by": "user_manual"},
    }
    sweep = httpx.post(f"{dev_server}/api/alerts/sweep").json()
    assert sweep["success"] is True and "duration_ms" in sweep


def test_dev_keeps_connections_alive_as_deployed_functions_do(dev_server):
    """The dev server is functions-framework's (gunicorn, threads): one connection serves many requests."""
    import http.client

    host, port = dev_server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/health")
    first = conn.getresponse()
    first.read()
    socket_used = conn.sock
    conn.request("GET", "/api/alerts/active", headers={"X-Tenant": "macrea"})
    second = conn.getresponse()
    second.read()
    assert (first.status, second.status) == (200, 200)
    assert socket_used is not None and conn.sock is socket_used, "the server closed the connection after one request"
    conn.close()


def test_dev_refuses_open_mode_on_a_public_address(tmp_path):
    result = subprocess.run(
        [
            *LEADWATCH,
            "dev",
            "--host",
            "0.0.0.0",
            "--no-demo",
            "--data-dir",
            str(tmp_path / "d"),
            "--port",
            str(_free_port()),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert result.returncode == 2 and "non-loopback" in result.stderr


def test_migrate_without_database_url_names_it():
    result = subprocess.run([*LEADWATCH, "migrate"], capture_output=True, text=True, env=_env(), timeout=60)
    assert result.returncode == 2 and "DATABASE_URL" in result.stderr


def test_migrate_and_sweep_commands_against_database_url(postgres_store, db, database_url):
    migrated = subprocess.run(
        [*LEADWATCH, "migrate"], capture_output=True, text=True, env=_env(DATABASE_URL=database_url), timeout=60
    )
    assert migrated.returncode == 0 and "up to date" in migrated.stdout
    log(postgres_store, tenant="acme", direction="in", occurredAt=ago(days=8))
    swept = subprocess.run(
        [*LEADWATCH, "sweep", "--tenant", "acme"],
        capture_output=True,
        text=True,
        env=_env(DATABASE_URL=database_url),
        timeout=60,
    )
    assert swept.returncode == 0, swept.stderr
    assert json.loads(swept.stdout)["created"]["NoContact7d"] == 1


def test_dev_with_auth_enforces_what_the_cloud_enforces(database_url, db):
    """`leadwatch dev --auth` refuses anonymous callers and serves the service key, as deployed functions do."""
    port = _free_port()
    env = _env(SUPABASE_SERVICE_KEY="dev-service-key", SUPABASE_JWT_SECRET="dev-secret-with-32-characters-or-more")
    process = subprocess.Popen(
        [*LEADWATCH, "dev", "--auth", "--no-demo", "--port", str(port), "--database-url", database_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        anonymous = httpx.get(f"{base}/api/alerts/active", headers={"X-Tenant": "macrea"})
        assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        service = httpx.get(
            f"{base}/api/alerts/active", headers={"X-Tenant": "macrea", "Authorization": "Bearer dev-service-key"}
        )
        assert service.status_code == 200
        # the dev outbox (every tenant's messages, unauthenticated) is the open mode's only
        assert httpx.get(f"{base}/dev/outbox").status_code == 404
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert "AUTH MODE" in output


def test_deployed_functions_are_never_open(database_url, db, monkeypatch):
    """functions/main.py, loaded by functions-framework as the cloud loads it, verifies every caller:
    every function it defines, on every route it serves, refuses a request without credentials (but
    /health and /openapi.json, which are public, and the Green-API webhook, which checks its own)."""
    import ast
    import re
    from pathlib import Path

    import functions_framework
    from leadwatch.handlers import ENDPOINTS

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SUPABASE_SERVICE_KEY", "cloud-service-key")
    source = Path(__file__).resolve().parents[1] / "functions" / "main.py"
    targets = [node.name for node in ast.parse(source.read_text()).body if isinstance(node, ast.FunctionDef)]
    assert len(targets) >= 12
    checked = []
    for target in targets:
        client = functions_framework.create_app(target=target, source=str(source)).test_client()
        for declared in (e for e in ENDPOINTS if e.group == target):
            path = re.sub(r"<[^>]+>", "00000000-0000-0000-0000-000000000001", declared.path)
            response = client.open(path, method=declared.method, headers={"X-Tenant": "macrea"}, json={})
            expected = 200 if declared.security == "public" else 401
            assert response.status_code == expected, (target, declared.method, path, response.get_json())
            checked.append(target)
    assert set(checked) == set(targets)
    alerts = functions_framework.create_app(target="alerts", source=str(source)).test_client()
    served = alerts.get(
        "/api/alerts/active", headers={"X-Tenant": "macrea", "Authorization": "Bearer cloud-service-key"}
    )
    assert served.status_code == 200 and served.get_json()["success"] is True


def test_retain_command_removes_what_is_past_its_age_batch_after_batch(postgres_store, db, database_url):
    db.execute("insert into retention_policies values ('acme', '30 days', null)")
    for days in range(40, 47):
        log(postgres_store, tenant="acme", direction="in", occurredAt=ago(days=days))
    log(postgres_store, tenant="acme", direction="in", occurredAt=ago(days=1))
    retained = subprocess.run(
        [*LEADWATCH, "retain", "--batch", "1"],
        capture_output=True,
        text=True,
        env=_env(DATABASE_URL=database_url),
        timeout=60,
    )
    assert retained.returncode == 0, retained.stderr
    removed = {"activities": 3, "alerts": 0, "events": 0, "deliveries": 0, "pushes": 0, "digests": 0}
    assert json.loads(retained.stdout) == removed, "the lead keeps its last 5 inbound"
    assert db.execute("select count(*) from lead_activities").fetchone()[0] == 5
