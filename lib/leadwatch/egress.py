"""Where leadwatch may send a request a tenant chose: public addresses only, unless the operator says otherwise.

A tenant's admin chooses the URL the deliverer posts webhooks to. Left alone, that URL could point the
deliverer at the deployment's own network (loopback, the private ranges, the cloud's metadata address
169.254.169.254, ...): server-side request forgery. The rules here refuse every address that is not
public, however it is spelled (IPv6 forms that embed an IPv4 address, the odd IPv4 spellings that
`inet_aton` accepts), the names that are local by definition (`localhost`, `*.internal`, single labels,
...), and a name that resolves to a refused address.

They are applied twice: when the URL is registered (`Egress.check_url`, a 422 naming `url`), and when
the deliverer connects (`Egress.destinations`, used by `egress_http`), which resolves the name once and
connects only to the addresses it checked, so that a name that changes its answer in between (DNS
rebinding) is refused too.

The operator, not the tenant, may open networks with LEADWATCH_WEBHOOK_ALLOWED_NETWORKS (CIDRs,
comma-separated, read by `config`): an address inside one of them is allowed whatever its kind, and a
local name is allowed when every address it resolves to is inside them. The dev server's open mode
allows loopback the same way (`Egress.with_loopback`).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .errors import ValidationFailed

if TYPE_CHECKING:
    from .config import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK_NETWORKS: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class DestinationRefused(Exception):
    """A request would reach an address (or a name) that is not allowed; the message says which and why."""


def _networks(*table: tuple[str, str]) -> tuple[tuple[Network, str], ...]:
    return tuple((ipaddress.ip_network(cidr), kind) for cidr, kind in table)


# Refused ranges, most specific first, each with what it is. Python's `is_global` is asked last, as a
# catch-all: its tables differ between Python versions, these do not.
_REFUSED_V4 = _networks(
    ("0.0.0.0/32", "the unspecified address"),
    ("0.0.0.0/8", "a reserved address ('this network')"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a carrier-grade NAT address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.169.254/32", "the cloud metadata address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "a reserved address (IETF protocol assignments)"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a reserved address (6to4 relay)"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a reserved address (benchmarking)"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address"),
)
_REFUSED_V6 = _networks(
    ("::/128", "the unspecified address"),
    ("::1/128", "a loopback address"),
    ("::/96", "a reserved address (IPv4-compatible)"),
    ("64:ff9b:1::/48", "a private address (local NAT64)"),
    ("100::/64", "a reserved address (discard-only)"),
    ("2001::/32", "a Teredo tunnel address"),
    ("2001:db8::/32", "a documentation address"),
    ("2001::/23", "a reserved address (IETF protocol assignments)"),
    ("3fff::/20", "a documentation address"),
    ("5f00::/16", "a reserved address (segment routing)"),
    ("fc00::/7", "a unique-local address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
)
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

# Names that are local by definition (RFC 6761, 6762, 8375, ICANN's .internal) or that public DNS never
# delegates and private networks use. A name without a dot is resolved through the host's search
# domains (`metadata` is the metadata server on some clouds), so it is local too.
_LOCAL_SUFFIXES = (
    "localhost",
    "localdomain",
    "local",
    "internal",
    "intranet",
    "private",
    "corp",
    "home",
    "lan",
    "home.arpa",
)


def lookup(host: str) -> list[Address]:
    """Every address `host` resolves to (the system resolver); OSError when it does not resolve,
    DestinationRefused when it cannot be a name."""
    try:
        answers = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (UnicodeError, ValueError):  # a label over 63 characters, a NUL: no name at all
        raise DestinationRefused(f"{host!r} is not a valid host name") from None
    addresses = []
    for _family, _type, _proto, _name, sockaddr in answers:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise socket.gaierror(f"{host} has no address")
    return addresses


@dataclass(frozen=True)
class Egress:
    """The rule for requests to destinations a tenant chose: public addresses, and the `allowed` networks."""

    allowed: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> Egress:
        """The deployment's rule: LEADWATCH_WEBHOOK_ALLOWED_NETWORKS opened, nothing else."""
        return cls(settings.webhook_allowed_networks)

    def with_loopback(self) -> Egress:
        """This rule with loopback allowed too (the dev server's open mode, for local receivers)."""
        return Egress(self.allowed + tuple(n for n in LOOPBACK_NETWORKS if n not in self.allowed))

    def allows(self, address: Address) -> bool:
        """Is `address` inside a network the operator allowed (an IPv4-mapped address: its IPv4 address)?"""
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        return any(
            candidate.version == network.version and candidate in network
            for candidate in (address, mapped)
            if candidate is not None
            for network in self.allowed
        )

    def refusal(self, address: Address) -> str | None:
        """Why `address` may not be reached ("a loopback address", ...), or None when it may."""
        if self.allows(address):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(address)
            if embedded is not None:
                inner = self.refusal(embedded)
                return f"a form of {embedded}, {inner}" if inner else None
            for network, kind in _REFUSED_V6:
                if address in network:
                    return kind
            if address.scope_id:
                return "a scoped address"
            if address not in _GLOBAL_UNICAST_V6:
                return "a reserved address"
        else:
            for network, kind in _REFUSED_V4:
                if address in network:
                    return kind
        if not address.is_global:
            return "not a public address"
        return None

    def destinations(self, host: str) -> list[Address]:
        """The addresses a request to `host` may connect to: its own address if it is one, else every
        address the name resolves to (one lookup), each checked. DestinationRefused when any is
        refused or the name is local; OSError when the name does not resolve."""
        name = normal_host(host)
        literal = host_address(name)
        if literal is not None:
            reason = self.refusal(literal)
            if reason:
                raise DestinationRefused(f"{literal} is {reason}")
            return [literal]
        local = local_name(name)
        if local is not None:
            # Reached only inside the operator's networks (or loopback in the dev server), never by default.
            refused = DestinationRefused(f"{name} is {local}")
            if not self.allowed:
                raise refused
            try:
                addresses = lookup(name)
            except OSError:
                raise refused from None
            if not all(self.allows(address) for address in addresses):
                raise refused
            return addresses
        addresses = lookup(name)
        for address in addresses:
            reason = self.refusal(address)
            if reason:
                raise DestinationRefused(f"{name} resolves to {address}, {reason}")
        return addresses

    def check_url(self, url: str, field: str = "url") -> None:
        """Refuse (422 naming `field`) a URL whose host is refused, or a name that resolves to a refused
        address now. A name that does not resolve yet is accepted: the deliverer checks again each time
        it connects."""
        try:
            try:
                host = urlsplit(url).hostname or ""
            except ValueError:
                raise DestinationRefused("its host cannot be read") from None
            self.destinations(host)
        except DestinationRefused as exc:
            raise ValidationFailed(
                "the request has invalid fields",
                [{"field": field, "message": f"must lead to a public address: {exc}"}],
            ) from None
        except OSError:
            return


