"""The stores: leadwatch's operations, each one call to one SQL function in supabase/migrations/.

`Store` holds the operations and builds each call; `PostgresStore` (psycopg) and `SupabaseStore`
(supabase-py RPC, i.e. PostgREST) only differ in how they reach the database, so they behave the
same by construction — and the shared test suite checks that they do.
"""

from __future__ import annotations

import functools
import json
import threading
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, cast

from ..config import Settings, require_backend
from ..errors import Conflict, Forbidden, LeadwatchError, NotFound, Unauthorized, Unavailable, ValidationFailed
from .cursor import encode_cursor

if TYPE_CHECKING:  # pydantic models: imported by the handlers at first use, not at cold start
    from ..http.identity import Viewer
    from ..integrations.email_in import InboundEmail
    from ..integrations.greenapi import WhatsAppActivity
    from ..models.analytics import AnalyticsQuery
    from ..models.desk import LeadAlertsQuery, RuleIn
    from ..models.exports import ActivityExportQuery, AlertExportQuery
    from ..models.requests import ActivityIn, AlertQuery, ErasuresQuery, LeadIn, RejectedQuery, TimelineQuery

if TYPE_CHECKING:  # the database clients: imported at the first call, by the store the configuration chose
    from contextlib import AbstractContextManager

    import psycopg
    from postgrest import SyncPostgrestClient
    from psycopg_pool import ConnectionPool
    from supabase import Client

_ERRORS: dict[str, type[LeadwatchError]] = {
    "LW404": NotFound,
    "LW403": Forbidden,
    "LW409": Conflict,
    "LW422": ValidationFailed,
    "23505": Conflict,
}


def error_for(code: str | None, message: str, detail: str | None) -> LeadwatchError | None:
    """The leadwatch error for a database error code, or None when it is not one of ours."""
    if code and (code.startswith(("08", "53", "57P")) or code in {"PGRST000", "PGRST001", "PGRST002"}):
        return Unavailable("the database is unreachable, retry shortly")
    if code in {"PGRST301", "PGRST302"}:  # Supabase refused the user's token itself
        return Unauthorized(message)
    kind = _ERRORS.get(code or "")
    if kind is None:
        return None
    if kind is ValidationFailed:
        return ValidationFailed(message, [{"field": detail or "body", "message": message}])
    return kind(message, {"field": detail} if detail else None)


