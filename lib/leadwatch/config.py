"""Configuration: read once from the environment (and `.env`), validated, immutable."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .errors import ConfigError

GREENAPI_DEFAULT_URL = "https://api.green-api.com"


@dataclass(frozen=True)
class GreenApiInstance:
    """One Green-API WhatsApp instance and the tenant whose messages it carries."""

    id: str
    token: str = ""
    api_url: str = GREENAPI_DEFAULT_URL
    webhook_token: str = ""
    tenant: str = ""


@dataclass(frozen=True)
class Settings:
    supabase_url: str | None = None
    supabase_service_key: str | None = None
    supabase_jwt_secret: str | None = None  # verifies HS256 user tokens
    scheduler_token: str | None = None  # LEADWATCH_SCHEDULER_TOKEN: may run the sweep
    cors_origins: tuple[str, ...] = ()  # LEADWATCH_CORS_ORIGINS, comma-separated
    database_url: str | None = None
    espo_url: str | None = None
    espo_api_key: str | None = None
    greenapi_instances: tuple[GreenApiInstance, ...] = ()
    port: int = 8080
    db_timeout: float = 5.0  # LEADWATCH_DB_TIMEOUT: seconds to wait for a database connection
    db_pool_size: int = 5  # LEADWATCH_DB_POOL_SIZE
    # LEADWATCH_WEBHOOK_ALLOWED_NETWORKS, comma-separated CIDRs: non-public networks webhooks may be sent to
    webhook_allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    smtp_url: str | None = None  # LEADWATCH_SMTP_URL: the server emails leave through (see email_out)
    email_from: str | None = None  # LEADWATCH_EMAIL_FROM: their From, unless the tenant has its own
    email_webhook_tokens: tuple[tuple[str, str], ...] = ()  # LEADWATCH_EMAIL_WEBHOOK_TOKENS: (tenant, token)

    @property
    def backend(self) -> str:
        """'postgres' when DATABASE_URL is set, else 'supabase' when SUPABASE_URL is, else 'none'."""
        if self.database_url:
            return "postgres"
        if self.supabase_url:
            return "supabase"
        return "none"


def _number(env: Mapping[str, str], name: str, default: float, kind: type[int] | type[float]) -> float:
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


def _networks(env: Mapping[str, str], name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A comma-separated list of networks in CIDR notation ("10.20.0.0/16, fd00::/8"; an address alone is /32
    or /128); a malformed one, or one with host bits set, fails naming the variable."""
    networks = []
    for item in (env.get(name) or "").split(","):
        if not item.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(item.strip()))
        except ValueError as exc:
            raise ConfigError(
                f"{name} must list networks in CIDR notation (10.20.0.0/16), got {item.strip()!r}: {exc}"
            ) from None
    return tuple(networks)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from `env` (default: the process environment, after loading `.env`)."""
    if env is None:
        from dotenv import load_dotenv

        load_dotenv()
        env = os.environ

    def get(name: str) -> str | None:
        return env.get(name) or None

    settings = Settings(
        greenapi_instances=_greenapi_instances(get),
        supabase_url=get("SUPABASE_URL"),
        supabase_service_key=get("SUPABASE_SERVICE_KEY"),
        supabase_jwt_secret=get("SUPABASE_JWT_SECRET"),
        scheduler_token=get("LEADWATCH_SCHEDULER_TOKEN"),
        cors_origins=tuple(
            o.strip().rstrip("/") for o in (get("LEADWATCH_CORS_ORIGINS") or "").split(",") if o.strip()
        ),
        database_url=get("DATABASE_URL"),
        espo_url=get("ESPO_URL"),
        espo_api_key=get("ESPO_API_KEY"),
        port=int(_number(env, "PORT", 8080, int)),
        db_timeout=float(_number(env, "LEADWATCH_DB_TIMEOUT", 5.0, float)),
        db_pool_size=int(_number(env, "LEADWATCH_DB_POOL_SIZE", 5, int)),
        webhook_allowed_networks=_networks(env, "LEADWATCH_WEBHOOK_ALLOWED_NETWORKS"),
        smtp_url=get("LEADWATCH_SMTP_URL"),
        email_from=get("LEADWATCH_EMAIL_FROM"),
        email_webhook_tokens=_email_webhook_tokens(get("LEADWATCH_EMAIL_WEBHOOK_TOKENS")),
    )
    _check_email(settings)
    if settings.supabase_url and not settings.supabase_service_key and not settings.database_url:
        raise ConfigError("SUPABASE_URL is set but SUPABASE_SERVICE_KEY is missing")
    if bool(settings.espo_url) != bool(settings.espo_api_key):
        raise ConfigError("ESPO_URL and ESPO_API_KEY go together: set both to look numbers up in EspoCRM, or neither")
    if settings.supabase_url and not settings.supabase_url.startswith(("https://", "http://")):
        raise ConfigError(f"SUPABASE_URL must start with https://, got {settings.supabase_url!r}")
    return settings


def _check_email(settings: Settings) -> None:
    """The SMTP URL and From address parse (ConfigError naming the variable), and go together."""
    from .integrations.email_out import parse_from_address, parse_smtp_url

    if settings.smtp_url:
        parse_smtp_url(settings.smtp_url)
        if not settings.email_from:
            raise ConfigError("LEADWATCH_SMTP_URL is set but LEADWATCH_EMAIL_FROM is missing (the From of the emails)")
    if settings.email_from:
        parse_from_address(settings.email_from)


def _email_webhook_tokens(raw: str | None) -> tuple[tuple[str, str], ...]:
    """`tenant:token,...` → ((tenant, token), ...); ConfigError naming LEADWATCH_EMAIL_WEBHOOK_TOKENS."""
    name = "LEADWATCH_EMAIL_WEBHOOK_TOKENS"
    pairs = []
    for n, item in enumerate(part.strip() for part in (raw or "").split(",") if part.strip()):
        tenant, _, token = item.partition(":")
        if not tenant.strip() or len(token.strip()) < 16:
            raise ConfigError(f"{name}[{n}] must be tenant:token with a token of at least 16 characters")
        pairs.append((tenant.strip(), token.strip()))
    if len({token for _, token in pairs}) != len(pairs):
        raise ConfigError(f"{name} gives one token to two tenants: each tenant needs its own")
    return tuple(pairs)


def require_backend(settings: Settings) -> Settings:
    """Fail loudly when no database is configured (the deployed functions need one)."""
    if settings.backend == "none":
        raise ConfigError(
            "No database configured: set SUPABASE_URL and SUPABASE_SERVICE_KEY, or DATABASE_URL "
            "(for a local embedded database run `leadwatch dev`)"
        )
    return settings


_INSTANCE_FIELDS = {
    "instanceId": "id",
    "token": "token",
    "apiUrl": "api_url",
    "webhookToken": "webhook_token",
    "tenant": "tenant",
}


def _greenapi_instances(get: Callable[[str], str | None]) -> tuple[GreenApiInstance, ...]:
    """The instances of LEADWATCH_GREENAPI_INSTANCES (a JSON list), or the one of the GREENAPI_* variables."""
    raw = get("LEADWATCH_GREENAPI_INSTANCES")
    if raw:
        name = "LEADWATCH_GREENAPI_INSTANCES"
        try:
            items = json.loads(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a JSON list of objects") from None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ConfigError(f"{name} must be a JSON list of objects")
        instances = []
        for n, item in enumerate(items):
            unknown = set(item) - set(_INSTANCE_FIELDS)
            if unknown:
                raise ConfigError(
                    f"{name}[{n}] has unknown fields {sorted(unknown)}; known: {sorted(_INSTANCE_FIELDS)}"
                )
            fields = {_INSTANCE_FIELDS[k]: str(v) for k, v in item.items() if v not in (None, "")}
            instances.append(
                _instance(
                    fields,
                    f"{name}[{n}].",
                    {"id": "instanceId", "token": "token", "webhook_token": "webhookToken", "tenant": "tenant"},
                )
            )
        return tuple(instances)
    if not get("GREENAPI_INSTANCE_ID"):
        return ()
    variables = {
        "id": get("GREENAPI_INSTANCE_ID"),
        "token": get("GREENAPI_TOKEN"),
        "api_url": get("GREENAPI_API_URL"),
        "webhook_token": get("GREENAPI_WEBHOOK_TOKEN"),
        "tenant": get("LEADWATCH_GREENAPI_TENANT"),
    }
    return (
        _instance(
            {k: v for k, v in variables.items() if v},
            "",
            {
                "id": "GREENAPI_INSTANCE_ID",
                "token": "GREENAPI_TOKEN",
                "webhook_token": "GREENAPI_WEBHOOK_TOKEN",
                "tenant": "LEADWATCH_GREENAPI_TENANT",
            },
        ),
    )


def _instance(fields: dict[str, str], prefix: str, names: dict[str, str]) -> GreenApiInstance:
    for field, name in names.items():
        if not fields.get(field):
            raise ConfigError(
                f"{prefix}{name} is missing: each Green-API instance needs an id, a token, a webhook token and a tenant"
            )
    fields["api_url"] = fields.get("api_url", GREENAPI_DEFAULT_URL).rstrip("/")
    return GreenApiInstance(**fields)
