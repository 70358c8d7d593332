"""Email in: what one raw RFC 5322 message means for leadwatch, read with the standard library's
`email` package (`email.policy.default`).

- A reply: the sender's address (→ the lead), its Message-ID (→ the external id: a message
  delivered twice is stored once), its Date (→ when it occurred) and a snippet of the new text only,
  not the quoted history.
- An automatic reply (RFC 3834 `Auto-Submitted`, `X-Autoreply`, `X-Autorespond`, `Precedence`,
  out-of-office subjects in English and French): stored with the status `auto_reply`, which the
  rules do not count as contact.
- A bounce (RFC 3464 `multipart/report; report-type=delivery-status` reporting a failure): the send
  it reports, found by its original Message-ID, becomes a failed send.

What cannot be read raises `Unreadable`; the webhook keeps the message whole and answers 200.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser, HeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

from ..errors import BadRequest
from ..safejson import clean_text

SNIPPET_CHARS = 100
AUTO_REPLY = "auto_reply"
# Out-of-office subjects (English and French), as Outlook, Gmail and common autoresponders write them.
_AUTO_SUBJECT = re.compile(
    r"(^|\W)(automatic reply|auto[- ]?reply|autoreply|out of (the )?office|away from (the )?office|"
    r"r[ée]ponse automatique|absent(e)? du bureau|absence du bureau|message d'absence|"
    r"r[ée]ponse en cas d'absence|en cong[ée]s?\b)",
    re.IGNORECASE,
)
# Where the quoted history of a reply begins (the lines from there on are not the sender's new words).
_QUOTE_HEADERS = [
    re.compile(r"^\s*On\b.{0,300}\bwrote\s*:\s*$", re.IGNORECASE | re.DOTALL),  # Gmail, Apple Mail, Thunderbird
    re.compile(r"^\s*Le\b.{0,300}\ba\s+[ée]crit\s*:\s*$", re.IGNORECASE | re.DOTALL),  # the same, in French
    re.compile(r"^\s*-{2,}\s*(Original Message|Message d'origine|Message original)\s*-{2,}\s*$", re.IGNORECASE),
    re.compile(r"^\s*_{10,}\s*$"),  # Outlook's rule above the quoted message's headers
    re.compile(r"^\s*-- ?$"),  # the signature separator
]
_OUTLOOK_FROM = re.compile(r"^\s*\*?(From|De)\s*:\*?\s.+", re.IGNORECASE)  # Outlook's quoted headers begin...
_OUTLOOK_NEXT = re.compile(r"^\s*\*?(Sent|Date|Envoy[ée]|To|[ÀA])\s*:", re.IGNORECASE)  # ...and go on like this
_DSN_FAILED = {"failed"}


class Unreadable(BadRequest):
    """A message leadwatch cannot read (no sender, not an email): kept whole as a dead letter."""


@dataclass(frozen=True)
class InboundEmail:
    """An email to log for the lead with the sender's address."""

    sender: str
    sender_name: str | None
    external_id: str
    occurred_at: datetime
    snippet: str | None
    subject: str | None
    auto_reply: bool
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return AUTO_REPLY if self.auto_reply else "received"


@dataclass(frozen=True)
class Bounce:
    """A delivery-status report: the send whose Message-ID is `external_id` did not arrive."""

    external_id: str
    recipient: str | None
    status: str | None  # the RFC 3463 status code (5.1.1), when the report gives one


@dataclass(frozen=True)
class NotABounce:
    """A delivery-status report of no failure (delayed, delivered, relayed): nothing to change."""

    action: str


def read_email(raw: bytes, now: datetime | None = None) -> InboundEmail | Bounce | NotABounce:
    """What the raw message means; Unreadable names what is missing or malformed."""
    if not raw.strip():
        raise Unreadable("the message is empty")
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception as exc:  # noqa: BLE001 -- the parser is lenient; whatever it still refuses is unreadable, not a defect
        raise Unreadable(f"the message cannot be parsed: {str(exc)[:200]}") from None
    if not isinstance(message, EmailMessage) or not any(key.lower() == "from" for key in message):
        raise Unreadable("the message has no From header (is it an RFC 5322 message?)", {"field": "From"})
    if _is_delivery_report(message):
        return _bounce(message)
    sender_name, sender = _sender(message)
    return InboundEmail(
        sender=sender,
        sender_name=sender_name,
        external_id=_message_id(message) or _digest_id(raw),
        occurred_at=_date(message, now or datetime.now(UTC)),
        snippet=snippet_of(message),
        subject=clean_text(_header(message, "Subject") or "")[:200] or None,
        auto_reply=is_auto_reply(message),
        meta={"provider": "email", "subject": clean_text(_header(message, "Subject") or "")[:200] or None},
    )


def is_auto_reply(message: Message) -> bool:
    """Is this an automatic answer (RFC 3834 and the headers and subjects autoresponders use)?"""
    auto_submitted = (_header(message, "Auto-Submitted") or "").split(";")[0].strip().lower()
    if auto_submitted and auto_submitted != "no":
        return True
    if _header(message, "X-Autoreply") is not None or _header(message, "X-Autorespond") is not None:
        return True
    if (_header(message, "Precedence") or "").strip().lower() in {"auto_reply", "bulk", "junk"}:
        return True
    return bool(_AUTO_SUBJECT.search(_header(message, "Subject") or ""))


def snippet_of(message: EmailMessage) -> str | None:
    """At most SNIPPET_CHARS characters of the new text (text/plain preferred, else text/html stripped),
    without the quoted history or signature."""
    try:
        body = message.get_body(preferencelist=("plain", "html"))
        if body is None:
            return None
        content = body.get_content()
    except (LookupError, ValueError, AssertionError, KeyError):  # an unknown charset or a broken part
        return None
    if not isinstance(content, str):
        return None
    text = _html_text(content) if body.get_content_subtype() == "html" else content
    words = " ".join(new_text(text).split())
    return clean_text(words)[:SNIPPET_CHARS].rstrip() or None