class Store:
    """The operations of leadwatch. Subclasses implement `_call` and `ping`."""

    def log_activity(self, tenant: str, activity: ActivityIn, viewer: Viewer | None = None) -> dict[str, Any]:
        return self._call(
            "log_activity",
            viewer,
            p_tenant=tenant,
            p_lead_id=activity.leadId,
            p_channel=activity.channel,
            p_direction=activity.direction,
            p_status=activity.status,
            p_message_snippet=activity.messageSnippet,
            p_meta=activity.meta,
            p_occurred_at=activity.occurredAt,
            p_external_id=activity.externalId,
        )

    def log_activities(self, tenant: str, activities: list[ActivityIn], viewer: Viewer | None = None) -> dict[str, Any]:
        """Log up to 1,000 activities in one transaction: {results: [...]}, one `log_activity` answer
        per activity, in order; nothing stored when one of them is refused."""
        return self._call(
            "log_activities", viewer, p_tenant=tenant, p_activities=[activity.to_row() for activity in activities]
        )

    def sweep(self, tenant: str | None = None, now: datetime | None = None) -> dict[str, Any]:
        """Run the time-based rules for leads due by `now` (default: the database's now); on a Citus
        cluster tenant by tenant (`_sweep_each`)."""
        if self._is_citus():
            return self._sweep_each([tenant] if tenant else self._citus_tenants(), now)
        result = self._call("sweep_alerts", None, p_tenant=tenant, p_now=now)
        # Committed: read past the due-index entries it left behind once now, not in the next sweep.
        self._call("prune_due_index", None, p_now=now)
        return result

    def _sweep_each(self, tenants: list[str], now: datetime | None) -> dict[str, Any]:
        """The sweep on a Citus cluster (docs/citus.md): one call per tenant, each on the worker holding it
        (one statement locking the due rows of every shard is refused there, and a null tenant is never
        sent: Citus 14.0.1 crashes delegating it), the counts added up; no prune_due_index (an index's
        hygiene on one node)."""
        total: dict[str, Any] = {}
        for one in tenants:
            total = _added(total, self._call("sweep_alerts", None, p_tenant=one, p_now=now))
        return total or self._call("sweep_alerts", None, p_tenant="", p_now=now)  # no tenant: the zero counts

    def _is_citus(self) -> bool:
        """Is the database a Citus coordinator (docs/citus.md)? Each store asks in its own way."""
        return False

    def _citus_tenants(self) -> list[str]:
        """Every tenant a sweep judges (with leads), on a Citus cluster: `sweep_tenants()`, which only
        supabase/citus/distribute.sql creates."""
        return cast("list[str]", self._call("sweep_tenants", None))

    def resolve_alert(self, tenant: str, alert_id: str, actor: str, viewer: Viewer | None = None) -> dict[str, Any]:
        return self._call("resolve_alert", viewer, p_tenant=tenant, p_alert_id=alert_id, p_actor=actor)

    def list_active_alerts(self, tenant: str, query: AlertQuery, viewer: Viewer | None = None) -> dict[str, Any]:
        result = self._call(
            "list_active_alerts",
            viewer,
            p_tenant=tenant,
            p_limit=query.limit,
            p_cursor=query.decoded_cursor(),
            p_severity=query.severity,
            p_type=query.type,
            p_lead_id=query.lead,
            p_state=query.state,
        )
        return {**result, "next_cursor": encode_cursor(result["next_cursor"])}

    def upsert_leads(self, tenant: str, leads: list[LeadIn], viewer: Viewer | None = None) -> dict[str, Any]:
        return self._call("upsert_leads", viewer, p_tenant=tenant, p_leads=[lead.to_row() for lead in leads])

    def list_lead_activities(
        self, tenant: str, lead_id: str, query: TimelineQuery, viewer: Viewer | None = None
    ) -> dict[str, Any]:
        result = self._call(
            "list_lead_activities",
            viewer,
            p_tenant=tenant,
            p_lead_id=lead_id,
            p_limit=query.limit,
            p_cursor=query.decoded_cursor(),
        )
        return {**result, "next_cursor": encode_cursor(result["next_cursor"])}

    def log_whatsapp(self, tenant: str, activity: WhatsAppActivity, *, create_lead: bool = True) -> dict[str, Any]:
        """Log a WhatsApp message or call for the lead owning its number (service only). Without
        `create_lead`, an unknown number writes nothing and answers {unknown_phone: true}."""
        return self._call(
            "log_activity_by_phone",
            None,
            p_tenant=tenant,
            p_phone=activity.phone,
            p_chat_id=activity.chat_id,
            p_sender_name=activity.sender_name,
            p_direction=activity.direction,
            p_channel=activity.channel,
            p_status="received" if activity.direction == "in" else "sent",
            p_message_snippet=activity.text,  # cut to 100 characters by the database
            p_meta=activity.meta,
            p_occurred_at=activity.occurred_at,
            p_external_id=activity.external_id,
            p_create=create_lead,
        )

    def reject_greenapi(
        self,
        tenant: str,
        instance_id: str,
        reason: str,
        *,
        payload: dict[str, Any] | None = None,
        raw: bytes | None = None,
    ) -> dict[str, Any]:
        """Keep a Green-API notification that could not be read: its JSON, else its bytes (service only)."""
        return self._call(
            "reject_greenapi_notification",
            None,
            p_tenant=tenant,
            p_instance_id=instance_id,
            p_reason=reason,
            p_payload=payload,
            p_raw=None if raw is None else "\\x" + raw.hex(),  # bytea's hex form, the same through both stores
        )

    def list_greenapi_rejected(self, tenant: str, query: RejectedQuery, viewer: Viewer | None = None) -> dict[str, Any]:
        result = self._call(
            "list_greenapi_rejected", viewer, p_tenant=tenant, p_limit=query.limit, p_cursor=query.decoded_cursor()
        )
        return {**result, "next_cursor": encode_cursor(result["next_cursor"])}

    def set_activity_status(self, tenant: str, channel: str, external_id: str, status: str) -> dict[str, Any]:
        return self._call(
            "set_activity_status", None, p_tenant=tenant, p_channel=channel, p_external_id=external_id, p_status=status
        )

    def prepare_whatsapp(
        self, tenant: str, *, alert_id: str | None = None, lead_id: str | None = None, viewer: Viewer | None = None
    ) -> dict[str, Any]:
        """The lead to write to (and, for an alert, the message its rule sends)."""
        return self._call("prepare_whatsapp", viewer, p_tenant=tenant, p_alert_id=alert_id, p_lead_id=lead_id)

    def prepare_action(self, tenant: str, alert_id: str, viewer: Viewer | None = None) -> dict[str, Any]:
        """What running the alert's suggested action needs: the action, its lead, the rule's text."""
        return self._call("prepare_action", viewer, p_tenant=tenant, p_alert_id=alert_id)

    # Email ---------------------------------------------------------------------------------------

    def log_email(self, tenant: str, email: InboundEmail, *, create_lead: bool = True) -> dict[str, Any]:
        """Log an inbound email for the lead with the sender's address (service only). Without
        `create_lead`, an unknown address writes nothing and answers {unknown_email: true}."""
        return self._call(
            "log_activity_by_email",
            None,
            p_tenant=tenant,
            p_email=email.sender,
            p_sender_name=email.sender_name,
            p_status=email.status,
            p_message_snippet=email.snippet,
            p_meta=email.meta,
            p_occurred_at=email.occurred_at,
            p_external_id=email.external_id,
            p_create=create_lead,
        )

    def prepare_email(self, tenant: str, *, lead_id: str, viewer: Viewer | None = None) -> dict[str, Any]:
        """The lead to write to (with its address) and the tenant's From (null: the default)."""
        return self._call("prepare_email", viewer, p_tenant=tenant, p_lead_id=lead_id)

    def claim_email_send(self, tenant: str, key: str, request_hash: str) -> dict[str, Any]:
        """Claim an Idempotency-Key: {claimed: true}, or {claimed: false, answer} of the send it made (service only)."""
        return self._call("claim_email_send", None, p_tenant=tenant, p_key=key, p_request_hash=request_hash)

    def settle_email_send(self, tenant: str, key: str, answer: dict[str, Any] | None) -> dict[str, Any]:
        """Keep the answer of a claimed send, or release the key when nothing was sent (service only)."""
        return self._call("settle_email_send", None, p_tenant=tenant, p_key=key, p_answer=answer)

    def reject_email(self, tenant: str, reason: str, raw: bytes) -> dict[str, Any]:
        """Keep an inbound email that could not be read, as received (service only)."""
        return self._call("reject_email", None, p_tenant=tenant, p_reason=reason, p_raw="\\x" + raw.hex())

    def list_email_rejected(self, tenant: str, query: RejectedQuery, viewer: Viewer | None = None) -> dict[str, Any]:
        result = self._call(
            "list_email_rejected", viewer, p_tenant=tenant, p_limit=query.limit, p_cursor=query.decoded_cursor()
        )
        return {**result, "next_cursor": encode_cursor(result["next_cursor"])}

    def alert_analytics(self, tenant: str, query: AnalyticsQuery, viewer: Viewer | None = None) -> dict[str, Any]:
        function = "alert_analytics_in_working_time" if query.clock == "business" else "alert_analytics"
        return self._call(function, viewer, p_tenant=tenant, p_from=query.start, p_to=query.end, p_tz=query.tz)

    def export_alerts(
        self, tenant: str, query: AlertExportQuery, cursor: dict[str, Any] | None, viewer: Viewer | None = None
    ) -> dict[str, Any]:
        """One page of the alerts export ({rows, next_cursor}); `cursor` is the previous page's."""
        return self._call(
            "export_alerts",
            viewer,
            p_tenant=tenant,
            p_state=query.state,
            p_severity=query.severity,
            p_type=query.type,
            p_lead_id=query.lead,
            p_from=query.start,
            p_to=query.end,
            p_limit=query.page_size,
            p_cursor=cursor,
        )

    def export_activities(
        self, tenant: str, query: ActivityExportQuery, cursor: dict[str, Any] | None, viewer: Viewer | None = None
    ) -> dict[str, Any]:
        """One page of the activities export ({rows, next_cursor}); `cursor` is the previous page's."""
        return self._call(
            "export_activities",
            viewer,
            p_tenant=tenant,
            p_lead_id=query.lead,
            p_from=query.start,
            p_to=query.end,
            p_limit=query.page_size,
            p_cursor=cursor,
        )

    # The alert desk ------------------------------------------------------------------------------

    def snooze_alert(
        self, tenant: str, alert_id: str, until: datetime, actor: str, viewer: Viewer | None = None
    ) -> dict[str, Any]:
        return self._call("snooze_alert", viewer, p_tenant=tenant, p_alert_id=alert_id, p_until=until, p_actor=actor)

    def next_working_morning(self, tenant: str, viewer: Viewer | None = None) -> datetime:
        """The tenant's next working morning (its calendar's next first opening of a day), for a snooze."""
        return datetime.fromisoformat(self._call("get_next_working_morning", viewer, p_tenant=tenant)["at"])

    def unsnooze_alert(self, tenant: str, alert_id: str, actor: str, viewer: Viewer | None = None) -> dict[str, Any]:
        return self._call("unsnooze_alert", viewer, p_tenant=tenant, p_alert_id=alert_id, p_actor=actor)

    def act_on_alerts(
        self,
        tenant: str,
        action: str,
        ids: list[str],
        actor: str,
        until: datetime | None = None,
        viewer: Viewer | None = None,
    ) -> dict[str, Any]:
        """Resolve or snooze many alerts in one transaction: {results: [{id, result}], done}."""
        return self._call(
            "act_on_alerts", viewer, p_tenant=tenant, p_action=action, p_ids=ids, p_until=until, p_actor=actor
        )

    def alert_history(self, tenant: str, alert_id: str, viewer: Viewer | None = None) -> dict[str, Any]:
        return self._call("alert_history", viewer, p_tenant=tenant, p_alert_id=alert_id)

    def list_lead_alerts(
        self, tenant: str, lead_id: str, query: LeadAlertsQuery, viewer: Viewer | None = None
    ) -> dict[str, Any]:
        result = self._call(
            "list_lead_alerts",
            viewer,
            p_tenant=tenant,
            p_lead_id=lead_id,
            p_limit=query.limit,
            p_cursor=query.decoded_cursor(),
        )
        return {**result, "next_cursor": encode_cursor(result["next_cursor"])}

    def list_rules(self, tenant: str, viewer: Viewer | None = None) -> dict[str, Any]:
        return self._call("list_rules", viewer, p_tenant=tenant)

    def set_rule(self, tenant: str, rule_type: str, rule: RuleIn, viewer: Viewer | None = None) -> dict[str, Any]:
        return self._call("set_rule", viewer, p_tenant=tenant, p_type=rule_type, p_changes=rule.to_changes())

    # Business hours ------------------------------------------------------------------------------

    def get_calendar(self, tenant: str, viewer: Viewer | None = None) -> dict[str, Any]:
        """The tenant's working calendar in force (its own, or the default): {calendar: {...}}."""
        return self._call("get_calendar", viewer, p_tenant=tenant)

    def set_calendar(self, tenant: str, calendar: dict[str, Any], viewer: Viewer | None = None) -> dict[str, Any]:
        """Replace the tenant's working calendar (admins), validated in SQL; due times follow."""
        return self._call("set_calendar", viewer, p_tenant=tenant, p_calendar=calendar)

    def apply_retention(self, tenant: str | None = None, batch: int | None = None) -> dict[str, Any]:
        """Remove one bounded batch of what is past its tenant's retention (service only)."""
        return self._call("apply_retention", None, p_tenant=tenant, p_batch=batch)

    def summarise_recent_alert_days(self, tenant: str | None = None) -> int:
        """Summarise the days closed since the analytics' last summaries, for every zone asked before (service only)."""
        summarised = cast("int", self._call("summarise_recent_alert_days", None, p_tenant=tenant))  # a JSON number
        return int(summarised)

    # Outgoing webhooks ---------------------------------------------------------------------------

    def create_webhook(
        self,
        tenant: str,
        url: str,
        events: list[str],
        secret: str,
        enabled: bool = True,
        actor: str = "system",
        viewer: Viewer | None = None,
    ) -> dict[str, Any]:
        """Register an endpoint (admins): {webhook: {..., secret}}, the secret answered this once."""
        return self._call(
            "create_webhook",
            viewer,
            p_tenant=tenant,
            p_url=url,
            p_events=events,
            p_secret=secret,
            p_enabled=enabled,
            p_actor=actor,
        )

    def list_webhooks(self, tenant: str, viewer: Viewer | None = None) -> dict[str, Any]:
        return self._call("list_webhooks", viewer, p_tenant=tenant)

    def delete_webhook(self, tenant: str, webhook_id: str, viewer: Viewer | None = None) -> dict[str, Any]:
        return self._call("delete_webhook", viewer, p_tenant=tenant, p_webhook_id=webhook_id)

    def rotate_webhook_secret(
        self, tenant: str, webhook_id: str, secret: str, viewer: Viewer | None = None
    ) -> dict[str, Any]:
        return self._call("rotate_webhook_secret", viewer, p_tenant=tenant, p_webhook_id=webhook_id, p_secret=secret)

    def list_webhook_deliveries(
        self, tenant: str, webhook_id: str, limit: int = 50, viewer: Viewer | None = None
    ) -> dict[str, Any]:
        return self._call("list_webhook_deliveries", viewer, p_tenant=tenant, p_webhook_id=webhook_id, p_limit=limit)

    def redeliver_webhook(
        self, tenant: str, webhook_id: str, delivery_id: str, viewer: Viewer | None = None
    ) -> dict[str, Any]:
        return self._call(
            "redeliver_webhook", viewer, p_tenant=tenant, p_webhook_id=webhook_id, p_delivery_id=delivery_id
        )

    def claim_webhook_deliveries(
        self, now: datetime | None = None, limit: int = 100, lease_seconds: int = 120
    ) -> list[dict[str, Any]]:
        """Claim due deliveries under a lease (service only): [{tenant_id, id, attempt, url, secret, payload}]."""
        claimed = self._call("claim_webhook_deliveries", None, p_now=now, p_limit=limit, p_lease_seconds=lease_seconds)
        return cast("list[dict[str, Any]]", claimed)  # this function answers a JSON array

    def record_webhook_attempts(self, outcomes: list[dict[str, Any]], now: datetime | None = None) -> dict[str, Any]:
        """Record claimed attempts' outcomes (service only): {delivered, retrying, failed, disabled}."""
        return self._call("record_webhook_attempts", None, p_results=outcomes, p_now=now)

    def claim_member_pushes(
        self, now: datetime | None = None, limit: int = 100, lease_seconds: int = 120
    ) -> list[dict[str, Any]]:
        """Claim due WhatsApp pushes under a lease (service only): [{id, attempt, tenant_id, phone, text}]."""
        claimed = self._call("claim_member_pushes", None, p_now=now, p_limit=limit, p_lease_seconds=lease_seconds)
        return cast("list[dict[str, Any]]", claimed)  # this function answers a JSON array

    def record_member_pushes(self, outcomes: list[dict[str, Any]], now: datetime | None = None) -> dict[str, Any]:
        """Record claimed pushes' outcomes (service only): {sent, retrying, failed}."""
        return self._call("record_member_pushes", None, p_results=outcomes, p_now=now)

    def write_daily_digests(self, now: datetime | None = None) -> dict[str, Any]:
        """Write the morning digests come due by `now` and their outbox rows (service only):
        {digests, empty, deliveries, pushes}."""
        return self._call("write_daily_digests", None, p_now=now)

    def set_webhook_enabled(
        self, tenant: str, webhook_id: str, enabled: bool, viewer: Viewer | None = None
    ) -> dict[str, Any]:
        """Enable (again, e.g. after a 410 disabled it) or disable an endpoint (admins): {webhook}."""
        return self._call("set_webhook_enabled", viewer, p_tenant=tenant, p_webhook_id=webhook_id, p_enabled=enabled)

    def prune_notifications(
        self, tenant: str | None = None, batch: int | None = None, now: datetime | None = None
    ) -> dict[str, Any]:
        """Remove one bounded batch of the deliveries delivered, pushes sent and digests written over
        30 days ago (service only): {deliveries, pushes, digests, more}."""
        return self._call("prune_notifications", None, p_tenant=tenant, p_batch=batch, p_now=now)

    # The team directory --------------------------------------------------------------------------

    def upsert_member(self, tenant: str, member: dict[str, Any], viewer: Viewer | None = None) -> dict[str, Any]:
        """Add or replace a member of the directory (admins): {member}."""
        return self._call("upsert_member", viewer, p_tenant=tenant, p_member=member)

    def list_members(self, tenant: str, viewer: Viewer | None = None) -> dict[str, Any]:
        return self._call("list_members", viewer, p_tenant=tenant)

    def get_digest_settings(self, tenant: str, viewer: Viewer | None = None) -> dict[str, Any]:
        """The tenant's digest hour and time zone (admins): {digest: {hour, time_zone, default}}."""
        return self._call("get_digest_settings", viewer, p_tenant=tenant)

    def set_digest_settings(
        self, tenant: str, hour: int, time_zone: str, viewer: Viewer | None = None
    ) -> dict[str, Any]:
        return self._call("set_digest_settings", viewer, p_tenant=tenant, p_hour=hour, p_time_zone=time_zone)

    # A lead's personal data (GDPR) ------------------------------------------------------------------

    def erase_lead(self, tenant: str, lead_id: str, actor: str, viewer: Viewer | None = None) -> dict[str, Any]:
        """Erase everything the tenant holds about a lead, in one transaction (admins): {erasure}."""
        return self._call("erase_lead", viewer, p_tenant=tenant, p_lead_id=lead_id, p_actor=actor)

    def export_lead(self, tenant: str, lead_id: str, viewer: Viewer | None = None) -> dict[str, Any]:
        """Everything the tenant holds about a lead, as one document (admins)."""
        return self._call("export_lead", viewer, p_tenant=tenant, p_lead_id=lead_id)

    def list_lead_erasures(self, tenant: str, query: ErasuresQuery, viewer: Viewer | None = None) -> dict[str, Any]:
        result = self._call(
            "list_lead_erasures", viewer, p_tenant=tenant, p_limit=query.limit, p_cursor=query.decoded_cursor()
        )
        return {**result, "next_cursor": encode_cursor(result["next_cursor"])}

    def _call(self, function: str, viewer: Viewer | None, **params: Any) -> dict[str, Any]:
        """Call a SQL function by name with named arguments; arguments left as None take their defaults.
        Its answer is the function's JSON: an object, save where a method says otherwise.

        With a `viewer`, the call runs as that signed-in user (role `authenticated`, their claims in
        `request.jwt.claims`), so row-level security decides what they see; without, as the service.
        """
        raise NotImplementedError

    def ping(self) -> None:
        """Raise Unavailable unless the database answers."""
        self._call("ping", None)

    def close(self) -> None:
        """Release connections."""


