"""The dev server: every function of `functions/main.py` on one local port, over one store."""

from __future__ import annotations

from flask import Flask, request

from .api import Api

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]


def create_app(api: Api) -> Flask:
    """A Flask app that hands every request to `api` (the handlers the cloud functions run)."""
    app = Flask("leadwatch")

    @app.route("/", defaults={"path": ""}, methods=_METHODS)
    @app.route("/<path:path>", methods=_METHODS)
    def serve(path: str):
        return api.handle(request)

    return app
