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
    "Settings",
    "load_settings",
    "Store",
    "PostgresStore",
    "SupabaseStore",
    "make_store",
    "LeadwatchError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "ValidationFailed",
    "Unavailable",
    "ConfigError",
]
