"""Commands: what an exchange asks the I/O layer to do, as plain data.

:meth:`squidpy.exchange.Exchange.handle` returns a list of these; the Twisted
layer carries them out in order and reports results back as events (the
event each command leads to is named in its docstring).  Parameterless
commands are singletons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from squidpy.acl.outgoing import Bind

if TYPE_CHECKING:
    from squidpy.peers.selection import IcpQuery


class Command:
    __slots__ = ()

    def __repr__(self) -> str:
        return type(self).__name__


# ---------------------------------------------------------------- the client
@dataclass(slots=True)
class SendToClient(Command):
    """Bytes for the client, in order; a tuple is written as one sequence."""
    data: bytes | tuple[bytes, ...]


class _AbortClient(Command):
    """Close the client's connection without finishing the reply, so it cannot take
    a cut-off reply for a complete one (or: deny_info TCP_RESET)."""
    __slots__ = ()


class _DetachClient(Command):
    """The client left and the exchange keeps fetching for the store (quick_abort):
    nothing more goes to the client, and the origin is read at full speed."""
    __slots__ = ()


DetachClient = _DetachClient()


@dataclass(slots=True)
class PauseClient(Command):
    """Stop reading the client (``reason`` names who holds it) ..."""
    reason: str


@dataclass(slots=True)
class ResumeClient(Command):
    """... and read again once the last reason lets go."""
    reason: str


# ---------------------------------------------------------------- lookups
@dataclass(slots=True)
class LookUp(Command):
    """Look up a fact -> FactKnown: ``dst`` (the addresses of ``name``, for an ACL),
    ``host`` (the addresses of an intercepted request's Host, to verify it),
    ``dst_name``/``src_name`` (the name of the address ``name``)."""
    fact: str
    name: str


@dataclass(slots=True)
class LookUpCache(Command):
    """Find the stored reply for this URL and request (Vary) -> CacheFound."""
    url: str
    request_headers: list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Throttle(Command):
    """Read the origin's reply through delay pool ``pool`` (an index into the
    configuration's delay pools; None: no pool, at full speed), for this client
    address, user and tag."""
    pool: int | None
    client_ip: str
    user: str | None = None
    tag: str | None = None


@dataclass(slots=True)
class CollectStats(Command):
    """Gather the figures of every process (each kid under ``workers N``) for the cache
    manager's ``action`` ('metrics' for /metrics): the reports carry ``needs``
    (:mod:`squidpy.mgr.actions`) -> StatsCollected."""
    action: str
    needs: frozenset[str]
    params: dict[str, str]


@dataclass(slots=True)
class Purge(Command):
    """Remove every stored variant of ``url`` -> Purged."""
    url: str


@dataclass(slots=True)
class WaitForFetch(Command):
    """Collapsed forwarding: wait until the fetch led by another exchange for ``key``
    is over -> CollapseReleased."""
    key: str


@dataclass(slots=True)
class LeadFetch(Command):
    """This exchange fetches ``key`` for any that arrive while it does."""
    key: str


@dataclass(slots=True)
class ReleaseFetch(Command):
    """The fetch for ``key`` is over: wake its waiters (each gets CollapseReleased);
    ``uncacheable``: its reply will not be stored, so for a while nobody waits for it."""
    key: str
    uncacheable: bool = False


@dataclass(slots=True)
class AskHelper(Command):
    """Send ``line`` to ``helper`` (``basic``, ``digest``, ``negotiate``, ``ntlm``,
    ``external:NAME``, ``url_rewrite``, ``store_id``) -> HelperAnswered.
    ``reservation``: the child a Negotiate/NTLM handshake is bound to."""
    helper: str
    line: str = field(repr=False)         # may carry a password: never shown
    reservation: int | None = None


@dataclass(slots=True)
class ReserveHelper(Command):
    """Keep child ``child`` of ``helper`` for this connection's handshake (after TT)."""
    helper: str
    child: int


@dataclass(slots=True)
class ReleaseHelper(Command):
    """The handshake on child ``child`` of ``helper`` is over: others may use it."""
    helper: str
    child: int


@dataclass(slots=True)
class RefreshExternal(Command):
    """An external ACL answer in its grace period was used: ask the helper again
    in the background and keep the new answer (nothing is fed back)."""
    type_name: str
    line: str


# ---------------------------------------------------------------- the origin
@dataclass(slots=True)
class Connect(Command):
    """A connection to the origin, or to ``peer`` (a cache_peer), idle pooled one first
    unless ``fresh`` -> Connected or ConnectFailed (``tunnel``: for CONNECT, never pooled;
    ``bind``: where to connect to the origin from; pooled connections are only reused
    from the same; ``through``: a bumped request to a parent, in a tunnel of its own)."""
    scheme: str
    host: str
    port: int
    fresh: bool = False
    tunnel: bool = False
    addresses: list[str] | None = None     # already looked up (for a dst ACL, or the peer's), or the original destination
    bind: Bind | None = None
    peer: Any = None
    source: str | None = None         # tproxy: connect from this (the client's) address
    original_dst: bool = False        # by name to the address the client connected to (bumped after interception)
    delay: float = 0.0                # connect_retries: wait this long first (Squid's pause between tries)
    timeout: float | None = None      # connect_retries: what connect_timeout leaves for this try
    # SslBump through a parent: this CONNECT head goes to the peer first, then TLS with the
    # origin ``through_host`` (Squid's establishTunnelThruProxy); the request follows inside
    through: bytes | None = None
    through_host: str | None = None


@dataclass(slots=True)
class SendIcp(Command):
    """Send these ICP queries (peers.selection.IcpQuery) and wait ``timeout`` seconds:
    each reply -> IcpReply; the end of the wait -> TimedOut("icp")."""
    queries: list[IcpQuery]
    timeout: float


@dataclass(slots=True)
class ForgetIcp(Command):
    """The replies to these request numbers are no longer wanted (and the wait is over)."""
    reqnums: tuple[int, ...]


@dataclass(slots=True)
class SendUpstream(Command):
    """Bytes for the origin (the request head, body chunks with their framing).
    With the head, ``method``: the request's, which decides whether its reply has a body."""
    data: bytes | tuple[bytes, ...]
    head: bool = False
    method: str = ""


@dataclass(slots=True)
class ReleaseUpstream(Command):
    """The exchange is done with the origin's connection: back to the pool when
    ``reusable``, else closed."""
    reusable: bool


class _AbortUpstream(Command):
    """Reset the origin's connection (what it still sends is unwanted)."""
    __slots__ = ()


@dataclass(slots=True)
class StartTunnel(Command):
    """Copy bytes both ways, untouched (CONNECT, 101) -> TunnelEnded.
    ``rest``: origin bytes that followed a 101 in the same read."""
    rest: bytes = b""


# ---------------------------------------------------------------- SslBump
class _ReadClientHello(Command):
    """Read the client's ClientHello, holding its bytes for what comes next -> ClientHelloRead."""
    __slots__ = ()


@dataclass(slots=True)
class ConnectTls(Command):
    """A new TLS connection to the origin (``server_name`` for SNI, the certificate checked
    for it, sslproxy_cert_error asked about problems) -> ServerTlsReady or ConnectFailed.
    With ``peer`` (a parent peer selection chose) ``host``/``port`` are the parent's and
    the ``through`` CONNECT head goes to it first: TLS with the origin runs in its tunnel."""
    host: str
    port: int
    server_name: str
    addresses: list[str] | None = None
    peer: Any = None
    through: bytes | None = None
    bind: Bind | None = None
    source: str | None = None
    delay: float = 0.0                # connect_retries: as Connect's
    timeout: float | None = None


@dataclass(slots=True)
class PeekServer(Command):
    """Connect to the origin, send it the client's own hello, read its first flight
    -> ServerHelloRead or ConnectFailed.  With ``peer``: through the parent's tunnel,
    as ConnectTls."""
    host: str
    port: int
    addresses: list[str] | None = None
    peer: Any = None
    through: bytes | None = None
    bind: Bind | None = None
    source: str | None = None
    delay: float = 0.0
    timeout: float | None = None


@dataclass(slots=True)
class StartClientTls(Command):
    """Answer the client's hello with a certificate minted from ``props``
    (squidpy.tls.mint.CertProperties) -> ClientTlsReady or ClientTlsFailed."""
    props: Any


@dataclass(slots=True)
class Bumped(Command):
    """The client's connection goes on as HTTP inside TLS: its requests know ``info``
    (squidpy.exchange.bumping.BumpedInfo).  An origin connection made while bumping goes
    to the pool for them."""
    info: Any


# ---------------------------------------------------------------- the store
@dataclass(slots=True)
class StreamStored(Command):
    """Send a stored body from disk (``window``: one byte range) -> StoredBody ...
    StoredBodyEnd, or StoredBodyMissing."""
    reply: Any
    window: tuple[int, int] | None = None
    head_only: bool = False         # HEAD: only check that the body is there


@dataclass(slots=True)
class StoreStart(Command):
    """Keep a copy of the reply that follows, for the store."""
    head: Any                   # ResponseHead
    request_time: float


@dataclass(slots=True)
class StoreBody(Command):
    data: bytes


@dataclass(slots=True)
class StoreEnd(Command):
    """Store the copy under ``key`` (complete and of the announced length)."""
    key: str
    url: str
    names: tuple[bytes, ...]
    vary_key: tuple[bytes, ...]
    response_time: float


class _StoreDiscard(Command):
    __slots__ = ()


@dataclass(slots=True)
class Freshen(Command):
    """A stored entry was revalidated: its updated fields are written (not its body)."""
    key: str
    reply: Any
    body: bytes | None


@dataclass(slots=True)
class Invalidate(Command):
    """RFC 9111 4.4: remove what is stored for these URLs."""
    urls: tuple[str, ...]


@dataclass(slots=True)
class BackgroundRefresh(Command):
    """stale-while-revalidate: revalidate ``url`` with no client waiting."""
    target: str
    headers: list[tuple[bytes, bytes]]


# ---------------------------------------------------------------- the end
@dataclass(slots=True)
class Log(Command):
    """The access log line (and the counters) for this exchange."""
    entry: Any                  # LogEntry
    checklist: Any


@dataclass(slots=True)
class Finished(Command):
    """The exchange is over; ``keep_alive``: the client's connection may carry the
    next request."""
    keep_alive: bool


@dataclass(slots=True)
class Report(Command):
    """A line for cache_log (something an admin should see)."""
    level: str
    message: str


AbortClient = _AbortClient()
ReadClientHello = _ReadClientHello()
AbortUpstream = _AbortUpstream()
StoreDiscard = _StoreDiscard()
