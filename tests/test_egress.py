"""Outgoing webhooks reach public addresses only: refused at registration in every spelling, refused again
at each connection (a name rebound to loopback is never connected to), redirects not followed, and the
operator's allowed networks reached.

Name resolution is the only thing faked (`socket.getaddrinfo`, for the names of RECORDS); the listeners
are real sockets on loopback, the database is real, TLS is real (a test CA trusted through SSL_CERT_FILE).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from helpers import later
from leadwatch import Api, ConfigError
from leadwatch.config import load_settings
from leadwatch.devtools.dev import create_app
from leadwatch.egress import Egress
from leadwatch.http.identity import OpenAccess, VerifiedAccess
from leadwatch.jobs.notifications import deliver
from standardwebhooks.webhooks import Webhook
from test_access import SETTINGS, bearer, token
from test_notifications import silent_lead

ADMIN = bearer(token(role="admin"))
EVENTS = ["alert.created"]
PUBLIC = "93.184.215.14"
HOOKS = "hooks.partner.example"  # served by the TLS receiver, with a certificate for this name only

RECORDS = {  # what the fake resolver answers; any other name does not resolve
    "hooks.public-partner.com": [PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "hooks.loopback-partner.com": ["127.0.0.1"],
    "hooks.private-partner.com": ["10.0.0.5", "fd00::5"],
    "hooks.mixed-partner.com": [PUBLIC, "169.254.169.254"],
    "hooks.cgnat-partner.com": ["100.64.1.1"],
    "hooks.rebind-partner.com": [PUBLIC],
    "hooks.allowed-partner.com": ["10.20.3.4"],
    "hooks.partner.internal": ["10.20.3.5"],
    HOOKS: ["127.0.0.1"],
    "other.partner.example": ["127.0.0.1"],
}


def operator(networks: str) -> Egress:
    """The rule of a deployment whose operator set LEADWATCH_WEBHOOK_ALLOWED_NETWORKS to `networks`."""
    return Egress.from_settings(load_settings({"LEADWATCH_WEBHOOK_ALLOWED_NETWORKS": networks}))


@pytest.fixture
def dns(monkeypatch):
    """`socket.getaddrinfo` answering RECORDS (a dict the test may change); addresses (`127.1` too, as the
    system reads it) and localhost as usual; any other name does not resolve."""
    records = {name: list(addresses) for name, addresses in RECORDS.items()}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002
        name = host.decode() if isinstance(host, bytes) else host
        name.encode("idna")  # as socket.getaddrinfo encodes a name: UnicodeError for a label over 63 characters
        if name in records:
            answers = []
            for address in records[name]:
                v6 = ipaddress.ip_address(address).version == 6
                sockaddr = (address, int(port or 0), 0, 0) if v6 else (address, int(port or 0))
                answers.append((socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM, 6, "", sockaddr))
            return answers
        last = name.rstrip(".").rsplit(".", 1)[-1]
        if name == "localhost" or ":" in name or last.isdigit() or last.startswith("0x"):
            return real(host, port, family, type, proto, flags)  # addresses, in every spelling the system reads
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return records


@pytest.fixture
def listener():
    """A real TCP listener on loopback that answers nothing: `connections(listener)` counts who knocked."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    yield sock
    sock.close()


