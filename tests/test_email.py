"""Email: sends through a real SMTP server on loopback (aiosmtpd), and the inbound webhook fed raw messages
built with the `email` package in the shapes real clients produce; the database is real, through each store."""

from __future__ import annotations

import email
import email.policy
import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from helpers import active, add_leads, ago, free_port, log
from leadwatch import ConfigError, load_settings
from leadwatch.devtools.dev import create_app
from leadwatch.http.app import Api
from leadwatch.http.identity import OpenAccess
from leadwatch.integrations.email_in import Bounce, InboundEmail, NotABounce, Unreadable, read_email
from leadwatch.integrations.email_out import EmailChannel, SmtpSender, SmtpTarget, parse_smtp_url
from leadwatch.integrations.espo import EspoCrm

FROM = "Acme Sales <sales@acme.example>"
TOKEN = "hook-acme-email-0001"
HOOK = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "message/rfc822"}
SOPHIE = "sophie.martin@example.fr"
ESPO_URL = "https://crm.example.com"


# A real SMTP server ------------------------------------------------------------------------------


class Inbox:
    """What the SMTP server accepted (envelope and parsed message), refusing recipients named `refuse*`."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], EmailMessage]] = []
        self.logins: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 -- aiosmtpd's hook name
        if address.startswith("refuse"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 -- aiosmtpd's hook name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"leadwatch" and auth_data.password == b"s3cret:pass"
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535 itself


@pytest.fixture
def smtp():
    """A plain SMTP server on loopback (a local relay): (inbox, port)."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (server context, client context trusting it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    client = ssl.create_default_context(cafile=str(folder / "cert.pem"))
    return server, client


# Fixtures ----------------------------------------------------------------------------------------


@pytest.fixture
def email_tables(db):
    db.execute("truncate email_rejected, email_sends, email_senders")
    return db


@pytest.fixture
def mail(store, email_tables, smtp):
    """(client, store, db, inbox) with acme's lead Sophie known by address, sending through the loopback server."""
    inbox, port = smtp
    channel = EmailChannel(SmtpSender(SmtpTarget("127.0.0.1", port, "plain"), timeout=5), FROM, (("acme", TOKEN),))
    api = Api(store, OpenAccess(), email=channel)
    add_leads(store, SOPHIE_ID={"name": "Sophie Martin", "email": "Sophie.Martin@Example.fr"})
    return create_app(api).test_client(), store, email_tables, inbox


def activities(db, channel="email"):
    return db.execute(
        "select lead_id, direction, status, message_snippet, occurred_at, external_id, meta "
        "from lead_activities where channel = %s order by created_at, id",
        [channel],
    ).fetchall()


def hook(client, raw: bytes, headers=HOOK, path="/webhooks/email"):
    return client.post(path, headers=headers, data=raw)


# Messages as clients write them --------------------------------------------------------------------

