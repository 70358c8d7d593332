"""JSON and text that PostgreSQL can store: parsed with bounds, checked for what it refuses.

PostgreSQL stores no NUL character (in text or jsonb) and no lone UTF-16 surrogate, and JSON has
no NaN or Infinity; Python's `json` accepts all three. Deep nesting exhausts the parser's stack.
So every body is read by `load_json`, and every value a model receives goes through `problem`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 32  # arrays and objects inside one another
MAX_KEYS = 1000  # members of one object
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class JsonProblem(ValueError):
    """What is wrong with a value, and where (`field`: `meta.note`, `leads[0].name`, or "body")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def bad_text(text: str) -> str | None:
    """Why PostgreSQL could not store `text`, or None when it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    return "must not contain NUL characters" if found.group() == "\x00" else "must not contain lone surrogates"


def clean_text(text: str) -> str:
    """`text` without NUL characters, its lone surrogates replaced by U+FFFD."""
    return _UNSTORABLE.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", text)


def clean(value: Any) -> Any:
    """`value` (parsed JSON) with every string and key cleaned as `clean_text` does."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k): clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def problem(value: Any, field: str = "body") -> JsonProblem | None:
    """The first thing in `value` PostgreSQL or JSON could not hold: unstorable text, a number that
    is not finite, nesting deeper than MAX_DEPTH, an object of more than MAX_KEYS members."""
    stack: list[tuple[Any, str, int]] = [(value, field, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            reason = bad_text(item)
            if reason:
                return JsonProblem(where, reason)
        elif isinstance(item, float):
            if not math.isfinite(item):
                return JsonProblem(where, "must be a finite number")
        elif isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                return JsonProblem(where, f"is nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                if len(item) > MAX_KEYS:
                    return JsonProblem(where, f"has more than {MAX_KEYS} members")
                for key, member in item.items():
                    if not isinstance(key, str) or bad_text(key):
                        return JsonProblem(where, "has a member name that is not storable text")
                    stack.append((member, key if where == "body" else f"{where}.{key}", depth + 1))
            else:
                stack.extend((member, f"{where}[{i}]", depth + 1) for i, member in enumerate(item))
    return None


def load_json(raw: bytes | str) -> Any:
    """Parse `raw`; ValueError when it is not JSON (or nests beyond what the parser can follow),
    JsonProblem (a ValueError) when it is JSON that leadwatch does not store."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    found = problem(value)
    if found:
        raise found
    return value
