"""Who is calling, decided in one place: `OpenAccess` (dev only) or `VerifiedAccess` (everywhere else).

Callers of a deployed leadwatch:
- browser users: `Authorization: Bearer <Supabase Auth JWT>` — HS256 with SUPABASE_JWT_SECRET, or an
  asymmetric key from the project's JWKS; signature, `exp` and `aud` ("authenticated") checked.
  Tenant and role come from `app_metadata` (never `user_metadata`).
- servers (the CRM backend): the service key — SUPABASE_SERVICE_KEY itself, or a verified
  `service_role` JWT — naming the tenant with `X-Tenant`.
- the scheduler: LEADWATCH_SCHEDULER_TOKEN, as the bearer or in `X-Scheduler-Token` (when the
  platform's IAM token occupies `Authorization`); it may only run the sweep.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..errors import BadRequest, ConfigError, Forbidden, Unauthorized, Unavailable

if TYPE_CHECKING:
    import jwt
    from flask import Request

ROLES = ("platform_admin", "admin", "manager", "agent")
ANONYMOUS_ACTOR = "user_manual"  # the reference's `resolved_by` when nobody is signed in
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ASYMMETRIC = ("RS256", "ES256", "EdDSA")


@dataclass(frozen=True)
class Viewer:
    """A signed-in user as the database sees them: their claims (row-level security) and token."""

    claims: Mapping[str, Any]
    token: str


@dataclass(frozen=True)
class Caller:
    kind: str  # "user", "service", "scheduler" or "open" (dev)
    tenant: str | None  # the tenant the caller acts in
    user_id: str | None = None
    role: str | None = None
    viewer: Viewer | None = field(default=None, repr=False)

    @property
    def actor(self) -> str:
        """What `resolved_by` records."""
        return self.user_id or (ANONYMOUS_ACTOR if self.kind == "open" else self.kind)

    def require_tenant(self) -> str:
        if self.tenant is None:
            raise BadRequest("the X-Tenant header is required", {"header": "X-Tenant"})
        return self.tenant


def _named_tenant(request: Request) -> str | None:
    tenant = (request.headers.get("X-Tenant") or "").strip() or None
    if tenant is not None and not _TENANT.match(tenant):
        raise BadRequest("X-Tenant must be 1 to 64 letters, digits, '.', '_' or '-'", {"header": "X-Tenant"})
    return tenant


class OpenAccess:
    """The reference's model, for `leadwatch dev` on a loopback address only: X-Tenant is trusted."""

    open = True

    def identify(self, request: Request) -> Caller:
        return Caller(kind="open", tenant=_named_tenant(request))


class _Jwks:
    """The Supabase project's signing keys, fetched with httpx and cached."""

    def __init__(self, url: str, ttl: float = 600.0, min_refresh: float = 30.0) -> None:
        self._url, self._ttl, self._min_refresh = url, ttl, min_refresh
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched = 0.0
        self._lock = threading.Lock()

    def key(self, kid: str | None) -> jwt.PyJWK:
        with self._lock:
            now = time.monotonic()
            stale = now - self._fetched > self._ttl
            unknown = kid not in self._keys and now - self._fetched > self._min_refresh
            if stale or unknown:
                self._fetch()
            if kid not in self._keys:
                raise Unauthorized("the token is signed with an unknown key")
            return self._keys[kid]

    def _fetch(self) -> None:
        import httpx
        import jwt

        try:
            response = httpx.get(self._url, timeout=5.0)
            response.raise_for_status()
            keys = jwt.PyJWKSet.from_dict(response.json()).keys
        except (httpx.HTTPError, ValueError, jwt.PyJWTError):
            raise Unavailable("cannot fetch the signing keys of Supabase Auth, retry shortly") from None
        self._keys = {k.key_id: k for k in keys if k.key_id}
        self._fetched = time.monotonic()


class VerifiedAccess:
    """What the cloud enforces: every caller proves who it is."""

    open = False

    def __init__(self, settings: Settings) -> None:
        if not (
            settings.supabase_jwt_secret
            or settings.supabase_url
            or settings.supabase_service_key
            or settings.scheduler_token
        ):
            raise ConfigError(
                "no way to verify callers: set SUPABASE_JWT_SECRET or SUPABASE_URL (users), "
                "SUPABASE_SERVICE_KEY (servers) or LEADWATCH_SCHEDULER_TOKEN (the scheduler)"
            )
        self._settings = settings
        self._jwks = _Jwks(f"{settings.supabase_url}/auth/v1/.well-known/jwks.json") if settings.supabase_url else None

    def identify(self, request: Request) -> Caller:
        scheduler_header = request.headers.get("X-Scheduler-Token")
        if scheduler_header and self._matches(scheduler_header, self._settings.scheduler_token):
            return Caller(kind="scheduler", tenant=_named_tenant(request))
        token = _bearer(request)
        if self._matches(token, self._settings.supabase_service_key):
            return Caller(kind="service", tenant=_named_tenant(request))
        if self._matches(token, self._settings.scheduler_token):
            return Caller(kind="scheduler", tenant=_named_tenant(request))
        claims = self._verify(token)
        if claims.get("role") == "service_role":
            return Caller(kind="service", tenant=_named_tenant(request))
        return _user(claims, token, _named_tenant(request))

    @staticmethod
    def _matches(given: str | None, expected: str | None) -> bool:
        return bool(given and expected) and hmac.compare_digest(str(given).encode(), str(expected).encode())

    def _verify(self, token: str) -> dict[str, Any]:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the bearer token is not a JWT") from None
        alg = header.get("alg")
        if alg == "HS256" and self._settings.supabase_jwt_secret:
            key: Any = self._settings.supabase_jwt_secret
        elif alg in _ASYMMETRIC and self._jwks is not None:
            key = self._jwks.key(header.get("kid"))
        else:
            raise Unauthorized(f"tokens signed with {alg!r} are not accepted")
        try:
            claims = jwt.decode(token, key, algorithms=[alg], options={"require": ["exp"], "verify_aud": False})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("the token's signature or claims are invalid") from None
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if claims.get("role") != "service_role" and "authenticated" not in audiences:
            raise Unauthorized("the token is not meant for signed-in users (aud)")
        return claims


def _bearer(request: Request) -> str:
    header = request.headers.get("Authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("sign in: send Authorization: Bearer <token>")
    return token.strip()


def _user(claims: Mapping[str, Any], token: str, named: str | None) -> Caller:
    """A signed-in user: tenant and role from app_metadata, checked against X-Tenant."""
    metadata = claims.get("app_metadata")
    app: dict[str, Any] = metadata if isinstance(metadata, dict) else {}
    role, own_tenant, user_id = app.get("role"), app.get("tenant_id"), claims.get("sub")
    if role not in ROLES:
        raise Forbidden("your account has no leadwatch role (app_metadata.role)")
    if not user_id:
        raise Unauthorized("the token names no user (sub)")
    if role == "platform_admin":
        tenant = named or own_tenant
    elif not own_tenant:
        raise Forbidden("your account belongs to no tenant (app_metadata.tenant_id)")
    elif named and named != own_tenant:
        raise Forbidden("X-Tenant is not your tenant")
    else:
        tenant = own_tenant
    viewer = Viewer(claims={**claims, "role": "authenticated"}, token=token)
    return Caller(kind="user", tenant=tenant, user_id=str(user_id), role=role, viewer=viewer)
