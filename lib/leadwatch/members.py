"""The team directory's HTTP handlers (admins): who is told what, where, in which language and when —
and at which hour and in which time zone the tenant's morning digest is written."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Request

from .identity import Caller

if TYPE_CHECKING:
    from .api import Api


def upsert_member(request: Request, caller: Caller, api: Api) -> tuple[int, dict]:
    from .models import parse
    from .notify_models import MemberIn

    tenant = caller.require_tenant()
    member = parse(MemberIn, _json_object(request))
    return 200, {"success": True, **api.store.upsert_member(tenant, member.to_row(), caller.viewer)}


def list_members(request: Request, caller: Caller, api: Api) -> tuple[int, dict]:
    tenant = caller.require_tenant()
    return 200, {"success": True, **api.store.list_members(tenant, caller.viewer)}


def get_digest_settings(request: Request, caller: Caller, api: Api) -> tuple[int, dict]:
    tenant = caller.require_tenant()
    return 200, {"success": True, **api.store.get_digest_settings(tenant, caller.viewer)}


def put_digest_settings(request: Request, caller: Caller, api: Api) -> tuple[int, dict]:
    from .models import parse
    from .notify_models import DigestSettingsIn

    tenant = caller.require_tenant()
    body = parse(DigestSettingsIn, _json_object(request))
    return 200, {"success": True, **api.store.set_digest_settings(tenant, body.hour, body.timeZone, caller.viewer)}


def _json_object(request: Request) -> dict:
    from .api import _json_object

    return _json_object(request)