WHEN = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def reply(
    text="Oui, jeudi 10h me convient.",
    *,
    sender=f"Sophie Martin <{SOPHIE}>",
    message_id="<CAF=xq8Zr2v@mail.gmail.com>",
    subject="Re: Votre projet",
    when=WHEN,
    charset="utf-8",
    **headers,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = FROM
    message["Subject"] = subject
    message["Date"] = format_datetime(when)
    message["Message-ID"] = message_id
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(text, charset=charset)
    return message


def gmail_reply() -> EmailMessage:
    """Gmail: text/plain and text/html alternatives, the history quoted after a wrapped "On … wrote:"."""
    plain = (
        "Oui, jeudi 10h me convient. Merci !\n\n"
        "On Mon, Dec 7, 2026 at 9:12 AM Acme Sales <sales@acme.example>\nwrote:\n\n"
        "> Hello Sophie, did you get my last message?\n> Let me know.\n"
    )
    html = (
        '<div dir="ltr">Oui, jeudi 10h me convient. Merci !</div><br><div class="gmail_quote">'
        '<div dir="ltr" class="gmail_attr">On Mon, Dec 7, 2026 at 9:12 AM Acme Sales wrote:<br></div>'
        '<blockquote class="gmail_quote">Hello Sophie, did you get my last message?</blockquote></div>'
    )
    message = reply(plain)
    message.add_alternative(html, subtype="html")
    return message


def outlook_reply(html_only=False) -> EmailMessage:
    """Outlook: the new text, a rule, then the quoted message's From/Sent/To/Subject block."""
    plain = (
        "Bonjour, le devis me va, on signe la semaine prochaine.\r\n\r\n"
        "________________________________\r\n"
        "From: Acme Sales <sales@acme.example>\r\n"
        "Sent: Monday, December 7, 2026 9:12 AM\r\n"
        f"To: Sophie Martin <{SOPHIE}>\r\n"
        "Subject: Votre devis\r\n\r\nHello Sophie, here is the quote.\r\n"
    )
    html = (
        "<html><head><style>p {margin:0}</style></head><body>"
        "<div>Bonjour, le devis me va, on signe la semaine prochaine.</div>"
        '<hr style="display:inline-block;width:98%"><div id="divRplyFwdMsg"><b>From:</b> Acme Sales'
        "<br><b>Sent:</b> Monday, December 7, 2026 9:12 AM</div><div>Hello Sophie, here is the quote.</div>"
        "</body></html>"
    )
    message = reply(plain, message_id="<AM0PR01MB1234@AM0PR01MB1234.eurprd01.prod.outlook.com>")
    if html_only:
        message.set_content(html, subtype="html")
    else:
        message.add_alternative(html, subtype="html")
    return message


def bounce_of(sent: EmailMessage, *, action="failed", headers_only=False) -> bytes:
    """A Postfix delivery-status notification (RFC 3464) returning `sent`."""
    original = sent.as_bytes(policy=email.policy.SMTP)
    returned = original.split(b"\r\n\r\n", 1)[0] + b"\r\n" if headers_only else original
    kind = "text/rfc822-headers" if headers_only else "message/rfc822"
    status = "5.1.1" if action == "failed" else "4.4.1"
    return (
        b"From: MAILER-DAEMON@mx.acme.example (Mail Delivery System)\r\n"
        b"To: sales@acme.example\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\n"
        b"Date: " + format_datetime(WHEN).encode() + b"\r\n"
        b"Message-ID: <20261207091301.1A2B3C@mx.acme.example>\r\n"
        b"Auto-Submitted: auto-replied\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"\r\n\r\n'
        b"--BOUNDARY\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        b"I'm sorry to have to inform you that your message could not be delivered.\r\n\r\n"
        b"--BOUNDARY\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.acme.example\r\nArrival-Date: Mon, 7 Dec 2026 09:13:00 +0000\r\n\r\n"
        b"Final-Recipient: rfc822; " + SOPHIE.encode() + b"\r\n"
        b"Action: " + action.encode() + b"\r\nStatus: " + status.encode() + b"\r\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n"
        b"--BOUNDARY\r\nContent-Type: " + kind.encode() + b"\r\n\r\n" + returned + b"\r\n--BOUNDARY--\r\n"
    )


# Reading messages ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "snippet"),
    [
        (gmail_reply(), "Oui, jeudi 10h me convient. Merci !"),
        (outlook_reply(), "Bonjour, le devis me va, on signe la semaine prochaine."),
        (outlook_reply(html_only=True), "Bonjour, le devis me va, on signe la semaine prochaine."),
        (
            reply("Très bien, ça me va.\n\nLe lun. 7 déc. 2026 à 09:12, Acme Sales <sales@acme.example> a écrit :\n>"),
            "Très bien, ça me va.",
        ),
        (reply("Très bien, ça me va.", charset="iso-8859-1"), "Très bien, ça me va."),
        (reply("D’accord pour 1 200 € – à jeudi.", charset="windows-1252"), "D’accord pour 1 200 € – à jeudi."),
        (
            reply("Voici mon avis.\n\n-----Original Message-----\nFrom: Acme Sales\nSent: Monday\n\nHello"),
            "Voici mon avis.",
        ),
        (reply("Merci.\n-- \nSophie Martin\nDirectrice"), "Merci."),
        (reply("word " * 60), ("word " * 20).strip()),
    ],
    ids=["gmail", "outlook", "outlook-html-only", "french-quote", "iso-8859-1", "windows-1252", "original-message",
         "signature", "cut-at-100"],
)  # fmt: skip
def test_the_snippet_is_the_new_text_without_the_quoted_history(message, snippet):
    read = read_email(message.as_bytes())
    assert isinstance(read, InboundEmail) and read.snippet == snippet[:100]
    assert len(read.snippet) <= 100


def test_non_utf8_charsets_are_decoded_on_the_wire():
    """The body really travels in the legacy charset (not UTF-8), and is read back right."""
    raw = reply("Très bien, ça me va.", charset="iso-8859-1").as_bytes()
    assert "iso-8859-1" in raw.decode("ascii", "replace")
    assert "Très".encode() not in raw
    assert read_email(raw).snippet == "Très bien, ça me va."


def test_an_attachment_is_not_the_text():
    message = reply("Voici le bon de commande signé.")
    message.add_attachment(b"%PDF-1.7\n" + bytes(range(256)) * 40, maintype="application", subtype="pdf",
                           filename="bon-de-commande.pdf")  # fmt: skip
    read = read_email(message.as_bytes())
    assert message.get_content_type() == "multipart/mixed"
    assert read.snippet == "Voici le bon de commande signé."


def test_the_reply_gives_sender_message_id_and_date():
    read = read_email(reply(sender='"Martin, Sophie" <Sophie.Martin@Example.FR>').as_bytes())
    assert (read.sender, read.sender_name) == ("Sophie.Martin@Example.FR", "Martin, Sophie")
    assert read.external_id == "<CAF=xq8Zr2v@mail.gmail.com>" and read.occurred_at == WHEN
    assert read.auto_reply is False and read.status == "received"


def test_a_date_in_the_future_or_missing_is_when_it_arrived():
    now = datetime.now(UTC)
    assert read_email(reply(when=now + timedelta(days=2)).as_bytes(), now=now).occurred_at == now
    missing = reply()
    del missing["Date"]
    assert read_email(missing.as_bytes(), now=now).occurred_at == now


@pytest.mark.parametrize(
    "headers",
    [
        {"Auto_Submitted": "auto-replied"},
        {"Auto_Submitted": "auto-generated; owner-email=sophie@example.fr"},
        {"X_Autoreply": "yes"},
        {"X_Autorespond": "Vacation"},
        {"Precedence": "auto_reply"},
        {"Precedence": "bulk"},
        {"Precedence": "junk"},
        {"subject": "Automatic reply: Votre projet"},
        {"subject": "Out of Office: Votre projet"},
        {"subject": "Réponse automatique : Votre projet"},
        {"subject": "Absence du bureau jusqu'au 4 janvier"},
        {"subject": "Message d'absence"},
    ],
    ids=lambda h: next(iter(h.values())),
)
def test_automatic_replies_are_recognised(headers):
    assert read_email(reply("Je suis absente jusqu'au 4 janvier.", **headers).as_bytes()).auto_reply is True