def connections(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def deployed(store, egress: Egress | None = None):
    """The deployed functions' app (callers verified), over `store`, with the operator's rule `egress`."""
    return create_app(Api(store, VerifiedAccess(SETTINGS), egress=egress)).test_client()


def register(client, url: str, headers=ADMIN):
    return client.post("/api/webhooks", headers=headers, json={"url": url, "events": EVENTS})


def refused_field(response) -> str:
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "validation_failed"
    [detail] = error["details"]
    assert detail["field"] == "url"
    return detail["message"]


def delivery(db, columns: str):
    return db.execute(f"select {columns} from webhook_deliveries").fetchone()


# Refused at registration -------------------------------------------------------------------------

REFUSED = [
    ("https://10.0.0.1/hook", "a private address", "rfc1918-10"),
    ("https://172.16.5.4/hook", "a private address", "rfc1918-172"),
    ("https://192.168.1.1/hook", "a private address", "rfc1918-192"),
    ("https://100.64.0.1/hook", "carrier-grade NAT", "cgnat"),
    ("https://127.0.0.1/hook", "a loopback address", "loopback"),
    ("https://127.8.9.10:8443/hook", "a loopback address", "loopback-not-1"),
    ("https://169.254.169.254/latest", "the cloud metadata address", "metadata"),
    ("https://169.254.10.1/x", "a link-local address", "link-local-v4"),
    ("https://0.0.0.0/x", "the unspecified address", "unspecified-v4"),
    ("https://0.1.2.3/x", "this network", "this-network"),
    ("https://224.0.0.1/x", "a multicast address", "multicast-v4"),
    ("https://240.0.0.1/x", "a reserved address", "reserved-240"),
    ("https://255.255.255.255/x", "the broadcast address", "broadcast"),
    ("https://198.18.0.1/x", "benchmarking", "benchmarking"),
    ("https://192.0.0.8/x", "IETF protocol assignments", "ietf-v4"),
    ("https://192.0.2.1/x", "a documentation address", "doc-test-net-1"),
    ("https://198.51.100.7/x", "a documentation address", "doc-test-net-2"),
    ("https://203.0.113.9/x", "a documentation address", "doc-test-net-3"),
    ("https://2130706433/x", "127.0.0.1 is a loopback address", "decimal-integer"),
    ("https://0x7f.1/x", "127.0.0.1 is a loopback address", "hex-two-parts"),
    ("https://127.1/x", "127.0.0.1 is a loopback address", "two-parts"),
    ("https://0177.0.0.1/x", "127.0.0.1 is a loopback address", "octal"),
    ("https://0x7f000001/x", "127.0.0.1 is a loopback address", "hex-integer"),
    ("https://0xa9.0xfe.0xa9.0xfe/latest", "the cloud metadata address", "hex-metadata"),
    ("https://127.0.0.1./x", "a loopback address", "trailing-dot-address"),
    ("https://256.1.1.1/x", "not a valid address", "out-of-range-number"),
    ("https://08.1.1.1/x", "not a valid address", "bad-octal"),
    ("https://[::1]/x", "a loopback address", "loopback-v6"),
    ("https://[::]/x", "the unspecified address", "unspecified-v6"),
    ("https://[::ffff:127.0.0.1]/x", "127.0.0.1, a loopback address", "ipv4-mapped-dotted"),
    ("https://[::ffff:7f00:1]/x", "127.0.0.1, a loopback address", "ipv4-mapped-hex"),
    ("https://[::ffff:169.254.169.254]/x", "the cloud metadata address", "ipv4-mapped-metadata"),
    ("https://[::127.0.0.1]/x", "IPv4-compatible", "ipv4-compatible"),
    ("https://[2002:7f00:1::1]/x", "127.0.0.1, a loopback address", "6to4-loopback"),
    ("https://[2002:a00:1::]/x", "10.0.0.1, a private address", "6to4-private"),
    ("https://[64:ff9b::7f00:1]/x", "127.0.0.1, a loopback address", "nat64-loopback"),
    ("https://[64:ff9b::a9fe:a9fe]/x", "the cloud metadata address", "nat64-metadata"),
    ("https://[64:ff9b:1::a00:1]/x", "local NAT64", "nat64-local-use"),
    ("https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x", "a Teredo tunnel address", "teredo"),
    ("https://[fe80::1]/x", "a link-local address", "link-local-v6"),
    ("https://[fe80::1%25eth0]/x", "a link-local address", "link-local-v6-zone"),
    ("https://[fc00::1]/x", "a unique-local address", "unique-local-fc"),
    ("https://[fd12:3456::1]/x", "a unique-local address", "unique-local-fd"),
    ("https://[fec0::1]/x", "a site-local address", "site-local"),
    ("https://[ff02::1]/x", "a multicast address", "multicast-v6"),
    ("https://[2001:db8::1]/x", "a documentation address", "documentation-v6"),
    ("https://[100::1]/x", "discard-only", "discard-v6"),
    ("https://localhost/x", "localhost is a local name", "localhost"),
    ("https://LOCALHOST:8443/x", "localhost is a local name", "localhost-upper-case"),
    ("https://localhost./x", "localhost is a local name", "localhost-trailing-dot"),
    ("https://api.localhost/x", "(.localhost)", "under-localhost"),
    ("https://metadata.google.internal/computeMetadata/v1/", "(.internal)", "under-internal"),
    ("https://billing.internal./x", "(.internal)", "under-internal-trailing-dot"),
    ("https://printer.local/x", "(.local)", "under-local"),
    ("https://router.home.arpa/x", "(.home.arpa)", "under-home-arpa"),
    ("https://internal.corp/x", "(.corp)", "under-corp"),
    ("https://metadata/computeMetadata/v1/", "no domain", "single-label"),
    ("https://\u24dbocalhost/x", "localhost is a local name", "idna-mapped-localhost"),
    ("https://" + "a" * 64 + ".example.com/x", "not a valid host name", "label-too-long"),
    ("https://hooks..example.com/x", "not a valid host name", "empty-label"),
    ("https://hooks.loopback-partner.com/x", "resolves to 127.0.0.1, a loopback address", "resolves-to-loopback"),
    ("https://hooks.private-partner.com/x", "resolves to 10.0.0.5, a private address", "resolves-to-private"),
    ("https://hooks.cgnat-partner.com/x", "resolves to 100.64.1.1, a carrier-grade NAT", "resolves-to-cgnat"),
    ("https://hooks.mixed-partner.com/x", "resolves to 169.254.169.254", "resolves-to-public-and-metadata"),
]


@pytest.mark.parametrize(("url", "why"), [(u, w) for u, w, _ in REFUSED], ids=[i for _, _, i in REFUSED])
def test_a_url_leading_to_a_non_public_address_is_refused_at_registration_and_nothing_is_written(
    store, db, dns, url, why
):
    message = refused_field(register(deployed(store), url))
    assert message.startswith("must lead to a public address: ") and why in message
    assert db.execute("select count(*) from webhook_endpoints").fetchone()[0] == 0


ACCEPTED = [
    (f"https://{PUBLIC}/hooks", "public-v4"),
    ("https://[2606:4700::1111]/hooks", "public-v6"),
    (f"https://[::ffff:{PUBLIC}]/hooks", "ipv4-mapped-public"),
    ("https://hooks.public-partner.com/leadwatch", "name-resolving-to-public"),
    ("https://hooks.not-yet-in-dns.com/leadwatch", "name-not-resolving-yet"),
]


@pytest.mark.parametrize("url", [u for u, _ in ACCEPTED], ids=[i for _, i in ACCEPTED])
def test_a_url_leading_to_a_public_address_is_registered(store, db, dns, url):
    response = register(deployed(store), url)
    assert response.status_code == 201, response.get_json()
    assert db.execute("select url from webhook_endpoints").fetchone()[0] == url


def test_the_operators_networks_are_allowed_at_registration_and_nothing_else_is(store, db, dns):
    client = deployed(store, operator("10.20.0.0/16, fd00:20::/32"))
    for url in ("https://10.20.1.2/hooks", "https://hooks.allowed-partner.com/x", "https://[fd00:20::7]/x"):
        assert register(client, url).status_code == 201, url
    # a local name whose every address is in an allowed network is allowed, as those addresses are
    assert register(client, "https://hooks.partner.internal/x").status_code == 201
    dns["hooks.partner.internal"] = ["10.20.3.5", "10.30.0.1"]
    assert "(.internal)" in refused_field(register(client, "https://hooks.partner.internal/y"))
    assert "10.21.0.1 is a private address" in refused_field(register(client, "https://10.21.0.1/hooks"))
    assert "metadata" in refused_field(register(client, "https://169.254.169.254/latest"))
    assert "(.internal)" in refused_field(register(client, "https://unknown.partner.internal/x"))
    assert db.execute("select count(*) from webhook_endpoints").fetchone()[0] == 4


def test_a_deployment_takes_its_allowed_networks_from_its_settings(store, db, dns):
    """`Api.from_settings`, as functions/main.py builds the deployed functions, applies the operator's networks."""
    settings = replace(SETTINGS, webhook_allowed_networks=(ipaddress.ip_network("10.20.0.0/16"),))
    client = create_app(Api.from_settings(settings, store, VerifiedAccess(SETTINGS))).test_client()
    assert register(client, "https://10.20.1.2/hooks").status_code == 201
    assert "10.21.0.1 is a private address" in refused_field(register(client, "https://10.21.0.1/hooks"))
    assert db.execute("select count(*) from webhook_endpoints").fetchone()[0] == 1


def test_the_dev_server_allows_loopback_receivers_and_nothing_else_that_is_not_public(store, db, dns):
    dev = create_app(Api(store, OpenAccess())).test_client()
    headers = {"X-Tenant": "acme"}
    for url in ("http://127.0.0.1:9/hooks", "http://localhost:9/hooks", "https://[::1]/x"):
        assert register(dev, url, headers).status_code == 201, url
    assert "a private address" in refused_field(register(dev, "https://10.0.0.1/hook", headers))
    assert "metadata" in refused_field(register(dev, "https://169.254.169.254/latest", headers))
    assert "must be an https:// URL" in refused_field(register(dev, "http://10.0.0.1/hook", headers))
    assert db.execute("select count(*) from webhook_endpoints").fetchone()[0] == 3


# Refused at connection ---------------------------------------------------------------------------


def test_a_name_rebound_to_loopback_after_registration_is_never_connected_to_and_fails_at_once(
    store, db, dns, listener, http_mock
):
    http_mock.route(host="hooks.rebind-partner.com").pass_through()
    port = listener.getsockname()[1]
    url = f"https://hooks.rebind-partner.com:{port}/hooks"
    assert register(deployed(store), url).status_code == 201, "public when it was registered"
    silent_lead(store, db)
    dns["hooks.rebind-partner.com"] = ["127.0.0.1"]  # the name now answers the deployment's own loopback

    sent = deliver(store, now=later(minutes=1))
    assert connections(listener) == 0
    assert sent == {"claimed": 1, "delivered": 0, "retrying": 0, "failed": 1, "disabled": 0}
    status, attempts, last_status, last_error = delivery(db, "status, attempts, last_status, last_error")
    assert (status, attempts, last_status) == ("failed", 1, None), "failed for good, not retried for a day"
    assert last_error == "destination refused: hooks.rebind-partner.com resolves to 127.0.0.1, a loopback address"
    assert deliver(store, now=later(days=2))["claimed"] == 0
    assert db.execute("select enabled from webhook_endpoints").fetchone()[0] is True, "the next events are checked"
    # The trap was real: an unguarded connection to the name reaches the listener.
    socket.create_connection(("hooks.rebind-partner.com", port), timeout=2).close()
    assert connections(listener) == 1


def test_a_loopback_endpoint_stored_earlier_is_not_delivered_to_without_the_operators_consent(
    store, db, dns, listener, http_mock
):
    """An endpoint a dev server accepted (or one stored before the rule) is refused by a deployed deliverer."""
    http_mock.route(host="127.0.0.1").pass_through()
    dev = create_app(Api(store, OpenAccess())).test_client()
    port = listener.getsockname()[1]
    assert register(dev, f"http://127.0.0.1:{port}/hooks", {"X-Tenant": "acme"}).status_code == 201
    silent_lead(store, db)
    sent = deliver(store, now=later(minutes=1))
    assert connections(listener) == 0
    assert sent["failed"] == 1
    assert delivery(db, "last_error")[0] == "destination refused: 127.0.0.1 is a loopback address"


STORED = [
    ("http://127.1:{port}/hooks", "127.0.0.1 is a loopback address", "two-parts"),
    ("http://2130706433:{port}/hooks", "127.0.0.1 is a loopback address", "decimal-integer"),
    ("http://0x7f.0.0.1:{port}/hooks", "127.0.0.1 is a loopback address", "hex-part"),
    ("http://[::ffff:127.0.0.1]:{port}/hooks", "a form of 127.0.0.1, a loopback address", "ipv4-mapped"),
    ("http://localhost:{port}/hooks", "localhost is a local name", "localhost"),
]


@pytest.mark.parametrize(("url", "why"), [(u, w) for u, w, _ in STORED], ids=[i for _, _, i in STORED])
def test_an_endpoint_stored_with_any_spelling_of_loopback_is_refused_at_connection(
    postgres_store, db, dns, listener, url, why
):
    """The deliverer's own check, whatever registration let through (rows written before the rule)."""
    url = url.format(port=listener.getsockname()[1])
    db.execute(
        "insert into webhook_endpoints (tenant_id, url, events, secret, created_by)"
        " values ('acme', %s, '{alert.created}', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'test')",
        [url],
    )
    silent_lead(postgres_store, db)
    sent = deliver(postgres_store, now=later(minutes=1))
    assert connections(listener) == 0
    assert sent["failed"] == 1
    [last_error] = delivery(db, "last_error")
    assert last_error.startswith("destination refused: ") and why in last_error


class Redirector:
    """A receiver on loopback answering every POST with a 307 to `location` (method and body kept, if followed)."""

    def __init__(self, location: str) -> None:
        self.posts = 0
        redirector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                redirector.posts += 1
                self.send_response(307)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_redirect_is_not_followed_and_is_recorded(store, db, dns, listener, http_mock):
    http_mock.route(host="127.0.0.1").pass_through()
    target = f"http://127.0.0.1:{listener.getsockname()[1]}/latest/meta-data/"  # allowed, yet never reached
    redirector = Redirector(target)
    try:
        dev = create_app(Api(store, OpenAccess())).test_client()
        assert register(dev, redirector.url, {"X-Tenant": "acme"}).status_code == 201
        silent_lead(store, db)
        sent = deliver(store, now=later(minutes=1), egress=operator("127.0.0.0/8"))
    finally:
        redirector.close()
    assert sent["claimed"] == 1 and sent["delivered"] == 0 and sent["retrying"] == 1
    assert redirector.posts == 1 and connections(listener) == 0
    assert delivery(db, "last_status, last_error") == (307, "redirect not followed")


# The operator's networks -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA (trusted through SSL_CERT_FILE) and a server certificate for HOOKS only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)
    folder = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leadwatch test CA")])
    usage = dict.fromkeys(
        ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement", "encipher_only"), False
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, decipher_only=False, **usage),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOOKS)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOOKS)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = SimpleNamespace(ca=folder / "ca.pem", cert=folder / "cert.pem", key=folder / "key.pem")
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


