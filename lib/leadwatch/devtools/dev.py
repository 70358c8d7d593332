"""The dev server: every function of `functions/main.py` on one local port, over one store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask, Response, request, send_from_directory
from werkzeug.exceptions import HTTPException

from ..http.app import Api

_WEB = Path(__file__).parent.parent / "web"
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]


def create_app(api: Api) -> Flask:
    """A Flask app that hands every request to `api` (the handlers the cloud functions run), but for
    the dashboard page at `GET /` and the widget's files at `GET /widget/<file>` (dev only)."""
    from .widget import pages

    app = Flask("leadwatch")
    app.register_blueprint(pages)
    outbox = api.outbox

    if outbox is not None:

        @app.get("/dev/outbox")
        def dev_outbox() -> tuple[dict[str, Any], int, dict[str, str]]:
            """What the dev outbox kept instead of sending (newest first): the dev page's panel."""
            messages = [m.to_json() for m in outbox.messages()]
            return {"success": True, "messages": messages}, 200, {"Cache-Control": "no-store"}

    @app.route("/", defaults={"path": ""}, methods=[m for m in _METHODS if m not in ("GET", "HEAD")])
    @app.route("/<path:path>", methods=_METHODS)
    def serve(path: str) -> Response:
        return api.handle(request)

    @app.get("/docs")
    def docs() -> Response:
        """A readable page of the API description (/openapi.json), drawn by the vendored Redoc."""
        return send_from_directory(_WEB, "docs.html")

    @app.get("/docs/vendor/redoc/redoc.standalone.js")
    def docs_viewer() -> Response:
        return send_from_directory(_WEB / "vendor" / "redoc", "redoc.standalone.js", mimetype="text/javascript")

    @app.errorhandler(HTTPException)
    def unrouted(exc: HTTPException) -> Response:
        """What Flask's catch-all does not match (a newline in the path, an unusual method) is the Api's
        to answer too: our JSON, never Flask's HTML page."""
        return api.handle(request)

    return app


# What functions-framework gives a deployed function: one worker process, four threads per core.
THREADS = (os.cpu_count() or 1) * 4


def serve(app: Flask, host: str, port: int, *, threads: int = THREADS) -> None:
    """Serve `app` the way functions-framework serves a deployed function: gunicorn, one worker
    process with `threads` threads, kept-alive connections — with the worker of server.py, which stands
    stalled clients and answers gunicorn's own errors in JSON, as the platform's front end would.
    Stopped (SIGINT or SIGTERM), it exits the process (SystemExit), so exit handlers such as the
    embedded database's run. Without gunicorn (Windows), Flask's own threaded server.

    The worker is a forked process: open no database connection in this one before calling this.
    """
    try:
        from gunicorn.app.base import BaseApplication
    except ImportError:  # pragma: no cover - gunicorn is installed wherever fork exists
        from werkzeug.serving import run_simple

        run_simple(host, port, app, threaded=True, use_reloader=False)
        return

    class Server(BaseApplication):
        def load_config(self) -> None:
            for name, value in {
                "bind": f"{host}:{port}",
                "workers": 1,
                "threads": threads,
                "timeout": 0,
                "graceful_timeout": 5,
                "loglevel": "error",
                # Hostile clients: requests buffered before a thread takes them, stalled ones dropped,
                # gunicorn's own errors as our JSON (server.py). Request line up to 4 KiB, as gunicorn's default.
                "worker_class": "leadwatch.devtools.server.Worker",
                "limit_request_line": 4094,
            }.items():
                self.cfg.set(name, value)

        def load(self) -> Flask:
            return app

    Server().run()