@pytest.mark.parametrize(
    "headers",
    [{"Auto_Submitted": "no"}, {"Precedence": "list"}, {"subject": "Re: Office move next week"}],
    ids=["auto-submitted-no", "precedence-list", "office-in-subject"],
)
def test_replies_from_people_are_not_automatic(headers):
    assert read_email(reply(**headers).as_bytes()).auto_reply is False


def test_a_bounce_names_the_send_it_returns():
    sent = reply(sender=FROM, message_id="<173@acme.example>")
    for raw in (bounce_of(sent), bounce_of(sent, headers_only=True)):
        read = read_email(raw)
        assert read == Bounce(external_id="<173@acme.example>", recipient=SOPHIE, status="5.1.1")
    assert read_email(bounce_of(sent, action="delayed")) == NotABounce("delayed")


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00\xff\xfe garbage, not an email", b"Subject: hello\r\n\r\nno sender at all\r\n",
     b"From: Sophie Martin\r\nSubject: hi\r\n\r\nno address\r\n"],
    ids=["empty", "binary", "no-from", "from-without-address"],
)  # fmt: skip
def test_what_is_not_an_email_is_unreadable(raw):
    with pytest.raises(Unreadable):
        read_email(raw)


# The inbound webhook ---------------------------------------------------------------------------------


def test_a_reply_is_an_inbound_email_of_the_lead_with_that_address(mail):
    client, _store, db, _ = mail
    response = hook(client, gmail_reply().as_bytes())
    assert response.status_code == 200 and response.get_json()["duplicate"] is False
    [row] = activities(db)
    assert row[:4] == ("SOPHIE_ID", "in", "received", "Oui, jeudi 10h me convient. Merci !")
    assert row[4] == WHEN and row[5] == "<CAF=xq8Zr2v@mail.gmail.com>"


def test_a_message_delivered_twice_is_stored_once(mail):
    client, _store, db, _ = mail
    first, again = hook(client, outlook_reply().as_bytes()), hook(client, outlook_reply().as_bytes())
    assert first.status_code == again.status_code == 200
    assert first.get_json()["duplicate"] is False and again.get_json()["duplicate"] is True
    assert len(activities(db)) == 1


def test_a_reply_resolves_no_reply_but_an_automatic_reply_does_not(mail):
    client, store, db, _ = mail
    log(store, lead="SOPHIE_ID", channel="email", direction="out", occurredAt=ago(days=4))
    store.sweep()
    assert active(db) == {("SOPHIE_ID", "NoReply3d"): "med"}
    before = db.execute("select * from lead_state where lead_id = 'SOPHIE_ID'").fetchone()

    out_of_office = reply("Je suis absente jusqu'au 4 janvier.", subject="Réponse automatique : Votre projet",
                          message_id="<ooo-1@example.fr>", Auto_Submitted="auto-replied")  # fmt: skip
    body = hook(client, out_of_office.as_bytes()).get_json()
    assert body["alerts"] == {"created": [], "resolved": []}
    assert active(db) == {("SOPHIE_ID", "NoReply3d"): "med"}
    assert [r[2] for r in activities(db)] == ["sent", "auto_reply"]
    assert db.execute("select * from lead_state where lead_id = 'SOPHIE_ID'").fetchone() == before

    body = hook(client, reply("Bien reçu, je reviens vers vous.").as_bytes()).get_json()
    assert body["alerts"]["resolved"] == ["NoReply3d"] and active(db) == {}


def test_an_automatic_reply_starts_no_cycle(mail):
    """A silent lead stays silent: its NoContact7d stays, and a later sweep still judges it from the old silence."""
    client, store, db, _ = mail
    log(store, lead="SOPHIE_ID", channel="email", direction="in", occurredAt=ago(days=8))
    store.sweep()
    hook(client, reply("Absente.", Auto_Submitted="auto-replied", message_id="<ooo-2@example.fr>").as_bytes())
    assert active(db) == {("SOPHIE_ID", "NoContact7d"): "med"}
    state = db.execute("select last_activity_at, last_inbound_at from lead_state where lead_id = 'SOPHIE_ID'")
    last_activity, last_inbound = state.fetchone()
    assert last_activity < ago(days=7) and last_inbound < ago(days=7)


def test_an_unknown_sender_becomes_a_provisional_lead(mail):
    client, _store, db, _ = mail
    hook(client, reply("Bonjour, je voudrais un devis.", sender="Jean Dupont <Jean.Dupont@Example.com>").as_bytes())
    lead = db.execute("select lead_id, name, email, provisional from leads where lead_id like 'email:%'").fetchone()
    assert lead == ("email:jean.dupont@example.com", "Jean Dupont", "Jean.Dupont@Example.com", True)
    assert activities(db)[0][0] == "email:jean.dupont@example.com"


def test_a_lead_given_the_address_of_a_provisional_lead_takes_it_over(mail):
    client, store, db, _ = mail
    hook(client, reply("Un devis ?", sender="Jean Dupont <Jean.Dupont@Example.com>").as_bytes())
    add_leads(store, CRM_42={"name": "Jean Dupont", "email": "jean.dupont@example.com"})
    assert db.execute("select lead_id, provisional from leads where lead_id <> 'SOPHIE_ID'").fetchall() == [
        ("CRM_42", False)
    ]
    assert [r[0] for r in activities(db)] == ["CRM_42"]
    hook(client, reply("Et le délai ?", sender="jean.dupont@example.com", message_id="<2@x>").as_bytes())
    assert [r[0] for r in activities(db)] == ["CRM_42", "CRM_42"]