class TlsReceiver:
    """An https receiver on 127.0.0.1 with HOOKS's certificate: records each request and the SNI it was sent."""

    def __init__(self, pki) -> None:
        self.received: list[dict] = []
        self.server_names: list[str | None] = []
        receiver = self
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.cert, pki.key)
        context.sni_callback = lambda _socket, name, _context: receiver.server_names.append(name)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({"body": body, "headers": dict(self.headers.items())})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.server.handle_error = lambda *args: None  # a refused handshake is the test's business
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tls_receiver(pki, monkeypatch, http_mock):
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))
    for host in (HOOKS, "other.partner.example"):
        http_mock.route(host=host).pass_through()
    receiver = TlsReceiver(pki)
    yield receiver
    receiver.close()


def test_an_allowed_network_is_reached_over_tls_with_the_urls_name_as_host_and_sni(store, db, dns, tls_receiver):
    url = f"https://{HOOKS}:{tls_receiver.port}/hooks"
    assert "resolves to 127.0.0.1" in refused_field(register(deployed(store), url)), "not without the operator"
    allowed = operator("127.0.0.0/8")
    client = deployed(store, allowed)
    created = register(client, url)
    assert created.status_code == 201, created.get_json()
    webhook = created.get_json()["webhook"]
    silent_lead(store, db)

    assert deliver(store, now=later(minutes=1))["failed"] == 1, "a deliverer without the operator's networks"
    assert tls_receiver.received == []
    [entry] = client.get(f"/api/webhooks/{webhook['id']}/deliveries", headers=ADMIN).get_json()["deliveries"]
    assert entry["status"] == "failed" and entry["last_error"].startswith("destination refused: ")
    again = client.post(f"/api/webhooks/{webhook['id']}/deliveries/{entry['id']}/redeliver", headers=ADMIN)
    assert again.status_code == 200

    assert deliver(store, egress=allowed)["delivered"] == 1
    [request] = tls_receiver.received
    assert request["headers"]["Host"] == f"{HOOKS}:{tls_receiver.port}"
    assert tls_receiver.server_names == [HOOKS]
    payload = Webhook(webhook["secret"]).verify(request["body"], request["headers"])
    assert payload["type"] == "alert.created"
    assert json.loads(request["body"])["data"]["alert"]["lead_id"] == "L1"