def new_text(text: str) -> str:
    """The lines of a reply above its quoted history: `>` lines dropped, cut at "On … wrote:",
    "Le … a écrit :", Outlook's "-----Original Message-----" / "From:" block, or a signature."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    for n, line in enumerate(lines):
        two = line + " " + lines[n + 1] if n + 1 < len(lines) else line  # "On …" wrapped onto two lines
        if any(pattern.match(line) for pattern in _QUOTE_HEADERS) or any(
            pattern.match(two) for pattern in _QUOTE_HEADERS[:2]
        ):
            break
        if _OUTLOOK_FROM.match(line) and n + 1 < len(lines) and _OUTLOOK_NEXT.match(lines[n + 1]):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    return "\n".join(kept).strip()


class _HtmlText(HTMLParser):
    """The visible text of an HTML body, without quoted parts (blockquote, Gmail's and Outlook's quotes)."""

    _SKIP = frozenset({"style", "script", "head", "title", "blockquote"})
    _BREAK = frozenset({"br", "p", "div", "tr", "li", "h1", "h2", "h3", "hr"})
    _VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping: list[str] = []  # the open tags whose content is skipped
        self._stopped = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if attributes.get("id") in ("divRplyFwdMsg", "appendonsend") or "gmail_quote" in classes:
            self._stopped = True  # what follows is the quoted message
        if tag in self._BREAK:
            self.parts.append("\n")
        if tag in self._SKIP and tag not in self._VOID:
            self._skipping.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._skipping and self._skipping[-1] == tag:
            self._skipping.pop()
        if tag in self._BREAK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping and not self._stopped:
            self.parts.append(data)


def _html_text(html: str) -> str:
    parser = _HtmlText()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):
        pass
    return "".join(parser.parts)


def _header(message: Message, name: str) -> str | None:
    try:
        value = message.get(name)
    except (ValueError, IndexError, TypeError):  # a header the policy cannot parse
        return None
    return None if value is None else str(value)


def _sender(message: EmailMessage) -> tuple[str | None, str]:
    try:
        raw = message.get_all("From", [])
        addresses = [(name, address) for name, address in getaddresses([str(v) for v in raw]) if "@" in address]
    except (ValueError, TypeError, IndexError, AttributeError):  # a From the header parser cannot take apart
        addresses = []
    if not addresses:
        raise Unreadable("the From header holds no email address", {"field": "From"})
    name, address = addresses[0]
    local, _, domain = address.rpartition("@")
    if not local or not domain or len(address) > 320 or re.search(r"\s", address):
        raise Unreadable("the From header holds no email address", {"field": "From"})
    return clean_text(name)[:200] or None, clean_text(address)


def _message_id(message: Message) -> str | None:
    value = (_header(message, "Message-ID") or "").strip()
    found = re.search(r"<[^<>\s]{1,500}>", value)
    return found.group(0) if found else (value[:500] or None)


def _digest_id(raw: bytes) -> str:
    """A message without a Message-ID is known by its bytes: delivered twice, it is still stored once."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _date(message: Message, now: datetime) -> datetime:
    """The Date header (UTC when it names no zone); `now` when missing, unreadable or in the future."""
    value = _header(message, "Date")
    try:
        when = parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError, IndexError):
        when = None
    if when is None:
        return now
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when > now + timedelta(minutes=1) or when.year < 2001:
        return now
    return when


# Bounces ------------------------------------------------------------------------------------------


def _is_delivery_report(message: Message) -> bool:
    return message.get_content_type() == "multipart/report" and (
        str(message.get_param("report-type") or "").lower() == "delivery-status"
    )


def _bounce(report: Message) -> Bounce | NotABounce:
    actions, recipient, status = _delivery_status(report)
    if actions and not actions & _DSN_FAILED:
        return NotABounce(min(actions))
    original = _original_message_id(report)
    if original is None:
        raise Unreadable("the delivery report names no original Message-ID", {"field": "Message-ID"})
    return Bounce(external_id=original, recipient=recipient, status=status)


def _delivery_status(report: Message) -> tuple[set[str], str | None, str | None]:
    """The per-recipient actions of the report (failed, delayed, ...), and the first failed recipient and status."""
    actions: set[str] = set()
    recipient = status = None
    for part in report.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        blocks = payload if isinstance(payload, list) else []
        for block in blocks:
            if not isinstance(block, Message):
                continue
            action = (_header(block, "Action") or "").strip().lower()
            if not action:
                continue
            actions.add(action)
            if action in _DSN_FAILED and recipient is None:
                final = _header(block, "Final-Recipient") or _header(block, "Original-Recipient") or ""
                recipient = clean_text(final.partition(";")[2].strip() or final.strip())[:320] or None
                status = clean_text((_header(block, "Status") or "").strip())[:20] or None
    return actions, recipient, status


def _original_message_id(report: Message) -> str | None:
    """The Message-ID of the message the report returns (its message/rfc822 or text/rfc822-headers
    part), else what the report says it answers (In-Reply-To, References)."""
    for part in report.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message) and (found := _message_id(inner)):
                return found
        elif kind == "text/rfc822-headers":
            data = part.get_payload(decode=True)
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(part.get_payload())
            if found := _message_id(HeaderParser().parsestr(text)):
                return found
    for name in ("In-Reply-To", "References"):
        ids: list[str] = re.findall(r"<[^<>\s]{1,500}>", _header(report, name) or "")
        if ids:
            return ids[-1] if name == "References" else ids[0]
    return None