def test_an_unknown_sender_is_looked_up_in_espocrm_first(store, email_tables, http_mock):
    route = http_mock.get(f"{ESPO_URL}/api/v1/Lead").mock(
        return_value=httpx.Response(200, json={"total": 1, "list": [{"id": "64f1c2", "name": "Jean Dupont",
                                                                      "emailAddress": "jean@example.com"}]})
    )  # fmt: skip
    api = Api(
        store, OpenAccess(), espo=EspoCrm(ESPO_URL, "espo-key"), email=EmailChannel(None, FROM, (("acme", TOKEN),))
    )
    client = create_app(api).test_client()
    assert hook(client, reply("Un devis ?", sender="jean@example.com").as_bytes()).status_code == 200
    assert route.calls[0].request.url.params["where[0][value]"] == "jean@example.com"
    assert email_tables.execute("select lead_id, name, provisional from leads").fetchall() == [
        ("64f1c2", "Jean Dupont", False)
    ]
    assert activities(email_tables)[0][0] == "64f1c2"


def test_the_webhook_token_names_the_tenant(mail, store):
    client, _, db, _ = mail
    wrong = hook(client, reply().as_bytes(), headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401 and activities(db) == []
    # the token, not X-Tenant, says whose message it is
    ok = hook(client, reply().as_bytes(), headers={**HOOK, "X-Tenant": "other"})
    assert ok.status_code == 200
    assert db.execute("select tenant_id from lead_activities").fetchall() == [("acme",)]
    # forwarders that cannot set a header pass it in the URL
    by_query = client.post(f"/webhooks/email?token={TOKEN}", data=reply(message_id="<q@x>").as_bytes())
    assert by_query.status_code == 200 and len(activities(db)) == 2


def test_the_dev_server_takes_x_tenant_without_a_token(mail):
    client, _, db, _ = mail
    response = hook(client, reply().as_bytes(), headers={"X-Tenant": "acme", "Content-Type": "message/rfc822"})
    assert response.status_code == 200 and len(activities(db)) == 1


def test_a_deployed_webhook_needs_its_token(store, email_tables):
    from leadwatch.http.identity import VerifiedAccess

    settings = load_settings({"DATABASE_URL": "postgresql://unused", "SUPABASE_JWT_SECRET": "x" * 32})
    api = Api(store, VerifiedAccess(settings), email=EmailChannel(None, FROM, (("acme", TOKEN),)))
    client = create_app(api).test_client()
    assert hook(client, reply().as_bytes(), headers={"X-Tenant": "acme"}).status_code == 401
    assert hook(client, reply().as_bytes()).status_code == 200


@pytest.mark.parametrize(("field", "path"), [("body-mime", "/webhooks/email/mime"), ("email", "/webhooks/email")])
def test_providers_forms_carrying_the_raw_message_are_read(mail, field, path):
    """Mailgun (forward() to a URL ending in `mime`: `body-mime`) and SendGrid Inbound Parse ("POST the raw,
    full MIME message": `email`) post the message as a form field, beside parsed copies."""
    client, _, db, _ = mail
    form = {field: gmail_reply().as_string(), "subject": "Re: Votre projet", "from": SOPHIE}
    response = client.post(path, headers={"Authorization": f"Bearer {TOKEN}"}, data=form)
    assert response.status_code == 200, response.get_json()
    assert activities(db)[0][3] == "Oui, jeudi 10h me convient. Merci !"


def test_an_unreadable_message_is_kept_aside_and_answered_200(mail):
    client, _, db, _ = mail
    raw = b"Subject: hello\r\n\r\nno sender at all\r\n"
    response = hook(client, raw)
    assert response.status_code == 200 and "From" in response.get_json()["rejected"]["reason"]
    assert activities(db) == []
    assert db.execute("select tenant_id, raw from email_rejected").fetchall() == [("acme", raw)]
    listed = client.get("/api/email/rejected", headers={"X-Tenant": "acme"}).get_json()
    import base64

    assert base64.b64decode(listed["rejected"][0]["raw_base64"]) == raw


def test_a_message_over_the_size_limit_is_kept_cut(mail):
    client, _, db, _ = mail
    message = reply("Voici les plans.")
    message.add_attachment(b"\x89PNG" + b"\x00" * (1024 * 1024), maintype="image", subtype="png", filename="plan.png")
    raw = message.as_bytes()
    response = hook(client, raw)
    assert response.status_code == 200 and "over 1024 KiB" in response.get_json()["rejected"]["reason"]
    [(kept,)] = db.execute("select raw from email_rejected").fetchall()
    assert kept == raw[: 1024 * 1024] and activities(db) == []


# Sending ---------------------------------------------------------------------------------------------


def _email_rule(db, tenant="acme", locale="fr"):
    """The tenant's NoContact7d rule sends an email (its text and subject from the defaults)."""
    db.execute(
        """insert into alert_rules (tenant_id, type, threshold, severity, escalate_after, escalated_severity,
                                    locale, messages, action)
           select %s, type, threshold, severity, escalate_after, escalated_severity, %s, messages,
                  jsonb_set(jsonb_set(action, '{action}', '"send_email"'), '{label}',
                            '{"fr": "Relancer par email", "en": "Follow up by email"}')
           from alert_rules where tenant_id = '*' and type = 'NoContact7d'""",
        [tenant, locale],
    )


def _silent_sophie(store, db):
    _email_rule(db)
    log(store, lead="SOPHIE_ID", channel="email", direction="in", occurredAt=ago(days=8))
    store.sweep()
    return db.execute("select id::text from max_alerts where lead_id = 'SOPHIE_ID'").fetchone()[0]


def test_the_send_email_action_sends_the_rules_email_and_logs_it(mail):
    client, store, db, inbox = mail
    alert_id = _silent_sophie(store, db)
    response = client.post(f"/api/alerts/{alert_id}/action", headers={"X-Tenant": "acme"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()

    [(mail_from, rcpt_tos, message)] = inbox.received
    assert mail_from == "sales@acme.example" and rcpt_tos == ["Sophie.Martin@Example.fr"]
    assert message["From"] == FROM and message["To"] == "Sophie Martin <Sophie.Martin@Example.fr>"
    assert message["Subject"] == "Des nouvelles de votre projet ?"
    assert message.get_content().startswith("Bonjour Sophie Martin, je reviens vers vous")
    assert message["Message-ID"] == body["sent"]["messageId"] == body["activity"]["external_id"]
    assert message["Message-ID"].endswith("@acme.example>")
    assert body["alerts"]["resolved"] == ["NoContact7d"] and active(db) == {}
    out = [r for r in activities(db) if r[1] == "out"]
    assert [(r[2], r[6]["subject"]) for r in out] == [("sent", "Des nouvelles de votre projet ?")]


def test_an_admin_turns_a_rules_follow_up_into_an_email(mail):
    """PUT /api/rules: the follow-up's channel and the email's subject; the alerts raised after use them."""
    client, store, db, inbox = mail
    changed = client.put(
        "/api/rules/NoContact7d",
        headers={"X-Tenant": "acme"},
        json={"action": "send_email", "actionSubject": {"fr": "Un point sur votre projet, {name} ?"}},
    )
    assert changed.status_code == 200, changed.get_json()
    action = changed.get_json()["rule"]["action"]
    assert action["action"] == "send_email" and action["label"]["fr"] == "Relancer par email"
    log(store, lead="SOPHIE_ID", channel="email", direction="in", occurredAt=ago(days=8))
    store.sweep()
    alert_id = db.execute("select id::text from max_alerts").fetchone()[0]
    assert client.post(f"/api/alerts/{alert_id}/action", headers={"X-Tenant": "acme"}).status_code == 200
    assert inbox.received[0][2]["Subject"] == "Un point sur votre projet, Sophie Martin ?"


def test_a_rule_without_a_text_cannot_send(mail):
    client, _store, db, _inbox = mail
    response = client.put("/api/rules/HighValueRisk", headers={"X-Tenant": "acme"}, json={"action": "send_email"})
    assert response.status_code == 422 and response.get_json()["error"]["details"][0]["field"] == "actionText"
    bad = client.put("/api/rules/NoReply3d", headers={"X-Tenant": "acme"}, json={"actionSubject": {"fr": "a\nBcc: x"}})
    assert bad.status_code == 422 and bad.get_json()["error"]["details"][0]["field"].startswith("actionSubject")
    assert db.execute("select count(*) from alert_rules where tenant_id = 'acme'").fetchone()[0] == 0


def test_the_rules_email_is_in_the_tenants_language(mail):
    client, store, db, inbox = mail
    _email_rule(db, locale="en")
    log(store, lead="SOPHIE_ID", channel="email", direction="in", occurredAt=ago(days=8))
    store.sweep()
    alert_id = db.execute("select id::text from max_alerts").fetchone()[0]
    assert client.post(f"/api/alerts/{alert_id}/action", headers={"X-Tenant": "acme"}).status_code == 200
    assert inbox.received[0][2]["Subject"] == "Any news on your project?"
    assert inbox.received[0][2].get_content().startswith("Hello Sophie Martin, just following up")


def test_a_retried_action_does_not_send_twice(mail):
    client, store, db, inbox = mail
    alert_id = _silent_sophie(store, db)
    headers = {"X-Tenant": "acme", "Idempotency-Key": "action-7f3a"}
    first = client.post(f"/api/alerts/{alert_id}/action", headers=headers)
    again = client.post(f"/api/alerts/{alert_id}/action", headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.get_json()["replayed"] is True
    assert again.get_json()["sent"]["messageId"] == first.get_json()["sent"]["messageId"]
    # without the key, the resolved alert is not acted on again
    bare = client.post(f"/api/alerts/{alert_id}/action", headers={"X-Tenant": "acme"})
    assert bare.status_code == 409
    assert len(inbox.received) == 1 and len([r for r in activities(db) if r[1] == "out"]) == 1


def test_chat_assistant_send_logs_the_email_once_per_idempotency_key(mail):
    client, _store, db, inbox = mail
    headers = {"X-Tenant": "acme", "Idempotency-Key": "chat-42"}
    body = {"leadId": "SOPHIE_ID", "subject": "Votre devis", "message": "Votre devis est prêt."}
    first = client.post("/api/email/send", headers=headers, json=body)
    again = client.post("/api/email/send", headers=headers, json=body)
    assert first.status_code == again.status_code == 200 and again.get_json()["replayed"] is True
    assert len(inbox.received) == 1 and inbox.received[0][2]["Subject"] == "Votre devis"
    assert [r[1:4] for r in activities(db)] == [("out", "sent", "Votre devis est prêt.")]

    reused = client.post("/api/email/send", headers=headers, json={**body, "message": "Autre chose."})
    assert reused.status_code == 422 and reused.get_json()["error"]["details"][0]["field"] == "Idempotency-Key"
    assert len(inbox.received) == 1


def test_the_subject_defaults_to_the_first_words_and_the_tenant_may_have_its_own_from(mail):
    client, _store, db, inbox = mail
    db.execute("insert into email_senders (tenant_id, from_address) values ('acme', 'Julie <julie@acme.example>')")
    response = client.post("/api/email/send", headers={"X-Tenant": "acme"},
                           json={"leadId": "SOPHIE_ID", "message": "Votre devis est prêt.\nBonne journée"})  # fmt: skip
    assert response.status_code == 200
    message = inbox.received[0][2]
    assert message["Subject"] == "Votre devis est prêt. Bonne journée"
    assert message["From"] == "Julie <julie@acme.example>" and message["Message-ID"].endswith("@acme.example>")


def test_a_refused_send_is_logged_failed_resolves_nothing_and_names_the_cause(mail):
    client, store, db, inbox = mail
    alert_id = _silent_sophie(store, db)
    db.execute("update leads set email = 'refuse.me@example.fr' where lead_id = 'SOPHIE_ID'")
    headers = {"X-Tenant": "acme", "Idempotency-Key": "refused-1"}
    response = client.post(f"/api/alerts/{alert_id}/action", headers=headers)
    assert response.status_code == 502
    error = response.get_json()["error"]
    assert error["code"] == "email_recipient_refused" and error["details"]["smtp_code"] == 550
    assert inbox.received == [] and active(db) == {("SOPHIE_ID", "NoContact7d"): "med"}
    assert [(r[1], r[2], r[5]) for r in activities(db) if r[1] == "out"] == [("out", "failed", None)]
    # nothing was sent: the same key may try again, and sends
    db.execute("update leads set email = %s where lead_id = 'SOPHIE_ID'", [SOPHIE])
    assert client.post(f"/api/alerts/{alert_id}/action", headers=headers).status_code == 200
    assert len(inbox.received) == 1 and active(db) == {}


def test_an_unreachable_server_is_502_and_a_failed_send(store, email_tables):
    closed = free_port()
    channel = EmailChannel(SmtpSender(SmtpTarget("127.0.0.1", closed, "plain"), timeout=2), FROM)
    client = create_app(Api(store, OpenAccess(), email=channel)).test_client()
    add_leads(store, SOPHIE_ID={"name": "Sophie Martin", "email": SOPHIE})
    response = client.post(
        "/api/email/send", headers={"X-Tenant": "acme"}, json={"leadId": "SOPHIE_ID", "message": "x"}
    )
    assert response.status_code == 502 and response.get_json()["error"]["code"] == "email_unreachable"
    assert [r[2] for r in activities(email_tables)] == ["failed"]


def test_without_smtp_configured_a_send_is_409_and_writes_nothing(store, email_tables):
    client = create_app(Api(store, OpenAccess())).test_client()
    add_leads(store, SOPHIE_ID={"name": "Sophie Martin", "email": SOPHIE})
    response = client.post(
        "/api/email/send", headers={"X-Tenant": "acme"}, json={"leadId": "SOPHIE_ID", "message": "x"}
    )
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "email_not_configured"
    assert activities(email_tables) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"leadId": "SOPHIE_ID"}, "message"),
        ({"leadId": "SOPHIE_ID", "message": "x", "subject": "a\nBcc: x@y"}, "subject"),
        ({"leadId": "NOBODY", "message": "x"}, "leadId"),
    ],
    ids=["no-message", "header-injection", "unknown-lead"],
)  # fmt: skip
def test_bad_sends_name_the_field_and_send_nothing(mail, body, field):
    client, _store, db, inbox = mail
    response = client.post("/api/email/send", headers={"X-Tenant": "acme"}, json=body)
    assert response.status_code in (404, 422)
    details = response.get_json()["error"]["details"]
    named = details[0]["field"] if isinstance(details, list) else details["field"]
    assert named == field and inbox.received == [] and activities(db) == []


