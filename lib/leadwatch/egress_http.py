"""An httpx client that connects only where the egress rule allows, to the very addresses it checked.

httpcore opens each connection through a network backend's `connect_tcp(host, port)`. The backend here
resolves `host` once (`Egress.destinations`: every address checked, DestinationRefused when one is not
allowed) and connects to those addresses themselves, so no second lookup can answer differently (DNS
rebinding). Everything above the socket is httpcore's, unchanged: connections are pooled by the URL's
own origin (name and port), the Host header is the URL's, and TLS sends the name as SNI and checks the
certificate against it (httpcore's `start_tls(server_hostname=...)`). Proxies from the environment are
not used (a proxy would make the connection the rule cannot see); trusted certificates are certifi's,
or SSL_CERT_FILE / SSL_CERT_DIR when set (an operator's own CA for an allowed network).
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Iterator

import httpcore
import httpx

from .egress import DestinationRefused, Egress

_HTTPCORE_ERRORS = (
    httpcore.ProtocolError,
    httpcore.NetworkError,
    httpcore.TimeoutException,
    httpcore.UnsupportedProtocol,
    httpcore.ProxyError,
)


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's socket backend behind the egress rule: connects only to the checked addresses."""

    def __init__(self, egress: Egress) -> None:
        self._egress = egress
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self._egress.destinations(host)
        except OSError as exc:  # the name does not resolve: a connection error, as httpcore reports it
            raise httpcore.ConnectError(str(exc)) from exc
        failure: Exception | None = None
        for address in addresses:  # in the resolver's order, as socket.create_connection tries them
            try:
                return self._sockets.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[typing.Any] | None = None
    ) -> httpcore.NetworkStream:
        raise DestinationRefused("a unix socket is not a destination")

    def sleep(self, seconds: float) -> None:
        self._sockets.sleep(seconds)


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport over an httpcore pool whose connections go through `GuardedBackend`."""

    def __init__(self, egress: Egress, limits: httpx.Limits) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(egress),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            response = self._pool.handle_request(core)
        except _HTTPCORE_ERRORS as exc:
            raise _httpx_error(exc, request) from exc
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream, request),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


def guarded_client(egress: Egress, *, timeout: float, limits: httpx.Limits) -> httpx.Client:
    """A client for destinations tenants chose: the egress rule at every connection, no redirect followed."""
    return httpx.Client(
        transport=GuardedTransport(egress, limits), timeout=timeout, follow_redirects=False, trust_env=False
    )


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes], request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except _HTTPCORE_ERRORS as exc:
            raise _httpx_error(exc, self._request) from exc

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


def _httpx_error(exc: Exception, request: httpx.Request) -> httpx.TransportError:
    """httpx's error of the same name as httpcore's (ConnectError, ReadTimeout, ...)."""
    for kind in type(exc).__mro__:
        mapped = getattr(httpx, kind.__name__, None)
        if (
            kind.__module__.startswith("httpcore")
            and isinstance(mapped, type)
            and issubclass(mapped, httpx.TransportError)
        ):
            return mapped(str(exc), request=request)
    return httpx.TransportError(str(exc), request=request)
