"""Configuration: read once from the environment (and `.env`), validated, immutable."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from .errors import ConfigError


@dataclass(frozen=True)
class Settings:
    supabase_url: str | None = None
    supabase_service_key: str | None = None
    supabase_jwt_secret: str | None = None   # verifies HS256 user tokens
    scheduler_token: str | None = None       # LEADWATCH_SCHEDULER_TOKEN: may run the sweep
    cors_origins: tuple[str, ...] = ()       # LEADWATCH_CORS_ORIGINS, comma-separated
    database_url: str | None = None
    greenapi_instance_id: str | None = None
    greenapi_token: str | None = None
    greenapi_api_url: str | None = None
    greenapi_webhook_token: str | None = None
    espo_url: str | None = None
    espo_api_key: str | None = None
    port: int = 8080
    db_timeout: float = 5.0        # LEADWATCH_DB_TIMEOUT: seconds to wait for a database connection
    db_pool_size: int = 5          # LEADWATCH_DB_POOL_SIZE
    max_body_bytes: int = 64 * 1024

    @property
    def backend(self) -> str:
        """'postgres' when DATABASE_URL is set, else 'supabase' when SUPABASE_URL is, else 'none'."""
        if self.database_url:
            return "postgres"
        if self.supabase_url:
            return "supabase"
        return "none"


def _number(env: Mapping[str, str], name: str, default: float, kind: type) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from `env` (default: the process environment, after loading `.env`)."""
    if env is None:
        from dotenv import load_dotenv

        load_dotenv()
        env = os.environ

    def get(name: str) -> str | None:
        return env.get(name) or None

    settings = Settings(
        supabase_url=get("SUPABASE_URL"),
        supabase_service_key=get("SUPABASE_SERVICE_KEY"),
        supabase_jwt_secret=get("SUPABASE_JWT_SECRET"),
        scheduler_token=get("LEADWATCH_SCHEDULER_TOKEN"),
        cors_origins=tuple(o.strip().rstrip("/") for o in (get("LEADWATCH_CORS_ORIGINS") or "").split(",") if o.strip()),
        database_url=get("DATABASE_URL"),
        greenapi_instance_id=get("GREENAPI_INSTANCE_ID"),
        greenapi_token=get("GREENAPI_TOKEN"),
        greenapi_api_url=get("GREENAPI_API_URL"),
        greenapi_webhook_token=get("GREENAPI_WEBHOOK_TOKEN"),
        espo_url=get("ESPO_URL"),
        espo_api_key=get("ESPO_API_KEY"),
        port=int(_number(env, "PORT", 8080, int)),
        db_timeout=float(_number(env, "LEADWATCH_DB_TIMEOUT", 5.0, float)),
        db_pool_size=int(_number(env, "LEADWATCH_DB_POOL_SIZE", 5, int)),
    )
    if settings.supabase_url and not settings.supabase_service_key and not settings.database_url:
        raise ConfigError("SUPABASE_URL is set but SUPABASE_SERVICE_KEY is missing")
    if settings.supabase_url and not settings.supabase_url.startswith(("https://", "http://")):
        raise ConfigError(f"SUPABASE_URL must start with https://, got {settings.supabase_url!r}")
    return settings


def require_backend(settings: Settings) -> Settings:
    """Fail loudly when no database is configured (the deployed functions need one)."""
    if settings.backend == "none":
        raise ConfigError(
            "No database configured: set SUPABASE_URL and SUPABASE_SERVICE_KEY, or DATABASE_URL "
            "(for a local embedded database run `leadwatch dev`)"
        )
    return settings