def test_an_address_that_cannot_be_written_to_is_422_and_sends_nothing(mail):
    client, store, db, inbox = mail
    add_leads(store, BAD={"name": "Bad\nBcc: spy@evil.example", "email": "a,b@example.fr"})
    response = client.post("/api/email/send", headers={"X-Tenant": "acme"}, json={"leadId": "BAD", "message": "x"})
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "email_bad_address"
    assert inbox.received == [] and activities(db) == []


def test_a_bounce_turns_the_send_into_a_failed_one_and_reopens_what_it_resolved(mail):
    client, store, db, inbox = mail
    alert_id = _silent_sophie(store, db)
    assert client.post(f"/api/alerts/{alert_id}/action", headers={"X-Tenant": "acme"}).status_code == 200
    assert active(db) == {}
    sent = inbox.received[0][2]

    response = hook(client, bounce_of(sent))
    assert response.status_code == 200
    body = response.get_json()
    assert body["bounce"]["messageId"] == sent["Message-ID"] and body["reopened"] == ["NoContact7d"]
    assert [r[2] for r in activities(db) if r[1] == "out"] == ["failed"]
    assert active(db) == {("SOPHIE_ID", "NoContact7d"): "med"}
    # a delay notice changes nothing
    assert hook(client, bounce_of(sent, action="delayed")).get_json()["ignored"] == "delivery report: delayed"


