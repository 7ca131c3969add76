"""Events: what happens to an exchange, as plain data (h11 style).

The Twisted layer turns bytes, DNS answers, connects and timers into these
and feeds them to :meth:`squidpy.exchange.Exchange.handle`.  Parameterless
events are singletons (no allocation on the hot path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from squidpy.http.message import ResponseHead


class Event:
    __slots__ = ()

    def __repr__(self) -> str:
        return type(self).__name__


# ---------------------------------------------------------------- from the client
class _RequestStarted(Event):
    """The exchange begins: its request head is known (the body may follow)."""
    __slots__ = ()


@dataclass(slots=True)
class RequestBody(Event):
    data: bytes


class _RequestEnd(Event):
    """The request's body is complete (or it had none)."""
    __slots__ = ()


@dataclass(slots=True)
class RequestInvalid(Event):
    """The request (or its body, after forwarding began) could not be parsed."""
    error: str
    detail: str
    status: int


class _ClientGone(Event):
    """The client closed or reset its connection before the exchange ended."""
    __slots__ = ()


# ---------------------------------------------------------------- lookups the exchange asked for
@dataclass(slots=True)
class StatsCollected(Event):
    """The reports CollectStats asked for: one per process that answered (see squidpy.mgr)."""
    reports: list[dict[str, Any]]     # one JSON-like report per process


@dataclass(slots=True)
class FactKnown(Event):
    """A fact looked up (``dst`` and ``host`` addresses, ``dst_name``/``src_name`` names);
    an empty value when the lookup failed (it then matches nothing, as in Squid)."""
    fact: str
    value: Any
    seconds: float = 0.0        # time spent looking it up (the log's DNS time)


@dataclass(slots=True)
class HelperAnswered(Event):
    """The answer to :class:`~squidpy.exchange.commands.AskHelper` (a helper that
    died, timed out or is overloaded answers too: ``Unknown``, ``TimedOut``, ``ERR``);
    ``child``: which of its children answered."""
    helper: str
    reply: Any                  # squidpy.helpers.protocol.Reply
    child: int | None = None


@dataclass(slots=True)
class CacheFound(Event):
    """The answer to :class:`~squidpy.exchange.commands.LookUpCache`."""
    reply: Any                  # CachedReply or None
    body: bytes | None          # the body when it is in memory (or was read whole from disk)
    names: tuple[bytes, ...]    # the Vary field names the URL's replies use
    from_disk: bool = False     # read from the cache_dir: a TCP_HIT even when the body came along


@dataclass(slots=True)
class Purged(Event):
    removed: int


class _CollapseReleased(Event):
    """The fetch this exchange waited for is over (stored or not)."""
    __slots__ = ()


@dataclass(slots=True)
class IcpReply(Event):
    """An ICP reply to one of this exchange's queries (``opcode``: its name, ICP_HIT ...)."""
    peer: Any                   # the CachePeer it came from
    opcode: str
    reqnum: int
    at: float                   # when it arrived (the clock of Shared.now)


# ---------------------------------------------------------------- the origin
@dataclass(slots=True)
class Connected(Event):
    peer_ip: str
    peer_port: int
    local_ip: str | None = None
    local_port: int | None = None
    reused: bool = False
    seconds: float = 0.0        # time spent resolving the origin's name (DNS)
    tls: Any = None             # squidpy.tls.session.TlsFacts of an https:// origin connection


@dataclass(slots=True)
class ConnectFailed(Event):
    error: str                  # ERR_DNS_FAIL, ERR_CONNECT_FAIL, ERR_SECURE_CONNECT_FAIL ...
    detail: str
    status: int = 503
    server_ip: str | None = None
    tls: Any = None             # the TlsFailure of an ERR_SECURE_CONNECT_FAIL (squidpy.tls.errors)
    errno: int | None = None    # connect()'s error (111: refused ...); None: timed out, or no connect() failed
    reached: bool = False       # connected, then what came next failed (a parent's CONNECT answer, TLS)


@dataclass(slots=True)
class ResponseStarted(Event):
    head: ResponseHead


@dataclass(slots=True)
class InterimResponse(Event):
    """A 1xx reply other than 101."""
    head: ResponseHead


@dataclass(slots=True)
class ResponseBody(Event):
    data: bytes


@dataclass(slots=True)
class ResponseEnd(Event):
    """The reply is complete.  ``reusable``: the origin's connection may carry another
    request (it said keep-alive, the reply was length-delimited, nothing followed it)."""
    reusable: bool
    bytes_in: int = 0


@dataclass(slots=True)
class UpstreamFailed(Event):
    """The origin's connection failed during the exchange (reset, garbage, timeout)."""
    error: str
    detail: str
    status: int = 502
    retriable: bool = False     # it failed before any byte of a reply, on a reused connection
    bytes_in: int = 0


@dataclass(slots=True)
class Upgraded(Event):
    """After a 101, the origin's connection carries the new protocol; ``rest`` are
    the bytes that followed the 101 in the same read."""
    rest: bytes
    bytes_in: int = 0


# ---------------------------------------------------------------- a stored body being read
@dataclass(slots=True)
class StoredBody(Event):
    data: bytes


@dataclass(slots=True)
class StoredBodyEnd(Event):
    """The stored body was read to its end; ``intact``: length and digest matched."""
    intact: bool


class _StoredBodyMissing(Event):
    """The stored body could not be opened (removed or damaged under us)."""
    __slots__ = ()


# ---------------------------------------------------------------- SslBump
@dataclass(slots=True)
class ClientHelloRead(Event):
    """The client's first bytes after ``200 Connection established``: its ClientHello
    (squidpy.tls.hello), or why there is none (``not_tls``: it speaks something else)."""
    hello: Any
    problem: str | None = None
    not_tls: bool = False


@dataclass(slots=True)
class ServerTlsReady(Event):
    """Our TLS handshake with the origin is done (to bump or stare): its certificate and
    the problems verifying it found that sslproxy_cert_error let through."""
    peer_ip: str
    peer_port: int
    cert: Any
    errors: tuple[Any, ...] = ()
    seconds: float = 0.0        # DNS time
    tls: Any = None             # squidpy.tls.session.TlsFacts


@dataclass(slots=True)
class ServerHelloRead(Event):
    """After a peek: the origin's first flight (squidpy.tls.hello.ServerHello) and the
    bytes it came in, or why it could not be read."""
    hello: Any
    data: bytes = b""
    problem: str | None = None
    peer_ip: str | None = None
    peer_port: int | None = None


@dataclass(slots=True)
class ClientTlsReady(Event):
    """The bumped client finished its handshake with our minted certificate."""
    version: str | None = None
    alpn: str | None = None
    tls: Any = None             # squidpy.tls.session.TlsFacts


@dataclass(slots=True)
class ClientTlsFailed(Event):
    failure: Any                # squidpy.tls.errors.TlsFailure


# ---------------------------------------------------------------- tunnels and time
@dataclass(slots=True)
class TunnelEnded(Event):
    bytes_up: int
    bytes_down: int


@dataclass(slots=True)
class TimedOut(Event):
    """A deadline passed: ``"read"`` (the origin is silent), ``"body"`` (the request
    body stopped arriving), ``"icp"`` (the wait for ICP replies is over)."""
    what: str


RequestStarted = _RequestStarted()
RequestEnd = _RequestEnd()
ClientGone = _ClientGone()
CollapseReleased = _CollapseReleased()
StoredBodyMissing = _StoredBodyMissing()