def _json_ready(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


@functools.lru_cache(maxsize=256)
def _statement(function: str, names: tuple[str, ...]) -> str:
    """`select public.function(name => %(name)s, ...)`, composed once per function and set of arguments."""
    from psycopg import sql

    return (
        sql.SQL("select public.{}({})")
        .format(
            sql.Identifier(function),
            sql.SQL(", ").join(
                sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in names
            ),
        )
        .as_string()
    )


class PostgresStore(Store):
    """Calls the SQL functions over psycopg (DATABASE_URL): self-hosted, Supabase direct, embedded."""

    def __init__(self, database_url: str, *, timeout: float = 5.0, pool_size: int = 5) -> None:
        self._url = database_url
        self._timeout = timeout
        self._pool_size = pool_size
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()
        self._citus: bool | None = None

    def _connection(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    from psycopg_pool import ConnectionPool

                    self._pool = ConnectionPool(
                        self._url,
                        min_size=1,
                        max_size=self._pool_size,
                        timeout=self._timeout,
                        # UTC, as on Supabase: timestamps in answers read the same through both stores
                        kwargs={
                            "autocommit": True,
                            "connect_timeout": max(1, int(self._timeout)),
                            "options": "-c timezone=UTC",
                        },
                        open=False,
                    )
                    self._pool.open(wait=False)
        return self._pool.connection()

    def _call(self, function: str, viewer: Viewer | None, **params: Any) -> Any:
        from psycopg.types.json import Jsonb

        args = {name: value for name, value in params.items() if value is not None}
        values = {name: Jsonb(v) if isinstance(v, (dict, list)) else _json_ready(v) for name, v in args.items()}
        row = self._execute(_statement(function, tuple(args)), values, viewer)
        assert row is not None  # `select function(...)` answers one row
        return row[0]

    def _execute(self, statement: Any, values: dict[str, Any], viewer: Viewer | None) -> tuple[Any, ...] | None:
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self._connection() as conn:
                if viewer is None:
                    return conn.execute(statement, values).fetchone()
                # As the user: their role and claims for this transaction only, sent with the call
                # in one pipeline (one network round trip, not four).
                with conn.pipeline(), conn.transaction():
                    if self._is_citus(conn):
                        self._set_viewer_on_workers(conn, viewer)
                    else:
                        conn.execute(
                            "select set_config('role', 'authenticated', true),"
                            " set_config('request.jwt.claims', %s, true)",
                            [json.dumps(dict(viewer.claims))],
                        )
                    cursor = conn.execute(statement, values)
                return cursor.fetchone()
        except PoolTimeout:
            raise Unavailable("the database is unreachable, retry shortly") from None
        except psycopg.OperationalError as exc:
            raise error_for(exc.sqlstate or "08000", str(exc), None) or Unavailable(str(exc)) from None
        except psycopg.Error as exc:
            mapped = error_for(exc.sqlstate, exc.diag.message_primary or str(exc), exc.diag.message_detail)
            if mapped is None:
                raise
            raise mapped from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    # On a Citus coordinator (docs/citus.md) -----------------------------------------------------

    def _is_citus(self, conn: psycopg.Connection[Any] | None = None) -> bool:
        """Is the database a Citus coordinator? Asked once, on the first call (on `conn` when the caller
        holds one: the pool may have no other)."""
        if self._citus is None:
            if conn is None:
                with self._connection() as own:
                    return self._is_citus(own)
            row = conn.execute("select exists (select from pg_extension where extname = 'citus')").fetchone()
            self._citus = bool(row and row[0])
        return self._citus

    @staticmethod
    def _set_viewer_on_workers(conn: psycopg.Connection[Any], viewer: Viewer) -> None:
        """The user's role and claims as SET LOCAL, which Citus forwards to the worker a delegated call
        runs on (set_config() stays on the coordinator, and the call would run there without them)."""
        from psycopg import sql

        conn.execute("set local citus.propagate_set_commands = 'local'")
        conn.execute("set local role authenticated")
        conn.execute(sql.SQL("set local request.jwt.claims = {}").format(sql.Literal(json.dumps(dict(viewer.claims)))))


def _added(total: dict[str, Any], counts: dict[str, Any]) -> dict[str, Any]:
    """Two answers of sweep_alerts added up, key by key (their counts nest one level)."""
    return {
        key: _added(total.get(key, {}), value) if isinstance(value, dict) else total.get(key, 0) + value
        for key, value in counts.items()
    }


class SupabaseStore(Store):
    """Calls the same SQL functions through Supabase's REST API (supabase-py `rpc`) with the service key."""

    def __init__(self, url: str, service_key: str, *, timeout: float = 10.0) -> None:
        self._url = url
        self._key = service_key
        self._timeout = timeout
        self._client: Client | None = None
        self._lock = threading.Lock()
        self._citus: bool | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from supabase import ClientOptions, create_client

                    options = ClientOptions(
                        postgrest_client_timeout=self._timeout, auto_refresh_token=False, persist_session=False
                    )
                    self._client = create_client(self._url, self._key, options)
        return self._client

    def _rest(self, viewer: Viewer | None) -> SyncPostgrestClient:
        """The service's client, or a client of its own for a user (never shared: it carries their token)."""
        if viewer is None:
            return self.client.postgrest
        from postgrest import SyncPostgrestClient

        headers = {"apikey": self._key, "Authorization": f"Bearer {viewer.token}"}
        return SyncPostgrestClient(f"{self._url}/rest/v1", headers=headers, http_client=self.client.postgrest.session)

    def _call(self, function: str, viewer: Viewer | None, **params: Any) -> Any:
        import httpx
        from postgrest.exceptions import APIError

        args = {name: _json_ready(value) for name, value in params.items() if value is not None}
        try:
            return self._rest(viewer).rpc(function, args).execute().data
        except httpx.TransportError:
            raise Unavailable("Supabase is unreachable, retry shortly") from None
        except APIError as exc:
            code = exc.code or ""
            if code.isdigit() and int(code) >= 500:  # a gateway error page, not PostgREST's JSON
                raise Unavailable("Supabase is unavailable, retry shortly") from None
            mapped = error_for(code, exc.message or "database error", exc.details)
            if mapped is None:
                raise
            raise mapped from None

    def _is_citus(self) -> bool:
        """Is the database a Citus coordinator? Asked once: there, and only there, PostgREST knows
        `sweep_tenants()` (created by supabase/citus/distribute.sql); elsewhere it answers PGRST202."""
        if self._citus is None:
            from postgrest.exceptions import APIError

            try:
                self._citus_tenants()
                self._citus = True
            except APIError as exc:
                if exc.code != "PGRST202":
                    raise
                self._citus = False
        return self._citus


def make_store(settings: Settings) -> Store:
    """The store the configuration chooses: DATABASE_URL → PostgresStore, else SUPABASE_URL → SupabaseStore."""
    require_backend(settings)
    if settings.backend == "postgres":
        assert settings.database_url
        return PostgresStore(settings.database_url, timeout=settings.db_timeout, pool_size=settings.db_pool_size)
    assert settings.supabase_url and settings.supabase_service_key  # load_settings checks they go together
    return SupabaseStore(settings.supabase_url, settings.supabase_service_key)