# SMTP settings and TLS -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("smtp://leadwatch:s3cret@mail.example.com:587", ("mail.example.com", 587, "starttls", "leadwatch")),
        ("smtp://leadwatch:s3cret@mail.example.com", ("mail.example.com", 587, "starttls", "leadwatch")),
        ("smtps://leadwatch:s3cret@mail.example.com:465", ("mail.example.com", 465, "tls", "leadwatch")),
        ("smtps://mail.example.com", ("mail.example.com", 465, "tls", None)),
        ("smtp://relay.internal:25", ("relay.internal", 25, "plain", None)),
        ("smtp://localhost", ("localhost", 25, "plain", None)),
        ("smtp://apikey:p%40ss%3Aword@smtp.example.net:2525", ("smtp.example.net", 2525, "starttls", "apikey")),
    ],
)
def test_the_smtp_url_gives_the_server_and_how_to_reach_it(url, target):
    parsed = parse_smtp_url(url)
    assert (parsed.host, parsed.port, parsed.mode, parsed.username) == target
    if "p%40ss" in url:
        assert parsed.password == "p@ss:word"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"LEADWATCH_SMTP_URL": "https://mail.example.com", "LEADWATCH_EMAIL_FROM": FROM}, "LEADWATCH_SMTP_URL"),
        ({"LEADWATCH_SMTP_URL": "smtp://user@mail.example.com", "LEADWATCH_EMAIL_FROM": FROM}, "LEADWATCH_SMTP_URL"),
        ({"LEADWATCH_SMTP_URL": "smtp://:587", "LEADWATCH_EMAIL_FROM": FROM}, "LEADWATCH_SMTP_URL"),
        ({"LEADWATCH_SMTP_URL": "smtp://mail.example.com:99999", "LEADWATCH_EMAIL_FROM": FROM}, "LEADWATCH_SMTP_URL"),
        ({"LEADWATCH_SMTP_URL": "smtp://mail.example.com"}, "LEADWATCH_EMAIL_FROM"),
        ({"LEADWATCH_EMAIL_FROM": "not an address"}, "LEADWATCH_EMAIL_FROM"),
        ({"LEADWATCH_EMAIL_WEBHOOK_TOKENS": "acme"}, "LEADWATCH_EMAIL_WEBHOOK_TOKENS"),
        ({"LEADWATCH_EMAIL_WEBHOOK_TOKENS": "acme:short"}, "LEADWATCH_EMAIL_WEBHOOK_TOKENS"),
        ({"LEADWATCH_EMAIL_WEBHOOK_TOKENS": f"acme:{TOKEN},other:{TOKEN}"}, "LEADWATCH_EMAIL_WEBHOOK_TOKENS"),
    ],
    ids=["scheme", "user-without-password", "no-host", "port", "no-from", "bad-from", "no-token", "short-token",
         "shared-token"],
)  # fmt: skip
def test_bad_email_settings_fail_at_start_naming_the_variable(env, named):
    with pytest.raises(ConfigError, match=named):
        load_settings(env)


