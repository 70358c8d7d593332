"""The dev server's gunicorn worker: functions-framework's (gthread, one process, threads), made to
stand hostile clients the way the platform's front end makes a deployed function stand them.

- A connection reaches a thread only once its request has arrived: its head, and its announced
  body up to BUFFER_BYTES, are read by the worker's event loop. A client that stalls (or trickles)
  holds no thread, and is dropped, answered 408, after HEAD_TIMEOUT.
- Whatever a thread still reads from the socket times out after READ_TIMEOUT.
- An answer carrying `Connection: close` closes the connection (gunicorn drops the header).
- What gunicorn answers itself before any handler runs — request line too long (414), headers too
  large (431), malformed HTTP (400) — is leadwatch's JSON error, not gunicorn's HTML page.

Deployed functions are not served by this: Cloud Run's front end buffers each request before
it reaches the instance (README, "Hostile input").
"""

from __future__ import annotations

import contextlib
import json
import re
import selectors
import socket
import time
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

HEAD_TIMEOUT = 5.0  # seconds for a request (head and buffered body) to arrive
READ_TIMEOUT = 5.0  # seconds a thread waits for the next bytes of a body it reads itself
BUFFER_BYTES = 1024 * 1024 + 64 * 1024  # the largest body leadwatch reads (a Green-API notification) and a head
_HEAD_END = b"\r\n\r\n"
_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]{1,12})[ \t]*\r\n", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r\n]*chunked", re.IGNORECASE)
_CODES = {400: "bad_request", 403: "forbidden", 408: "request_timeout", 414: "uri_too_long", 417: "bad_request"}
_CODES |= {431: "headers_too_large", 500: "internal_error", 501: "not_implemented"}


def json_error(status: int, reason: str, message: str) -> bytes:
    """A complete HTTP response carrying leadwatch's error JSON, closing the connection."""
    code = _CODES.get(status, "bad_request")
    body = json.dumps({"success": False, "error": {"code": code, "message": message or reason, "details": None}})
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Cache-Control: no-store\r\nContent-Length: {len(body.encode())}\r\n\r\n"
    )
    return head.encode("latin-1") + body.encode()


def _write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    util.write_nonblock(sock, json_error(status_int, reason, mesg[:300]))


def arrived(buffer: bytes | bytearray) -> bool:
    """Has the request in `buffer` arrived: its head, and its body up to BUFFER_BYTES?"""
    if len(buffer) >= BUFFER_BYTES:
        return True
    end = buffer.find(_HEAD_END)
    if end < 0:
        return False
    head = bytes(buffer[: end + 2])
    if _CHUNKED.search(head):  # up to the last chunk; should this guess early, a thread reads on (READ_TIMEOUT)
        return buffer.find(b"0\r\n\r\n", end + 4) >= 0
    length = _LENGTH.search(head)
    return length is None or len(buffer) - end - 4 >= int(length.group(1))


class Worker(ThreadWorker):
    def init_process(self) -> None:
        util.write_error = _write_json_error  # gunicorn's own error answers (414, 431, 400), as our JSON
        self.arriving: list[Any] = []  # connections whose request is still arriving
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi: Any = _sound_connections(self.wsgi)

    # A request reaches a thread only once it has arrived -----------------------------------------

    def enqueue_req(self, conn: Any) -> None:
        parser = getattr(conn, "parser", None)
        if getattr(conn, "leadwatch_arrived", False) or (parser is not None and parser.unreader.buf.getvalue()):
            conn.leadwatch_arrived = False
            super().enqueue_req(conn)
            return
        conn.leadwatch_buffer = bytearray()
        conn.leadwatch_deadline = time.monotonic() + HEAD_TIMEOUT
        conn.sock.setblocking(False)
        self.arriving.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._receive, conn))

    def _receive(self, conn: Any, sock: Any) -> None:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.leadwatch_buffer += data
        if data and not arrived(conn.leadwatch_buffer):
            return
        self._stop_waiting(conn)
        if not conn.leadwatch_buffer:  # the client left without sending anything
            self.nr_conns -= 1
            conn.close()
            return
        conn.leadwatch_arrived, conn.data_ready = True, True
        conn.leadwatch_pending = bytes(conn.leadwatch_buffer)
        conn.leadwatch_buffer = bytearray()
        super().enqueue_req(conn)

    def _stop_waiting(self, conn: Any) -> None:
        self.arriving.remove(conn)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def murder_pending(self) -> None:
        """Also drop the connections whose request did not arrive in time (408 if it had begun)."""
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c in self.arriving if c.leadwatch_deadline <= now]:
            self._stop_waiting(conn)
            if conn.leadwatch_buffer:
                with contextlib.suppress(OSError):
                    conn.sock.send(json_error(408, "Request Timeout", "the request did not arrive in time"))
            self.nr_conns -= 1
            conn.close()

    def handle(self, conn: Any) -> Any:
        pending = conn.__dict__.pop("leadwatch_pending", None)
        if pending:
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(pending)
        return super().handle(conn)


def _sound_connections(app: Any) -> Any:
    """The app, with a read timeout on the socket, and `Connection: close` from it obeyed."""

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        sock = environ.get("gunicorn.socket")
        if isinstance(sock, socket.socket):
            sock.settimeout(READ_TIMEOUT)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if any(k.lower() == "connection" and v.lower() == "close" for k, v in headers):
                gunicorn_response = getattr(start_response, "__self__", None)  # the bound Response.start_response
                if gunicorn_response is not None:
                    gunicorn_response.force_close()
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return wsgi
