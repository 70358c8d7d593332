"""The dev server (gunicorn, as `leadwatch dev` runs it) against hostile clients, over raw sockets:
its own errors are our JSON, connections stay sound after early answers, stalled clients starve no one."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import httpx
import pytest
from test_cli import LEADWATCH, _env, _free_port

T1 = b"X-Tenant: t1\r\n"


@pytest.fixture(scope="module")
def server(database_url, tmp_path_factory):
    """`leadwatch dev` on a free loopback port, over the test database: (host, port)."""
    port = _free_port()
    process = subprocess.Popen(
        [*LEADWATCH, "dev", "--port", str(port), "--database-url", database_url, "--no-demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
        cwd=tmp_path_factory.getbasetemp(),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            if process.poll() is not None:
                pytest.fail(f"leadwatch dev exited: {process.stdout.read()}")
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail("leadwatch dev did not answer /health within 60 s")
    yield "127.0.0.1", port
    process.terminate()
    process.wait(timeout=30)


def connect(server, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(server, timeout=timeout)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response from `sock`: (status, headers lower-cased, body); status 0 when the server closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, {}, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def request(method: str, path: str, headers: bytes = b"", body: bytes = b"") -> bytes:
    length = f"Content-Length: {len(body)}\r\n".encode() if body else b""
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n".encode() + headers + length + b"\r\n" + body


def our_error(status: int, headers: dict, body: bytes, expected: int) -> dict:
    assert status == expected, body[:300]
    assert headers["content-type"] == "application/json"
    document = json.loads(body)
    assert document["success"] is False and document["error"]["code"] and document["error"]["message"]
    return document


# Gunicorn's own errors are our JSON -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /api/alerts/active?q=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n", 431),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400),
        (b"POST /api/leads HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    ],
    ids=[
        "request-line-414",
        "header-431",
        "header-count-431",
        "garbage-400",
        "version-400",
        "header-400",
        "length-400",
    ],
)
def test_errors_the_server_answers_itself_are_our_json(server, raw, status):
    with connect(server) as sock:
        sock.sendall(raw)
        answer = read_response(sock)
    our_error(*answer, status)
    assert answer[1]["connection"] == "close"


# Connections stay sound after early answers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "status"),
    [
        (request("POST", "/api/activities/log", T1 + b"Content-Type: application/json\r\n", b"x" * 200_000), 413),
        (request("POST", "/api/activities/log", b"Content-Type: application/json\r\n", b"x" * 100_000), 400),
        (request("POST", "/api/alerts/00000000-0000-0000-0000-00000000000x/resolve", T1, b"y" * 100_000), 404),
        (request("POST", "/api/activities/log", T1, b"{" + b" " * 70_000), 413),
        (request("POST", "/webhooks/greenapi", b"Authorization: Bearer wrong\r\n", b"w" * 100_000), 401),
    ],
    ids=["413-announced", "400-before-reading", "404-unread", "413-read", "401-before-reading"],
)
def test_after_an_early_answer_the_next_request_on_the_connection_is_answered(server, first, status):
    with connect(server) as sock:
        sock.sendall(first)
        answer = read_response(sock)
        our_error(*answer, status)
        if answer[1].get("connection") == "close":  # allowed: said, and done
            assert sock.recv(1) == b""
            return
        sock.sendall(request("GET", "/health"))
        assert read_response(sock)[0] == 200


def test_a_body_too_long_to_drain_is_answered_with_connection_close(server):
    with connect(server) as sock:
        sock.sendall(request("POST", "/api/activities/log", T1, b"z" * 3_000_000))
        status, headers, body = read_response(sock)
        our_error(status, headers, body, 413)
        assert headers["connection"] == "close"


# Stalled clients starve no one ------------------------------------------------------------------------------


def test_fifty_stalled_connections_do_not_stop_the_server_answering_others(server):
    stalled = []
    try:
        for i in range(50):
            sock = connect(server)
            if i % 3 == 1:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # headers that never end
            elif i % 3 == 2:
                sock.sendall(request("POST", "/api/leads", T1 + b"Content-Length: 1000\r\n") + b"{")  # a body
            stalled.append(sock)  # i % 3 == 0: connected, sends nothing
        time.sleep(0.5)
        for _ in range(5):  # (the timeout only keeps a starved server from hanging the test)
            response = httpx.get(f"http://{server[0]}:{server[1]}/health", timeout=30.0)
            assert response.status_code == 200
        # Answered while every stalled one was still held: not after the server gave up on them.
        for sock in stalled:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
            sock.setblocking(True)
        # And the stalled ones are dropped (answered 408 when they had begun), not kept forever.
        for sock in stalled:
            sock.settimeout(10)
        begun = stalled[1]
        status, _, body = read_response(begun)
        assert status in (0, 408) and (status == 0 or json.loads(body)["error"]["code"] == "request_timeout")
        assert stalled[0].recv(1) == b""
    finally:
        for sock in stalled:
            sock.close()


def test_a_body_that_stops_arriving_is_dropped_with_408(server):
    with connect(server) as sock:
        sock.sendall(request("POST", "/api/activities/log", T1 + b"Content-Length: 500\r\n") + b"{")
        sock.settimeout(60)  # a safety net: the server drops it long before
        status, headers, body = read_response(sock)
    our_error(status, headers, body, 408)