def test_email_settings_make_the_channel():
    """Api.from_settings builds the SMTP sender LEADWATCH_SMTP_URL names (so send_email actions can run)."""
    settings = load_settings({
        "LEADWATCH_SMTP_URL": "smtps://leadwatch:s3cret@mail.example.com",
        "LEADWATCH_EMAIL_FROM": FROM,
        "LEADWATCH_EMAIL_WEBHOOK_TOKENS": f"acme:{TOKEN}, other:hook-other-email-0002",
    })  # fmt: skip
    channel = Api.from_settings(settings, lambda: pytest.fail("no store is needed"), OpenAccess()).email
    assert channel.sender.target == SmtpTarget("mail.example.com", 465, "tls", "leadwatch", "s3cret")
    assert channel.default_from == FROM
    assert channel.webhook_tokens == (("acme", TOKEN), ("other", "hook-other-email-0002"))


def _message() -> EmailMessage:
    from leadwatch.integrations.email_out import compose

    return compose(sender=FROM, to=SOPHIE, to_name="Sophie", subject="Bonjour", text="Bonjour Sophie")


def test_starttls_and_login_with_a_real_server(certificate):
    """STARTTLS is required before AUTH (the server refuses AUTH in clear), and the certificate is verified."""
    server_context, client_context = certificate
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=server_context,
                            require_starttls=True, authenticator=inbox.authenticate, auth_require_tls=True,
                            auth_exclude_mechanism=["LOGIN"])  # fmt: skip
    controller.start()
    try:
        target = parse_smtp_url(f"smtp://leadwatch:s3cret%3Apass@127.0.0.1:{port}")
        SmtpSender(target, timeout=5, context=client_context).send(_message())
        assert inbox.logins == ["leadwatch"] and inbox.received[0][2]["Subject"] == "Bonjour"

        wrong = parse_smtp_url(f"smtp://leadwatch:wrong@127.0.0.1:{port}")
        with pytest.raises(Exception, match="credentials") as raised:
            SmtpSender(wrong, timeout=5, context=client_context).send(_message())
        assert raised.value.code == "email_auth_rejected"

        untrusted = ssl.create_default_context()  # the system's CAs do not know the self-signed certificate
        with pytest.raises(Exception, match="cannot be reached") as raised:
            SmtpSender(target, timeout=5, context=untrusted).send(_message())
        assert raised.value.code == "email_unreachable" and len(inbox.received) == 1
    finally:
        controller.stop()


