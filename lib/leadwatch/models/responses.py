"""What each route answers, as pydantic models: the source of the responses in the OpenAPI description.

The handlers answer the SQL functions' JSON as it is; these models describe it (and the test suite,
through schemathesis, checks every answer against them). Objects may carry more keys than listed.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from .requests import AlertType, Channel, Direction, Severity


class _Out(BaseModel):
    pass


class ErrorDetail(_Out):
    code: str = Field(description="stable machine-readable code, e.g. validation_failed, not_found")
    message: str
    details: Any = Field(description="for 422, a list of {field, message}; else an object or null")


class Error(_Out):
    """Every error: {success: false, error: {code, message, details}}."""

    success: Literal[False]
    error: ErrorDetail


class SuggestedAction(_Out):
    label: dict[str, str] | str | None = None
    action: str = Field(description="send_whatsapp, send_email, switch_channel or call_lead (docs/actions.md)")
    params: dict[str, Any] | None = None
    channel: Channel | None = Field(
        default=None,
        description="where the action runs (active alerts list): switch_channel's is the lead's preferred channel; "
        "null when leadwatch runs no such action or the lead's channel is not known",
    )
    available: bool | None = Field(
        default=None, description="whether the action can run for this lead now (active alerts list)"
    )
    reason: str | None = Field(
        default=None,
        description="why it cannot, when `available` is false: no_phone, no_email, whatsapp_not_configured, "
        "email_not_configured, no_preferred_channel, unknown_action — the error code running it would answer",
    )


class Alert(_Out):
    id: str
    tenant_id: str
    lead_id: str
    type: AlertType
    severity: Severity
    message: str
    suggested_action: SuggestedAction | dict[str, Any] | None
    created_at: datetime
    escalated_at: datetime | None
    resolved_at: datetime | None
    lead_name: str | None
    lead_email: str | None
    lead_phone: str | None = Field(default=None, description="the lead's phone, E.164 (active alerts list)")
    lead_preferred_channel: Channel | None = Field(
        default=None, description="the lead's preferred channel in the directory (active alerts list)"
    )
    lead_url: str | None = Field(
        default=None, description="the lead's page in EspoCRM, when ESPO_URL is configured (active alerts list)"
    )
    snoozed_until: datetime | None = None
    overdue: bool = False
    overdue_at: datetime | None = None


class AlertStats(_Out):
    total: int
    by_severity: dict[str, int]
    by_type: dict[str, int]
    snoozed: int = Field(default=0, description="snoozed alerts (not counted in total)")


class AlertList(_Out):
    success: Literal[True]
    stats: AlertStats
    alerts: list[Alert]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last")


class ResolvedAlert(_Out):
    id: str
    type: AlertType
    lead_id: str
    resolved_at: datetime | None
    resolved_by: str | None


class Resolved(_Out):
    success: Literal[True]
    message: str
    alert: ResolvedAlert


class Activity(_Out):
    id: str
    tenant_id: str
    lead_id: str
    channel: Channel
    direction: Direction
    status: str | None
    message_snippet: str | None
    meta: dict[str, Any] | None
    occurred_at: datetime
    created_at: datetime | None
    external_id: str | None


class AlertChanges(_Out):
    created: list[AlertType] = Field(description="the types of the alerts this activity raised")
    resolved: list[AlertType] = Field(description="the types of the alerts this activity resolved")


class ActivityLogged(_Out):
    success: Literal[True]
    activity: Activity
    alerts: AlertChanges
    duplicate: bool = Field(description="true when this externalId was already stored (nothing changed)")


class ActivityResult(_Out):
    """One activity's answer in a list: what logging it alone would have answered."""

    activity: Activity
    alerts: AlertChanges
    duplicate: bool = Field(description="true when this externalId was already stored (nothing changed)")


class ActivitiesLogged(_Out):
    success: Literal[True]
    results: list[ActivityResult] = Field(description="one per activity sent, in the same order")


class SentMessage(_Out):
    chatId: str
    idMessage: str
    message: str


class WhatsAppSent(_Out):
    success: Literal[True]
    sent: SentMessage
    activity: Activity
    alerts: AlertChanges


class ActionMessage(_Out):
    channel: Literal["whatsapp", "email"]
    to: str = Field(description="the lead's phone (WhatsApp) or email address")
    message: str
    chatId: str | None = Field(default=None, description="WhatsApp: the chat written to")
    idMessage: str | None = Field(default=None, description="WhatsApp: the provider's message id")
    subject: str | None = Field(default=None, description="email: the subject sent")
    messageId: str | None = Field(default=None, description="email: the Message-ID sent")


