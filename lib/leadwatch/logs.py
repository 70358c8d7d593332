"""Log lines as Cloud Logging reads them: one JSON object per line with `severity` and `message`.

A request's line (http/app.py logs its fields as a JSON object) keeps those fields at the top level, so
they become searchable `jsonPayload` fields; an error's traceback stays inside its one line, where
Error Reporting finds it.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from types import TracebackType
from typing import Any, TextIO

# Attributes every LogRecord has; anything else was passed with `extra=` and is worth keeping.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        fields: dict[str, Any] = {}
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                fields, text = parsed, _summary(parsed)
        fields.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            text = f"{text}\n{''.join(traceback.format_exception(*record.exc_info)).rstrip()}"
        line = {"severity": _severity(record.levelno), "message": text, "logger": record.name, **fields}
        return json.dumps(line, default=str, ensure_ascii=False)


def _severity(level: int) -> str:
    for floor, name in ((50, "CRITICAL"), (40, "ERROR"), (30, "WARNING"), (20, "INFO")):
        if level >= floor:
            return name
    return "DEBUG"


def _summary(fields: dict[str, Any]) -> str:
    """A request's fields read as one short sentence: `POST log_activity 200 12.3 ms`."""
    if "method" in fields and "status" in fields:
        return f"{fields['method']} {fields.get('route') or '-'} {fields['status']} {fields.get('latency_ms', '?')} ms"
    return str(fields.get("message", ""))


class _Stderr(logging.StreamHandler[TextIO]):
    """Writes to whatever sys.stderr is when a line is logged (a test, a server, may replace it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def setup(level: int = logging.INFO) -> None:
    """Every log line of this process as JSON on stderr; an uncaught exception as one such line too."""
    handler = _Stderr()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.WARNING))  # other libraries: warnings and errors only
    logging.getLogger("leadwatch").setLevel(level)

    def excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        logging.getLogger("leadwatch").critical("uncaught exception", exc_info=(kind, value, tb))

    sys.excepthook = excepthook