def test_another_sender_stands_in_for_smtp(store, email_tables):
    """Anything with send(EmailMessage) stands in for SMTP (a development outbox, for one)."""

    class Outbox:
        def __init__(self):
            self.messages = []

        def send(self, message):
            self.messages.append(message)

    outbox = Outbox()
    client = create_app(Api(store, OpenAccess(), email=EmailChannel(outbox, FROM))).test_client()
    add_leads(store, SOPHIE_ID={"name": "Sophie Martin", "email": SOPHIE})
    body = {"leadId": "SOPHIE_ID", "subject": "Devis", "message": "Bonjour"}
    response = client.post("/api/email/send", headers={"X-Tenant": "acme"}, json=body)
    assert response.status_code == 200
    [message] = outbox.messages
    assert (
        message["To"] == f"Sophie Martin <{SOPHIE}>"
        and message["Message-ID"] == response.get_json()["sent"]["messageId"]
    )


def test_implicit_tls_with_a_real_server(certificate):
    """smtps:// speaks TLS from the first byte (port 465's way), and logs in inside it."""
    server_context, client_context = certificate
    inbox, port = Inbox(), free_port()
    # (aiosmtpd counts only STARTTLS as TLS for auth_require_tls; the connection here is TLS throughout)
    controller = Controller(inbox, hostname="127.0.0.1", port=port, ssl_context=server_context,
                            authenticator=inbox.authenticate, auth_require_tls=False,
                            auth_exclude_mechanism=["LOGIN"])  # fmt: skip
    controller.start()
    try:
        target = parse_smtp_url(f"smtps://leadwatch:s3cret%3Apass@127.0.0.1:{port}")
        SmtpSender(target, timeout=5, context=client_context).send(_message())
        assert inbox.logins == ["leadwatch"] and inbox.received[0][2]["Subject"] == "Bonjour"
    finally:
        controller.stop()


def test_credentials_are_never_sent_to_a_server_without_starttls(smtp):
    """smtp://user:pass@… requires STARTTLS: a server that does not offer it gets no credentials, and no message."""
    inbox, port = smtp
    target = parse_smtp_url(f"smtp://leadwatch:s3cret@127.0.0.1:{port}")
    with pytest.raises(Exception, match="STARTTLS") as raised:
        SmtpSender(target, timeout=5).send(_message())
    assert raised.value.code == "email_tls_unavailable" and inbox.received == []


def test_a_browser_may_send_the_idempotency_key(store):
    """The chat assistant in a browser: the preflight of a send allows the Idempotency-Key header."""
    client = create_app(Api(store, OpenAccess(), cors_origins=("https://app.example.com",))).test_client()
    preflight = client.options(
        "/api/email/send",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, idempotency-key",
        },
    )
    assert preflight.status_code == 204
    allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert "idempotency-key" in allowed


def test_a_retry_while_the_first_send_is_under_way_is_409_and_sends_nothing(store, email_tables):
    """The retry arrives while the mail server is still taking the first send: it does not send a second one."""
    retries = []

    class SlowServer:
        def __init__(self):
            self.messages = []

        def send(self, message):
            retries.append(client.post("/api/email/send", headers=headers, json=body))
            self.messages.append(message)

    server = SlowServer()
    client = create_app(Api(store, OpenAccess(), email=EmailChannel(server, FROM))).test_client()
    add_leads(store, SOPHIE_ID={"name": "Sophie Martin", "email": SOPHIE})
    headers = {"X-Tenant": "acme", "Idempotency-Key": "slow-1"}
    body = {"leadId": "SOPHIE_ID", "subject": "Devis", "message": "Bonjour"}
    first = client.post("/api/email/send", headers=headers, json=body)
    assert first.status_code == 200 and len(server.messages) == 1
    [retry] = retries
    assert retry.status_code == 409 and retry.get_json()["error"]["details"] == {"field": "Idempotency-Key"}
    # once the first has answered, a retry replays its answer
    again = client.post("/api/email/send", headers=headers, json=body)
    assert again.get_json()["replayed"] is True and len(server.messages) == 1


def test_sends_are_for_verified_callers_who_see_the_lead_and_never_replay_anothers(store, email_tables):
    from leadwatch.http.identity import VerifiedAccess
    from test_access import ADMIN, AGENT, OTHER_AGENT, SETTINGS, bearer, token

    class Outbox:
        def __init__(self):
            self.messages = []

        def send(self, message):
            self.messages.append(message)

    outbox = Outbox()
    client = create_app(Api(store, VerifiedAccess(SETTINGS), email=EmailChannel(outbox, FROM))).test_client()
    add_leads(store, OWNED={"email": "owned@example.fr", "ownerId": AGENT},
              OTHER={"email": "other@example.fr", "ownerId": OTHER_AGENT})  # fmt: skip
    body = {"leadId": "OWNED", "message": "Bonjour"}
    key = {"Idempotency-Key": "shared-key"}

    assert client.post("/api/email/send", headers=key, json=body).status_code == 401
    first = client.post("/api/email/send", headers={**bearer(token(sub=ADMIN)), **key}, json=body)
    assert first.status_code == 200
    # another user with the same key and body is not answered the first user's send
    other = client.post("/api/email/send", headers={**bearer(token(role="agent", sub=AGENT)), **key}, json=body)
    assert other.status_code == 422 and other.get_json()["error"]["details"][0]["field"] == "Idempotency-Key"
    # an agent writes only to the leads they see
    hidden = client.post("/api/email/send", headers=bearer(token(role="agent", sub=AGENT)),
                         json={"leadId": "OTHER", "message": "Bonjour"})  # fmt: skip
    assert hidden.status_code == 404
    assert len(outbox.messages) == 1