class ActionSent(_Out):
    success: Literal[True]
    sent: ActionMessage
    activity: Activity
    alerts: AlertChanges
    replayed: bool = Field(
        default=False,
        description="true when this answer is the one a former request with the same Idempotency-Key made",
    )


class SweepResult(_Out):
    success: Literal[True]
    created: dict[str, int]
    escalated: int
    resolved: int
    leads_checked: int
    duration_ms: float


class Lead(_Out):
    lead_id: str
    name: str | None
    email: str | None
    phone: str | None
    owner_id: str | None
    value: float | None
    currency: str
    preferred_channel: Channel | None
    provisional: bool
    created_at: datetime
    updated_at: datetime


class LeadsUpserted(_Out):
    success: Literal[True]
    upserted: int
    leads: list[Lead]
    merged: Any = Field(description="provisional leads merged into these ones, by phone")


class Timeline(_Out):
    success: Literal[True]
    activities: list[Activity]
    next_cursor: str | None


class WebhookAck(_Out):
    """Green-API's notification stored, or deliberately ignored (`ignored` says why)."""

    success: Literal[True]
    ignored: str | None = None
    status: str | None = None


class Health(_Out):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unreachable"]


class OpenApiDocument(_Out):
    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]


class DayCounts(_Out):
    day: date
    created: int
    resolved: int
    escalated: int


class ResolvedWithin24h(_Out):
    resolved: int
    within_24h: int
    share: float | None = Field(description="within_24h / resolved; null when nothing was resolved")


class TypeTimes(_Out):
    type: AlertType
    count: int
    median_hours: float
    p90_hours: float


class OwnerTimes(_Out):
    owner_id: str | None
    count: int
    median_hours: float
    p90_hours: float


class TimeToResolve(_Out):
    by_type: list[TypeTimes]
    by_owner: list[OwnerTimes]


class AgeBucket(_Out):
    bucket: Literal["<1d", "1-3d", "3-7d", "7-30d", ">30d"]
    count: int


class Analytics(_Out):
    success: Literal[True]
    from_: date = Field(alias="from")
    to: date
    tz: str
    per_day: list[DayCounts] = Field(description="every day of the range, zeros included")
    resolved_within_24h: ResolvedWithin24h
    time_to_resolve: TimeToResolve
    open_by_age: list[AgeBucket]


# The alert desk ------------------------------------------------------------------------------------


class AlertBrief(_Out):
    id: str
    type: AlertType
    lead_id: str
    snoozed_until: datetime | None
    severity: Severity


class Snoozed(_Out):
    success: Literal[True]
    alert: AlertBrief


class BulkResult(_Out):
    id: str
    result: Literal["done", "already_resolved", "not_found"]


class BulkDone(_Out):
    success: Literal[True]
    results: list[BulkResult] = Field(description="one answer per id, in the order given")
    done: int


class AlertEvent(_Out):
    event: Literal["created", "escalated", "resolved", "reopened", "snoozed", "unsnoozed", "overdue"]
    severity: Severity = Field(description="the severity after the event")
    actor: str = Field(description="'system' or the user's id")
    at: datetime


class AlertHistory(_Out):
    success: Literal[True]
    alert: Alert
    events: list[AlertEvent]


class LeadAlerts(_Out):
    success: Literal[True]
    alerts: list[Alert]
    next_cursor: str | None


class Rule(_Out):
    type: AlertType
    enabled: bool
    threshold: str | None
    severity: Severity
    escalate_after: str | None
    escalated_severity: Severity | None
    min_count: int | None
    min_value: float | None
    currency: str | None
    supersedes: AlertType | None
    locale: Literal["fr", "en"]
    messages: dict[str, str]
    action: dict[str, Any]
    overdue_after: str | None
    source: Literal["default", "tenant"]


class Rules(_Out):
    success: Literal[True]
    rules: list[Rule]


class RuleSet(_Out):
    success: Literal[True]
    rule: Rule


class NotificationsPruned(_Out):
    deliveries: int = Field(description="webhook deliveries delivered over 30 days ago, removed")
    pushes: int = Field(description="WhatsApp pushes sent over 30 days ago, removed")
    digests: int = Field(description="morning digests written over 30 days ago, removed")


