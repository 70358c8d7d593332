"""leadwatch: living alerts for sales leads, over Postgres."""

from .config import Settings, load_settings
from .errors import (
    BadRequest,
    ConfigError,
    Conflict,
    Forbidden,
    LeadwatchError,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from .http.app import Api
from .stores.store import PostgresStore, Store, SupabaseStore, make_store

__all__ = [
    "Api",
    "BadRequest",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "LeadwatchError",
    "NotFound",
    "PayloadTooLarge",
    "PostgresStore",
    "Settings",
    "Store",
    "SupabaseStore",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
    "load_settings",
    "make_store",
]
