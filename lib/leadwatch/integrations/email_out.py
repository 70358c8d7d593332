"""Email out: composing a follow-up and handing it to an SMTP server (the standard library's smtplib).

`LEADWATCH_SMTP_URL` names the server and how to reach it:

- `smtp://user:pass@host:587` — STARTTLS (required: the credentials never travel in clear);
- `smtps://user:pass@host:465` — implicit TLS;
- `smtp://host:25` without credentials — plain SMTP, for a local relay.

Whatever sends goes through an `EmailSender` (one method, `send`), so that another sender (a
development outbox) can stand in for `SmtpSender`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from email.utils import make_msgid, parseaddr
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit

from ..errors import ConfigError, LeadwatchError

if TYPE_CHECKING:  # composing and sending are imported at the first send, not at every cold start
    import ssl
    from email.message import EmailMessage

SMTP_URL = "LEADWATCH_SMTP_URL"
EMAIL_FROM = "LEADWATCH_EMAIL_FROM"
_DEFAULT_PORTS = {"starttls": 587, "tls": 465, "plain": 25}


class EmailSender(Protocol):
    """Delivers one composed message (raising EmailError naming the cause when it cannot)."""

    def send(self, message: EmailMessage) -> None: ...


class EmailError(LeadwatchError):
    """The mail server refused or failed a send; `code` names the cause."""

    def __init__(self, code: str, message: str, details: Any = None, status: int = 502) -> None:
        super().__init__(message, details)
        self.code, self.status = code, status


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to reach the SMTP server: `mode` is 'starttls', 'tls' (implicit) or 'plain'."""

    host: str
    port: int
    mode: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_smtp_url(url: str, name: str = SMTP_URL) -> SmtpTarget:
    """The SMTP server of `url` (see the module's docstring); ConfigError naming `name` when malformed."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{name} is not a valid URL: {exc}") from None
    if parts.scheme not in ("smtp", "smtps"):
        raise ConfigError(f"{name} must start with smtp:// or smtps://, got {parts.scheme or '(none)'}://")
    if not parts.hostname:
        raise ConfigError(f"{name} names no host (smtp://user:pass@host:587)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{name} takes no path or query: smtp[s]://[user:pass@]host[:port]")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if (username is None) != (password is None):
        raise ConfigError(f"{name} has a user without a password (or the reverse): give both, or neither")
    mode = "tls" if parts.scheme == "smtps" else "starttls" if username else "plain"
    return SmtpTarget(parts.hostname, port or _DEFAULT_PORTS[mode], mode, username, password)


def parse_from_address(value: str, name: str = EMAIL_FROM) -> str:
    """A From address (`sales@acme.example` or `Acme Sales <sales@acme.example>`), else ConfigError naming `name`."""
    _display, address = parseaddr(value)
    if not address or address.count("@") != 1 or not all(address.split("@")) or "\n" in value or "\r" in value:
        raise ConfigError(f"{name} must be an email address such as 'Acme Sales <sales@acme.example>', got {value!r}")
    return value.strip()


def compose(
    *, sender: str, to: str, to_name: str | None, subject: str, text: str, message_id: str | None = None
) -> EmailMessage:
    """A plain-text UTF-8 message with its Message-ID (made here unless given) and Date."""
    from email.headerregistry import Address
    from email.message import EmailMessage
    from email.utils import formatdate

    message = EmailMessage()
    try:
        message["To"] = Address(display_name=" ".join((to_name or "").split()), addr_spec=to)
    except (ValueError, TypeError, IndexError):  # HeaderParseError and the address defects are ValueErrors
        raise EmailError(
            "email_bad_address", "the lead's email address cannot be written to", {"field": "email"}, status=422
        ) from None
    message["From"] = sender
    message["Subject"] = " ".join(subject.split())  # one line, whatever the rule's template holds
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = message_id or make_msgid(domain=domain_of(sender))
    message["Auto-Submitted"] = "no"  # RFC 3834: a person's follow-up, which a correspondent may auto-answer
    message.set_content(text)
    return message


def domain_of(address: str) -> str:
    """The domain of an address (`Acme <sales@acme.example>` → acme.example), for Message-IDs."""
    return parseaddr(address)[1].rpartition("@")[2] or "leadwatch.invalid"


def make_msgid_for(sender: str) -> str:
    """A new, unique Message-ID in the sender's domain."""
    return make_msgid(domain=domain_of(sender))


