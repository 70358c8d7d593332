"""Log lines as Cloud Logging reads them: JSON with `severity` and `message`, one line per event."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from leadwatch import logs


@pytest.fixture
def json_logs():
    root, ours = logging.getLogger(), logging.getLogger("leadwatch")
    saved = root.handlers[:], root.level, ours.level, sys.excepthook
    logs.setup()
    yield
    root.handlers[:], level, our_level, sys.excepthook = saved
    root.setLevel(level)
    ours.setLevel(our_level)


def test_an_unhandled_error_in_a_request_is_one_json_line_with_its_traceback(json_logs, client, store, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("the store broke")

    store.list_active_alerts = broken
    capsys.readouterr()
    response = client.get("/api/alerts/active", headers={"X-Tenant": "acme", "X-Request-Id": "req-1"})
    assert response.status_code == 500
    lines = capsys.readouterr().err.strip().splitlines()
    error, request = (json.loads(line) for line in lines)
    assert error["severity"] == "ERROR" and error["request_id"] == "req-1"
    assert error["message"].startswith("unhandled error\nTraceback")
    assert "RuntimeError: the store broke" in error["message"]
    assert request["severity"] == "INFO" and request["status"] == 500 and request["route"] == "list_alerts"
    assert request["message"].startswith("GET list_alerts 500")


def test_an_uncaught_exception_is_one_critical_json_line():
    result = subprocess.run(
        [sys.executable, "-c", "from leadwatch import logs; logs.setup(); raise RuntimeError('boom')"],
        capture_output=True,
        text=True,
    )
    [line] = result.stderr.strip().splitlines()
    record = json.loads(line)
    assert record["severity"] == "CRITICAL" and "RuntimeError: boom" in record["message"]
    assert "Traceback" in record["message"]


def test_warnings_carry_their_severity(json_logs, capsys):
    logging.getLogger("leadwatch.test").warning("careful: %s", "this")
    assert json.loads(capsys.readouterr().err) == {
        "severity": "WARNING",
        "message": "careful: this",
        "logger": "leadwatch.test",
    }
