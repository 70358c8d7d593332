"""The dashboard widget's files for the dev server: the page at `/` and the package's `web/` folder at
`/widget/<file>`. Deployed functions do not serve them: a frontend hosts the element itself."""

from __future__ import annotations

from importlib.resources import files
from pathlib import PurePosixPath

from flask import Blueprint, Response, abort

WEB = files("leadwatch") / "web"

# What the dev server serves, by suffix; anything else under web/ is not served.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}

# The page and the widget load nothing from elsewhere: scripts, data and styles come from this server.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

pages = Blueprint("widget", __name__)


def _file(name: str) -> Response:
    parts = PurePosixPath(name).parts
    content_type = CONTENT_TYPES.get(PurePosixPath(name).suffix)
    if not parts or content_type is None or any(p in ("..", "") or p.startswith(".") for p in parts):
        abort(404)
    resource = WEB.joinpath(*parts)
    if not resource.is_file():
        abort(404)
    response = Response(resource.read_bytes(), content_type=content_type)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-cache"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


@pages.get("/", provide_automatic_options=False)
def index() -> Response:
    """The dev page: the alerts widget and the analytics panel over the dev data."""
    return _file("index.html")


@pages.get("/widget/<path:name>", provide_automatic_options=False)
def widget_file(name: str) -> Response:
    return _file(name)