def message_id_for(tenant: str, idempotency_key: str, sender: str) -> str:
    """The Message-ID of the send made under an Idempotency-Key: the same for every retry."""
    digest = hashlib.sha256(f"{tenant}\0{idempotency_key}".encode()).hexdigest()[:32]
    return f"<{digest}@{domain_of(sender)}>"


class SmtpSender:
    """Sends through one SMTP server, one connection per message (a send is a user's click, not a batch)."""

    def __init__(self, target: SmtpTarget, *, timeout: float = 20.0, context: ssl.SSLContext | None = None) -> None:
        self.target = target
        self._timeout = timeout
        self._context = context  # None: the system's trusted certificates

    def send(self, message: EmailMessage) -> None:
        import smtplib
        import ssl

        target = self.target
        context = self._context or ssl.create_default_context()
        try:
            if target.mode == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    target.host, target.port, timeout=self._timeout, context=context
                )
            else:
                client = smtplib.SMTP(target.host, target.port, timeout=self._timeout)
            with client:
                if target.mode == "starttls":
                    try:
                        client.starttls(context=context)
                    except smtplib.SMTPNotSupportedError:
                        raise EmailError("email_tls_unavailable", "the mail server does not offer STARTTLS") from None
                if target.username is not None and target.password is not None:
                    try:
                        client.login(target.username, target.password)
                    except smtplib.SMTPNotSupportedError:
                        raise EmailError("email_auth_unavailable", "the mail server does not offer AUTH") from None
                refused = client.send_message(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise EmailError("email_auth_rejected", "the mail server rejected the credentials", _reply(exc)) from None
        except smtplib.SMTPRecipientsRefused as exc:
            (code, reply), *_ = exc.recipients.values()
            raise EmailError(
                "email_recipient_refused",
                "the mail server refused the recipient",
                details={"smtp_code": code, "reason": _text(reply)},
            ) from None
        except smtplib.SMTPSenderRefused as exc:
            raise EmailError("email_sender_refused", "the mail server refused the From address", _reply(exc)) from None
        except smtplib.SMTPResponseException as exc:
            raise EmailError("email_rejected", f"the mail server answered {exc.smtp_code}", _reply(exc)) from None
        except (TimeoutError, ssl.SSLError, OSError, smtplib.SMTPException) as exc:
            timeout = isinstance(exc, TimeoutError)
            raise EmailError(
                "email_timeout" if timeout else "email_unreachable",
                "the mail server did not answer in time" if timeout else "the mail server cannot be reached",
                {"reason": str(exc)[:200]},
                status=504 if timeout else 502,
            ) from None
        if refused:  # the recipients refused while others were accepted (a message has one recipient here)
            raise EmailError("email_recipient_refused", "the mail server refused the recipient")


def _reply(exc: Any) -> dict[str, Any]:
    return {"smtp_code": exc.smtp_code, "reason": _text(exc.smtp_error)}


def _text(reply: Any) -> str:
    return (reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply))[:200]


@dataclass(frozen=True)
class EmailChannel:
    """A deployment's email: the sender (None: sending is not configured), the default From address,
    and the tokens of the inbound webhook, one per tenant (LEADWATCH_EMAIL_WEBHOOK_TOKENS)."""

    sender: EmailSender | None = None
    default_from: str | None = None
    webhook_tokens: tuple[tuple[str, str], ...] = field(default=(), repr=False)
