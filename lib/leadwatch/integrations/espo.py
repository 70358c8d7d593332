"""EspoCRM: look up an unknown WhatsApp number among the CRM's leads."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..models.requests import LeadIn

log = logging.getLogger("leadwatch.espo")


class EspoCrm:
    def __init__(self, url: str, api_key: str, *, timeout: float = 5.0) -> None:
        self._url, self._key, self._timeout = url.rstrip("/"), api_key, timeout

    def find_lead(self, phone: str) -> LeadIn | None:
        """The CRM lead with this phone (E.164), or None — also when EspoCRM cannot be asked, so that
        the message is still stored (under a provisional lead) rather than lost."""
        import httpx
        from pydantic import ValidationError

        from ..models.requests import LeadIn

        params: dict[str, Any] = {
            "where[0][type]": "equals",
            "where[0][attribute]": "phoneNumber",
            "where[0][value]": phone,
            "maxSize": 1,
            "select": "id,name,emailAddress,phoneNumber,assignedUserId",
        }
        try:
            response = httpx.get(
                f"{self._url}/api/v1/Lead", params=params, headers={"X-Api-Key": self._key}, timeout=self._timeout
            )
            response.raise_for_status()
            found = response.json().get("list") or []
        except (httpx.HTTPError, ValueError, AttributeError):
            log.warning("EspoCRM lookup failed; the number is kept as a provisional lead")
            return None
        if not found:
            return None
        lead = found[0]
        fields: dict[str, Any] = {"leadId": str(lead["id"]), "name": lead.get("name") or None, "phone": phone}
        try:
            return LeadIn(**fields, email=lead.get("emailAddress") or None)
        except ValidationError:  # an address our directory would refuse: keep the lead without it
            return LeadIn(**fields)

    def find_lead_by_email(self, email: str) -> LeadIn | None:
        """The CRM lead with this email address, or None — also when EspoCRM cannot be asked, so that
        the email is still stored (under a provisional lead) rather than lost."""
        import httpx
        from pydantic import ValidationError

        from ..models.requests import LeadIn

        params: dict[str, str | int] = {
            "where[0][type]": "equals",
            "where[0][attribute]": "emailAddress",
            "where[0][value]": email,
            "maxSize": 1,
            "select": "id,name,emailAddress,phoneNumber,assignedUserId",
        }
        try:
            response = httpx.get(
                f"{self._url}/api/v1/Lead", params=params, headers={"X-Api-Key": self._key}, timeout=self._timeout
            )
            response.raise_for_status()
            found = response.json().get("list") or []
        except (httpx.HTTPError, ValueError, AttributeError):
            log.warning("EspoCRM lookup failed; the address is kept as a provisional lead")
            return None
        if not found:
            return None
        lead = found[0]
        # Its address only: a phone from the CRM could already belong to another lead of the directory.
        try:
            return LeadIn(leadId=str(lead["id"]), name=lead.get("name") or None, email=email)
        except ValidationError:
            return None