def test_the_certificate_is_checked_against_the_urls_name_not_the_address(store, db, dns, tls_receiver):
    allowed = operator("127.0.0.0/8")
    url = f"https://other.partner.example:{tls_receiver.port}/hooks"  # same address, a certificate for HOOKS only
    assert register(deployed(store, allowed), url).status_code == 201
    silent_lead(store, db)
    sent = deliver(store, now=later(minutes=1), egress=allowed)
    assert sent["retrying"] == 1 and sent["delivered"] == 0
    assert tls_receiver.received == [] and tls_receiver.server_names == ["other.partner.example"]


# The operator's setting --------------------------------------------------------------------------


def test_allowed_networks_are_read_from_the_environment():
    settings = load_settings({"LEADWATCH_WEBHOOK_ALLOWED_NETWORKS": " 10.20.0.0/16, fd00::/8,192.0.2.7 "})
    assert settings.webhook_allowed_networks == (
        ipaddress.ip_network("10.20.0.0/16"),
        ipaddress.ip_network("fd00::/8"),
        ipaddress.ip_network("192.0.2.7/32"),
    )
    assert load_settings({}).webhook_allowed_networks == ()


@pytest.mark.parametrize(
    "value",
    ["10.0.0.0/33", "intranet", "10.0.0.1/8", "10.0.0.0/8;fd00::/8"],
    ids=["prefix", "name", "host-bits", "sep"],
)
def test_a_malformed_allowed_network_fails_at_start_naming_the_variable(value):
    with pytest.raises(ConfigError, match="LEADWATCH_WEBHOOK_ALLOWED_NETWORKS"):
        load_settings({"LEADWATCH_WEBHOOK_ALLOWED_NETWORKS": value})
