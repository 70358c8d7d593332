"""First run and failure messages: one clear line naming the problem and the fix, exit 2, no traceback;
`leadwatch dev` says where its database is and logs each request as Cloud Logging reads it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid

import httpx
import psycopg
import pytest
from helpers import free_port

LEADWATCH = [sys.executable, "-m", "leadwatch.cli"]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_KEY")}
    return {**env, **extra}


def _fails_in_one_line(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    [line] = result.stderr.strip().splitlines()
    for word in words:
        assert word in line, line
    return line


def test_busy_port_is_found_before_postgres_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*LEADWATCH, "dev", "--port", str(port), "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
        )
    _fails_in_one_line(result, f"port {port}", "--port")
    assert not (tmp_path / "data").exists(), "PostgreSQL was started before the port was checked"


def test_non_empty_data_dir_is_refused(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("mine")
    result = subprocess.run(
        [*LEADWATCH, "dev", "--port", str(free_port()), "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    _fails_in_one_line(result, str(tmp_path / "data"), "not empty", "new or empty folder")
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["notes.txt"]


def test_unwritable_data_dir_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    result = subprocess.run(
        [*LEADWATCH, "dev", "--port", str(free_port()), "--data-dir", str(tmp_path / "file" / "data")],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    _fails_in_one_line(result, "not writable", "pass a folder you can write to")


@pytest.mark.parametrize(
    ("command", "url", "words"),
    [
        (["migrate"], "not a database url", ("malformed", "postgresql://USER:PASSWORD@HOST:PORT/DATABASE")),
        (["migrate"], "postgresql://postgres@127.0.0.1:1/leadwatch", ("cannot reach the database at 127.0.0.1:1",)),
        (["sweep"], "postgresql://postgres@127.0.0.1:1/leadwatch", ("cannot reach the database",)),
        (["dev", "--no-demo", "--port", "0"], "postgresql://postgres@127.0.0.1:1/leadwatch", ("cannot reach",)),
    ],
    ids=["migrate-malformed", "migrate-unreachable", "sweep-unreachable", "dev-unreachable"],
)
def test_bad_database_url_is_one_clear_line(command, url, words):
    result = subprocess.run(
        [*LEADWATCH, *command], capture_output=True, text=True, env=_env(DATABASE_URL=url), timeout=60
    )
    line = _fails_in_one_line(result, *words)
    assert "DATABASE_URL" in line


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    """`leadwatch dev --auth` on its embedded database, its output in a file read while it runs."""
    port = free_port()
    root = tmp_path_factory.mktemp("first-run")
    output = (root / "output").open("w")
    env = _env(SUPABASE_SERVICE_KEY="first-run-service-key", LEADWATCH_SCHEDULER_TOKEN="first-run-scheduler")
    process = subprocess.Popen(
        [*LEADWATCH, "dev", "--auth", "--port", str(port), "--data-dir", str(root / "data")],
        stdout=output,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=root,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            httpx.get(f"{base}/health", timeout=1)
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail((root / "output").read_text())
            time.sleep(0.3)
    yield base, root / "output"
    process.terminate()
    process.wait(timeout=30)
    output.close()


def test_dev_prints_the_embedded_database_url(dev):
    _, output = dev
    [line] = [line for line in output.read_text().splitlines() if line.startswith("Embedded PostgreSQL: ")]
    url = line.removeprefix("Embedded PostgreSQL: ").split()[0]
    with psycopg.connect(url) as conn:
        assert conn.execute("select count(*) from leads where tenant_id = 'macrea'").fetchone()[0] == 6


def test_dev_logs_one_json_line_per_request_with_cloud_logging_severity(dev):
    base, output = dev
    ids = [uuid.uuid4().hex for _ in range(3)]
    httpx.get(f"{base}/health", headers={"X-Request-Id": ids[0]})
    httpx.get(f"{base}/api/alerts/active", headers={"X-Request-Id": ids[1], "X-Tenant": "macrea"})  # 401
    httpx.get(f"{base}/nowhere", headers={"X-Request-Id": ids[2]})
    time.sleep(0.3)
    lines = [json.loads(line) for line in output.read_text().splitlines() if line.startswith("{")]
    logged = {line["request_id"]: line for line in lines if line.get("request_id") in ids}
    assert sorted(logged) == sorted(ids)
    assert [sum(line.get("request_id") == i for line in lines) for i in ids] == [1, 1, 1]
    assert logged[ids[0]]["severity"] == "INFO" and logged[ids[0]]["message"].startswith("GET health 200")
    assert logged[ids[1]]["status"] == 401 and logged[ids[2]]["status"] == 404


def test_smoke_runs_the_checklist_against_leadwatch_dev(dev):
    base, _ = dev
    result = subprocess.run(
        [*LEADWATCH, "smoke", base, "--token", "first-run-service-key"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["ok", "health"],
        ["ok", "list"],
        ["ok", "log"],
        ["ok", "sweep"],
        ["ok", "resolve"],
        ["ok", "clean"],
    ]
    assert "leadwatch-smoke" in lines[1] and "test_deploy_" in lines[2]


def test_smoke_stops_at_the_first_failure(dev):
    base, _ = dev
    result = subprocess.run(
        [*LEADWATCH, "smoke", base, "--token", "not-the-key"], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [["ok", "health"], ["FAIL", "list"]]
    assert "401" in lines[1]