def normal_host(host: str) -> str:
    """`host` as it is looked up: lower case, without its brackets and one trailing dot, in ASCII (IDNA)."""
    name = host.strip("[]").lower()
    if name.endswith(".") and not name.endswith(".."):
        name = name[:-1]
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise DestinationRefused(f"{host!r} is not a valid host name") from None
    if ":" not in name and "" in name.split("."):
        raise DestinationRefused(f"{host!r} is not a valid host name")
    return name


def host_address(name: str) -> Address | None:
    """The address a host names literally: IPv6 (with or without a zone), or IPv4 in any of the spellings
    `inet_aton` accepts (`2130706433`, `0x7f.1`, `127.1`, `0177.0.0.1`); None for a name.
    DestinationRefused for a host that ends in a number but is no valid address (`256.1.1.1`)."""
    if ":" in name:
        try:
            return ipaddress.ip_address(name.replace("%25", "%"))
        except ValueError:
            raise DestinationRefused(f"{name!r} is not a valid address") from None
    parts = name.split(".")
    if not _is_number(parts[-1]):
        return None
    numbers = [_number(part) for part in parts]
    if len(numbers) > 4 or any(n is None for n in numbers):
        raise DestinationRefused(f"{name!r} is not a valid address")
    *head, last = [n for n in numbers if n is not None]
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        raise DestinationRefused(f"{name!r} is not a valid address")
    value = last
    for position, n in enumerate(head):
        value += n << (8 * (3 - position))
    return ipaddress.IPv4Address(value)


def local_name(name: str) -> str | None:
    """Why `name` is local by definition ("a local name", ...), or None for an ordinary name."""
    if "." not in name:
        return "a local name" if name == "localhost" else "a local name (no domain)"
    for suffix in _LOCAL_SUFFIXES:
        if name == suffix or name.endswith("." + suffix):
            return f"a local name (.{suffix})"
    return None


def _is_number(label: str) -> bool:
    """Does this last label make the host an IPv4 address (WHATWG's "ends in a number")?"""
    return label.isdigit() or (label[:2] == "0x" and all(c in "0123456789abcdef" for c in label[2:]))


def _number(part: str) -> int | None:
    """One part of an inet_aton address: decimal, 0x hexadecimal or 0-led octal; None when malformed."""
    try:
        if part[:2] == "0x":
            return int(part[2:] or "0", 16)
        if len(part) > 1 and part[0] == "0":
            return int(part[1:], 8)
        return int(part, 10) if part.isdigit() else None
    except ValueError:
        return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: IPv4-mapped (::ffff:a.b.c.d), 6to4 (2002::/16) and
    NAT64 (64:ff9b::/96) are reached at, or through, that IPv4 address."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None
