"""The nightly retention, one bounded batch at a time: run by the scheduled route (POST
/api/retention/run) and by `leadwatch retain`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..stores.store import Store


def retain_once(store: Store, tenant: str | None, batch: int | None) -> dict[str, Any]:
    """One bounded batch of the nightly retention run, as the scheduled route and `leadwatch retain`
    both do it: what is past its tenant's retention, then the notifications' outbox (30 days on);
    on the last batch, the analytics' summaries of the days closed since.
    {activities, alerts, events, notifications: {deliveries, pushes, digests}, more}."""
    result = store.apply_retention(tenant, batch)
    pruned = store.prune_notifications(tenant, batch)
    more = pruned.pop("more") or result["more"]
    if not more:
        store.summarise_recent_alert_days(tenant)
    return {**result, "more": more, "notifications": pruned}
