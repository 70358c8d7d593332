"""`leadwatch smoke URL --token ...`: the deployment checklist's phase 4 against a deployed (or local) URL.

Health, list, log a `test_deploy` activity, raise and resolve a test alert, clean up: one line per
step, stopping at the first failure. It works in its own tenant (`leadwatch-smoke` by default) on a
lead of its own (`test_deploy_<run>`), so a real tenant's data and alerts are never touched; cleaning
up means leaving no active alert behind (history is append-only: nothing is deleted).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

DEFAULT_TENANT = "leadwatch-smoke"


class StepFailed(Exception):
    pass


class Smoke:
    def __init__(
        self,
        url: str,
        token: str,
        tenant: str = DEFAULT_TENANT,
        *,
        scheduler_token: str | None = None,
        identity_token: str | None = None,
        per_function: bool | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        # Cloud Run functions (gen2) on cloudfunctions.net: one URL path per function, leadwatch-<group>.
        if per_function is None:
            per_function = (urlsplit(self.url).hostname or "").endswith(".cloudfunctions.net")
        self.per_function = per_function
        self.tenant = tenant
        self.headers = {"Authorization": f"Bearer {token}", "X-Tenant": tenant}
        self.sweep_headers = {"Authorization": f"Bearer {identity_token or token}", "X-Tenant": tenant}
        if scheduler_token:
            self.sweep_headers["X-Scheduler-Token"] = scheduler_token
        self.lead = f"test_deploy_{uuid.uuid4().hex[:8]}"
        self.http = httpx.Client(timeout=timeout)

    def _url(self, group: str, path: str) -> str:
        return f"{self.url}/leadwatch-{group.replace('_', '-')}{path}" if self.per_function else f"{self.url}{path}"

    def _call(
        self, method: str, group: str, path: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> dict[str, Any]:
        try:
            response = self.http.request(method, self._url(group, path), headers=headers or self.headers, **kw)
        except httpx.HTTPError as exc:
            raise StepFailed(f"{method} {self._url(group, path)}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            detail = (body or {}).get("error", {}).get("message") if isinstance(body, dict) else response.text[:200]
            raise StepFailed(f"{method} {path} answered {response.status_code}: {detail}")
        return body

    def _log(self, direction: str, occurred_at: datetime, snippet: str) -> dict[str, Any]:
        return self._call(
            "POST",
            "activities",
            "/api/activities/log",
            json={
                "leadId": self.lead,
                "channel": "whatsapp",
                "direction": direction,
                "status": "sent",
                "messageSnippet": snippet,
                "occurredAt": occurred_at.isoformat(),
                "externalId": f"{self.lead}-{direction}",
                "meta": {"source": "leadwatch smoke"},
            },
        )

    def _active(self) -> list[dict[str, Any]]:
        answer = self._call("GET", "alerts", "/api/alerts/active", params={"lead": self.lead})
        alerts: list[dict[str, Any]] = answer["alerts"]
        return alerts

    # The steps, in order ---------------------------------------------------------------------------

    def health(self) -> str:
        body = self._call("GET", "health", "/health", headers={})
        if body.get("database") != "ok":
            raise StepFailed(f"database {body.get('database')}")
        return "the functions answer and the database is reachable"

    def list(self) -> str:
        body = self._call("GET", "alerts", "/api/alerts/active")
        return f"{body['stats']['total']} active alert(s) in tenant {self.tenant}"

    def log(self) -> str:
        body = self._log("out", datetime.now(UTC) - timedelta(days=8), "Test déploiement")
        return f"activity {body['activity']['id']} logged for lead {self.lead}"

    def sweep(self) -> str:
        body = self._call("POST", "sweep", "/api/alerts/sweep", headers=self.sweep_headers)
        created = sum(body["created"].values())
        if not created:
            raise StepFailed("the sweep raised no alert for the test lead")
        return f"the sweep raised {created} alert(s) in {body['duration_ms']} ms"

    def resolve(self) -> str:
        alerts = self._active()
        if not alerts:
            raise StepFailed(f"no active alert listed for lead {self.lead}")
        body = self._call("POST", "alerts", f"/api/alerts/{alerts[0]['id']}/resolve")
        if not body["alert"].get("resolved_at"):
            raise StepFailed("the alert was not resolved")
        return f"{alerts[0]['type']} alert {alerts[0]['id']} resolved"

    def clean_up(self) -> str:
        self._log("in", datetime.now(UTC), "Test déploiement: réponse")  # answers the lead: the rest resolves
        left = self._active()
        if left:
            raise StepFailed(f"{len(left)} alert(s) still active for lead {self.lead}")
        return f"no active alert left for lead {self.lead}"

    def run(self, out: Callable[[str], None] = print) -> int:
        steps = [self.health, self.list, self.log, self.sweep, self.resolve, self.clean_up]
        try:
            for step in steps:
                name = step.__name__.replace("_", " ")
                try:
                    out(f"ok    {name:<9} {step()}")
                except StepFailed as exc:
                    out(f"FAIL  {name:<9} {exc}")
                    return 1
            return 0
        finally:
            self.http.close()
