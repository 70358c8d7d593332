"""Who is calling, decided in one place.

Today leadwatch runs open, as the reference does: the caller names its tenant with `X-Tenant`
and is trusted. This module is the seam where verified identities (Supabase Auth JWTs, the
service key, the scheduler's token) take over; handlers only ever see a `Caller`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import BadRequest

_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ANONYMOUS_ACTOR = "user_manual"  # the reference's `resolved_by` when nobody is signed in


@dataclass(frozen=True)
class Caller:
    tenant: str | None   # the tenant the caller acts in; None when it named none
    actor: str           # what `resolved_by` records

    def require_tenant(self) -> str:
        if self.tenant is None:
            raise BadRequest("the X-Tenant header is required", {"header": "X-Tenant"})
        return self.tenant


def identify(request) -> Caller:
    """The caller of `request` (open mode: `X-Tenant` is trusted)."""
    tenant = (request.headers.get("X-Tenant") or "").strip() or None
    if tenant is not None and not _TENANT.match(tenant):
        raise BadRequest(
            "X-Tenant must be 1 to 64 letters, digits, '.', '_' or '-'", {"header": "X-Tenant"}
        )
    return Caller(tenant=tenant, actor=ANONYMOUS_ACTOR)
