"""The `members` function (admins): the team directory — who is told what, where, in which language and
when — and at which hour and in which time zone the tenant's morning digest is written."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Request

from ..http.inputs import json_object
from ..http.routes import BODY_ERRORS, endpoint

if TYPE_CHECKING:
    from ..http.identity import Caller
    from ..http.routes import Services

# Request models (pydantic) are imported at first use, not at the cold start of every function.


@endpoint("GET", "/api/members", "The team directory (admins)", "Members")
def list_members(request: Request, caller: Caller, services: Services) -> tuple[int, dict[str, Any]]:
    tenant = caller.require_tenant()
    return 200, {"success": True, **services.store.list_members(tenant, caller.viewer)}


@endpoint(
    "POST",
    "/api/members",
    "Add or replace a member of the team directory (admins)",
    "MemberOne",
    body="MemberIn",
    errors=BODY_ERRORS,
)
def upsert_member(request: Request, caller: Caller, services: Services) -> tuple[int, dict[str, Any]]:
    from ..models.notify import MemberIn
    from ..models.requests import parse

    tenant = caller.require_tenant()
    member = parse(MemberIn, json_object(request))
    return 200, {"success": True, **services.store.upsert_member(tenant, member.to_row(), caller.viewer)}


@endpoint(
    "GET",
    "/api/digest",
    "When the tenant's morning digest is written: local hour and time zone (admins)",
    "DigestSettingsOne",
)
def get_digest_settings(request: Request, caller: Caller, services: Services) -> tuple[int, dict[str, Any]]:
    tenant = caller.require_tenant()
    return 200, {"success": True, **services.store.get_digest_settings(tenant, caller.viewer)}


@endpoint(
    "PUT",
    "/api/digest",
    "Set the morning digest's local hour (0-23) and IANA time zone (admins)",
    "DigestSettingsOne",
    body="DigestSettingsIn",
    errors=BODY_ERRORS,
)
def put_digest_settings(request: Request, caller: Caller, services: Services) -> tuple[int, dict[str, Any]]:
    from ..models.notify import DigestSettingsIn
    from ..models.requests import parse

    tenant = caller.require_tenant()
    body = parse(DigestSettingsIn, json_object(request))
    return 200, {
        "success": True,
        **services.store.set_digest_settings(tenant, body.hour, body.timeZone, caller.viewer),
    }