class RetentionRun(_Out):
    success: Literal[True]
    activities: int
    alerts: int
    events: int
    notifications: NotificationsPruned
    more: bool = Field(description="true when another call has work left")
    duration_ms: float


class RejectedNotification(_Out):
    id: str
    instance_id: str | None
    reason: str
    received_at: datetime
    payload: Any = Field(description="the notification as received (JSON), or null when it was not JSON")
    raw_base64: str | None


class RejectedList(_Out):
    success: Literal[True]
    rejected: list[RejectedNotification]
    next_cursor: str | None


# Outgoing webhooks and the team directory ----------------------------------------------------------


class Webhook(_Out):
    id: str
    url: str
    events: list[str]
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    secret: str | None = Field(default=None, description="whsec_...: only in the answers of create and rotate")


class WebhookOne(_Out):
    success: Literal[True]
    webhook: Webhook


class Webhooks(_Out):
    success: Literal[True]
    webhooks: list[Webhook]


class WebhookDeleted(_Out):
    success: Literal[True]
    deleted: str


class Delivery(_Out):
    id: str
    event_type: str
    status: Literal["pending", "sending", "delivered", "failed"]
    attempts: int
    last_status: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    next_attempt_at: datetime | None
    created_at: datetime
    attempt_log: list[dict[str, Any]] | None
    payload: dict[str, Any]


class Deliveries(_Out):
    success: Literal[True]
    deliveries: list[Delivery]


class Redelivered(_Out):
    success: Literal[True]
    delivery: Delivery


class PushCounts(_Out):
    claimed: int
    sent: int
    retrying: int
    failed: int


class DigestCounts(_Out):
    digests: int = Field(description="morning digests written (members with something to act on)")
    empty: int = Field(description="members due a digest with nothing to act on: nothing sent")
    deliveries: int = Field(description="digest.daily webhook deliveries written")
    pushes: int = Field(description="digest WhatsApp pushes written")


class DeliverResult(_Out):
    success: Literal[True]
    claimed: int
    delivered: int
    retrying: int
    failed: int
    disabled: int
    pushes: PushCounts
    digests: DigestCounts
    duration_ms: float


class Member(_Out):
    user_id: str
    name: str
    role: Literal["admin", "manager", "agent"]
    phone: str | None
    locale: Literal["fr", "en"]
    time_zone: str
    quiet_hours: dict[str, str] | None
    notifications: list[str]
    whatsapp: bool
    updated_at: datetime


class MemberOne(_Out):
    success: Literal[True]
    member: Member


class Members(_Out):
    success: Literal[True]
    members: list[Member]


class DigestSettings(_Out):
    hour: int = Field(description="the local hour the digest is written, 0-23")
    time_zone: str
    default: bool = Field(description="true while the tenant has not set its own (08:00 Europe/Paris)")


class DigestSettingsOne(_Out):
    success: Literal[True]
    digest: DigestSettings


# Erasure and export of a lead (GDPR articles 15, 17 and 20) -----------------------------------------


class Erasure(_Out):
    """The proof an erasure leaves: no personal data, only a one-way hash of the lead's id."""

    id: str
    lead_hash: str = Field(description="sha256 of `<tenant>:<leadId>` (UTF-8), lowercase hex")
    requested_by: str = Field(description="the admin's user id, or 'service'")
    erased_at: datetime
    counts: dict[str, int] = Field(description="rows removed (member_digests: digests rewritten) per table")


class LeadErased(_Out):
    success: Literal[True]
    erasure: Erasure


class Erasures(_Out):
    success: Literal[True]
    erasures: list[Erasure]
    next_cursor: str | None


class ExportedAlert(Alert):
    events: list[AlertEvent]


class LeadState(_Out):
    lead_id: str
    entered_at: datetime
    last_activity_at: datetime | None
    last_inbound_at: datetime | None
    last_outbound_at: datetime | None


class LeadDocument(_Out):
    tenant_id: str
    lead_id: str
    exported_at: datetime
    lead: Lead | None = Field(description="the directory row (null: the lead was never entered in the directory)")
    state: LeadState | None
    activities: list[Activity] = Field(description="oldest first")
    alerts: list[ExportedAlert] = Field(description="oldest first, each with its history")
    greenapi_rejected: list[RejectedNotification] = Field(description="dead letters from the lead's WhatsApp number")


class LeadExport(_Out):
    success: Literal[True]
    export: LeadDocument
