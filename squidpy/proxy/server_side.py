"""The server side: connections to origins, and the pool that reuses them.

A :class:`ServerConnection` carries one transaction at a time: it writes the
request head the transaction gives it, parses the reply with httptools and
hands the events back (``response_head``, ``response_body``,
``response_done``, ``server_failed``).  Between transactions it waits in the
:class:`ServerPool`, keyed by (scheme, host, port) (and the source address of a
tproxy connection), until
``server_idle_pconn_timeout``.  After a CONNECT or a 101 it becomes one half
of a tunnel and passes bytes through untouched.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httptools
from twisted.internet import defer, interfaces
from twisted.internet import error as ierror
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import (
    IHostnameResolver, IHostResolution, IReactorPluggableNameResolver, IReactorTCP, IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from squidpy.exchange import events as ev
from squidpy.http.message import (
    CHUNKED,
    CLOSE,
    INVALID,
    MAX_HEADER_FIELDS,
    ChunkMeter,
    ResponseHead,
    reads_end_after_heads,
    tunnel_refusal,
)
from squidpy.proxy import seam
from squidpy.proxy.closing import lose
from squidpy.proxy.flow import PausableReading
from squidpy.proxy.seam import connect_transparent, unlink_connector
from squidpy.proxy.timeouts import idle_time

if TYPE_CHECKING:
    from squidpy.config.loader import Config

# Squid keeps every idle connection an origin leaves open (its idle list grows as needed);
# this bound only keeps one origin from holding thousands of descriptors. Fewer than the
# clients busy with one origin at once closes and reopens connections all the time (50
# clients against 32 kept: one miss in five paid a new connection)
MAX_IDLE_PER_ORIGIN = 256
ATTEMPT_DELAY = 0.25        # seconds before the next address is tried alongside (RFC 8305: 250 ms)


class UpstreamError(Exception):
    """Talking to the origin failed; ``error`` is the ERR_* page to show (``tls``: the
    TlsFailure of an ERR_SECURE_CONNECT_FAIL; ``errno``: connect()'s error number;
    ``reached``: the connection was made, a parent then refused our CONNECT)."""

    def __init__(self, error: str, detail: str, status: int = 502, retriable: bool = False,
                 server_ip: str | None = None, tls=None, errno: int | None = None, reached: bool = False):
        super().__init__(detail)
        self.errno = errno
        self.reached = reached
        self.error = error
        self.detail = detail
        self.status = status
        self.retriable = retriable
        self.server_ip = server_ip
        self.tls = tls


class _StopParsing(Exception):
    pass


class _HeadTooBig(Exception):
    pass


class _TooMuchFraming(Exception):
    pass


class _Unframable(Exception):
    pass


@implementer(interfaces.IPushProducer, interfaces.IHalfCloseableProtocol)
class ServerConnection(PausableReading, Protocol):
    """One origin connection.  While a request is under way its ``driver`` gets the
    reply as events, one list per read (so what one read carries is handled, and
    written to the client, at once)."""

    limit = None                # write_timeout while what we write waits (see proxy/timeouts.py)
    handshake_timeout = None    # the TLS handshake's time, when not connect_timeout (a peer's, a retry's)
    opened = 0.0
    _unsent = 0

    def __init__(self, pool: "ServerPool", key: tuple, tls=None, through: bytes | None = None):
        self.pool = pool
        self.key = key
        self.tls = tls             # a squidpy.tls.session.ClientTlsSession for https:// origins and TLS peers
        self.through = through     # a CONNECT to a parent, answered before TLS or a peek starts (SslBump via a peer)
        self._through_answer = b""
        self.handshake = None      # fires when the TLS handshake is done (or fails)
        self.peeking = None        # SslBump peek: called with the origin's first flight
        self._peeked = b""
        self.driver = None
        self.tunnel = None
        self.parser = None
        self.deadline = None
        self.idle = False
        self.peer_ip = None
        self.peer_port = None
        self.local_ip = None
        self.local_port = None
        self.used = 0              # requests carried so far
        self.connected = False
        self._events: list | None = None   # the events of the read being parsed
        self._head: ResponseHead | None = None
        self._headers: list = []
        self._reason = b""
        self._head_bytes = 0
        self._method = "GET"
        self._close_delimited = False
        self._done = False
        self._chunk_meter = ChunkMeter()
        self._read_len = 0
        self._read_timeout = 0.0
        self._heads = 0             # reply heads completed in the current read
        self._tail = b""            # the last bytes of the previous read of this reply
        self._connect_head: bytes | None = None     # CONNECT through a parent: its answer so far
        self._connect_rest = b""
        self.bytes_in = 0
        self.delay = None           # squidpy.proxy.throttle.DelayedReads: reads in a delay pool

    # ------------------------------------------------------------ connection
    def connectionMade(self):
        self.connected = True
        self.opened = time.monotonic()
        peer, host = self.transport.getPeer(), self.transport.getHost()
        self.peer_ip, self.peer_port = peer.host, peer.port
        self.local_ip, self.local_port = host.host, host.port
        self.transport.setTcpNoDelay(True)
        self.transport.registerProducer(self, True)
        self.pool.timeouts.add(self)
        self.pool.opened(self, 1)
        if self.tls is not None or self.through is not None:
            self.handshake = defer.Deferred()
            self.deadline = time.monotonic() + (self.handshake_timeout or self.pool.connect_timeout)
            if self.through is not None:
                self.transport.write(self.through)
                return
            self.transport.write(self.tls.start().network)

    def _tunnel_answer(self, data: bytes) -> bytes | None:
        """The parent's answer to our CONNECT: after a 200 head (Squid's Http::Tunneler takes
        no other), TLS with the origin starts, or the connection is ready for a peek (what
        followed the head is the origin's); anything else fails the connection."""
        answer = self._through_answer = self._through_answer + data
        end = answer.find(b"\r\n\r\n")
        if end < 0:
            if len(answer) > self.pool.reply_header_max_size:
                self._tunnel_refused(b"an answer too large")
            return None
        status_line = answer.split(b"\r\n", 1)[0]
        refused = tunnel_refusal(status_line)
        if refused is not None:
            self._tunnel_refused(status_line[:100], refused)
            return None
        self.through, self._through_answer = None, b""
        if self.tls is None:
            self._handshake_over()          # to peek: the origin's first flight comes through the tunnel
        else:
            self.transport.write(self.tls.start().network)
        return answer[end + 4:]

    def _tunnel_refused(self, answer: bytes, status: int = 502) -> None:
        """The parent refused our CONNECT: Squid answers with the parent's status (its reply
        is relayed), 502 when there was no usable reply."""
        d, self.handshake = self.handshake, None
        self.through = None
        self.transport.abortConnection()
        if d is not None:
            self.deadline = None
            d.errback(UpstreamError("ERR_CONNECT_FAIL", "the parent answered our CONNECT with "
                                    + answer.decode("latin-1", "replace"), status, server_ip=self.peer_ip,
                                    reached=True))

    def _handshake_over(self, failure=None) -> None:
        d, self.handshake = self.handshake, None
        if d is None:
            return
        self.deadline = None
        if failure is None:
            d.callback(self)
        else:
            d.errback(UpstreamError("ERR_SECURE_CONNECT_FAIL", failure.detail(), 503, server_ip=self.peer_ip,
                                    tls=failure))

    def peek(self, callback) -> None:
        """SslBump: read the origin's first flight (ServerHello, and its certificate before
        TLS 1.3), then ``callback(hello, bytes read, problem)``."""
        self.peeking = callback
        self.deadline = time.monotonic() + self.pool.connect_timeout

    def _peek_received(self, data: bytes) -> None:
        from squidpy.tls.hello import MAX_HANDSHAKE, HelloError, parse_server_hello
        self._peeked += data
        try:
            hello = parse_server_hello(self._peeked)
        except HelloError as e:
            return self._peek_over(None, str(e))
        if hello is not None:
            self._peek_over(hello, None)
        elif len(self._peeked) > 2 * MAX_HANDSHAKE:
            self._peek_over(None, "the server's first flight is too large")

    def _peek_over(self, hello, problem) -> None:
        callback, self.peeking = self.peeking, None
        data, self._peeked = self._peeked, b""
        self.deadline = None
        callback(hello, data, problem)

    def write(self, data: bytes) -> None:
        seam.write(self.transport, data if self.tls is None else self.tls.send(data))

    def write_sequence(self, parts) -> None:
        if self.tls is not None:
            seam.write(self.transport, self.tls.send(b"".join(parts)))
        else:
            seam.write_sequence(self.transport, parts)

    def connectionLost(self, reason):
        was_connected, self.connected = self.connected, False
        unlink_connector(self.transport)
        uses = self.pool.uses
        uses[self.used] = uses.get(self.used, 0) + 1
        if self.delay is not None:
            self.delay.detach()
        self.pool.timeouts.discard(self)
        self.pool.forget(self)
        if was_connected:
            self.pool.opened(self, -1)
        if self.handshake is not None and self.through is not None:
            self._tunnel_refused(b"no answer (the parent closed the connection)")
        elif self.handshake is not None and self.tls is not None:
            self._handshake_over(self.tls.receive(b"").failure or self.tls.failure)
        self.parser = None          # it holds our bound methods (a reference cycle)
        tunnel, self.tunnel = self.tunnel, None
        if tunnel is not None:
            tunnel.server_closed()
            return
        if self.peeking is not None:
            self._peek_over(None, "the server closed the connection before its TLS hello")
            return
        driver, self.driver = self.driver, None
        if driver is None or self._done:
            return
        self._done = True
        if self._close_delimited and self._head is not None:
            driver.feed(ev.ResponseEnd(reusable=False, bytes_in=self.bytes_in))
        elif self._head is None:
            nothing = self.bytes_in == 0
            driver.feed(ev.UpstreamFailed(
                "ERR_ZERO_SIZE_OBJECT" if nothing else "ERR_READ_ERROR",
                "the server closed the connection before sending a reply" if nothing
                else "the server closed the connection in the middle of the reply headers",
                retriable=nothing and self.used > 1, bytes_in=self.bytes_in))
        else:
            driver.feed(ev.UpstreamFailed(
                "ERR_READ_ERROR", "the server closed the connection before the end of the reply",
                bytes_in=self.bytes_in))

    def readConnectionLost(self):
        """The origin sent EOF: a half-close inside a tunnel, else the end of it."""
        if self.tunnel is not None:
            self.tunnel.server_eof()
        else:
            lose(self.transport)

    def writeConnectionLost(self):
        """Our own half-close completed (loseWriteConnection); reading goes on."""

    # ------------------------------------------------------------ requests
    def start(self, driver, head: bytes, read_timeout: float, method: str) -> None:
        """Send a request head and expect its reply (``method``: the request's, which
        decides whether the reply has a body)."""
        self.driver = driver
        self.idle = False
        self.used += 1
        self.bytes_in = 0
        self._head = None
        self._headers = []
        self._reason = b""
        self._head_bytes = 0
        self._method = method
        self._close_delimited = False
        self._done = False
        self._tail = b""
        self._chunk_meter = ChunkMeter()
        self._read_timeout = read_timeout
        self._connect_head = b"" if method == "CONNECT" else None
        self.parser = httptools.HttpResponseParser(self)
        self.deadline = time.monotonic() + read_timeout
        self.write(head)

    def dataReceived(self, data: bytes) -> None:
        if self.delay is not None:
            self.delay.read(len(data))
        if self.through is not None:
            rest = self._tunnel_answer(data)
            if not rest:
                return
            data = rest
        tls = self.tls
        if tls is not None:
            out = tls.receive(data)
            if out.network:
                self.transport.write(out.network)
            if self.handshake is not None:
                if out.failure is not None:
                    self._handshake_over(out.failure)
                    self.transport.abortConnection()
                    return
                if out.handshake_done:
                    self._handshake_over()
            if out.failure is not None:
                self.transport.abortConnection()
                return
            if out.closed:
                if out.plaintext:
                    self._received(out.plaintext)
                lose(self.transport)
                return
            data = out.plaintext
            if not data:
                return
        self._received(data)

    def _received(self, data: bytes) -> None:
        if self.peeking is not None:
            self._peek_received(data)
            return
        if self.tunnel is not None:
            self.tunnel.from_server(data)
            return
        driver = self.driver
        if driver is None or self._done:
            # bytes nobody asked for: this connection cannot be trusted again
            self._done = True
            self.transport.abortConnection()
            return
        self.bytes_in += len(data)
        self.deadline = time.monotonic() + self._read_timeout
        self._chunk_meter.before_read(len(data))
        self._read_len = len(data)
        self._heads = 0
        self._events = events = []
        if self._connect_head is not None:
            self._connect_answer(data)
        else:
            self._feed(data)
        self._events = None
        if events:
            driver.feed_all(events)

    def _connect_answer(self, data: bytes) -> None:
        """A parent's answer to CONNECT: after a 2xx head the connection is a tunnel, so
        the head is cut out by hand (httptools would read what follows as a body)."""
        buffered = self._connect_head = self._connect_head + data
        ends = [i + len(m) for m in (b"\r\n\r\n", b"\n\n") if (i := buffered.find(m)) >= 0]
        if not ends:
            if len(buffered) > self.pool.reply_header_max_size:
                self._fail("ERR_CONNECT_FAIL", "the parent's answer to CONNECT is too large")
            return
        end = min(ends)
        self._connect_head = None
        self._connect_rest = buffered[end:]
        self._feed(buffered[:end])
        if not self._done and self._connect_rest:
            rest, self._connect_rest = self._connect_rest, b""
            self._feed(rest)        # a refusal's body, relayed like any reply's

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self._upgraded(data[e.args[0]:])
        except httptools.HttpParserError as e:
            cause = e.__context__
            if isinstance(cause, _StopParsing):
                if self._method == "CONNECT":
                    return
                if not reads_end_after_heads(self._tail, data, self._heads):
                    self._tainted()     # bytes no head accounted for: the connection is not reused
                return
            if isinstance(cause, _HeadTooBig):
                return self._fail("ERR_TOO_BIG", "the reply headers are larger than reply_header_max_size"
                                  f" or more than {MAX_HEADER_FIELDS} fields")
            if isinstance(cause, _TooMuchFraming):
                return self._fail("ERR_INVALID_RESP", "the chunked reply carries too much besides its data")
            if isinstance(cause, _Unframable):
                return self._fail("ERR_INVALID_RESP", str(cause))
            return self._fail("ERR_INVALID_RESP", f"the server sent an invalid reply: {e}")
        if self._done:
            return
        if self._head is None and self.bytes_in > self.pool.reply_header_max_size:
            # still no complete head after this much: an endless header section
            self._fail("ERR_TOO_BIG", "the reply headers are larger than reply_header_max_size")
        elif self._chunk_meter.exceeded_after_read(len(data)):
            self._fail("ERR_INVALID_RESP", "the chunked reply carries too much besides its data")
        else:
            self._tail = data[-3:]

    def _fail(self, error: str, detail: str, status: int = 502) -> None:
        """The reply is faulty: the exchange hears of it; this connection is never reused."""
        if self._done:
            return
        self._done = True
        self._events.append(ev.UpstreamFailed(error, detail, status, bytes_in=self.bytes_in))

    # ------------------------------------------------------------ httptools callbacks
    def on_message_begin(self) -> None:
        if self._done:
            # more bytes after a complete reply: never parsed into the next one
            self._tainted()
            raise _StopParsing()
        self._reason = b""          # each reply (an interim one, then the final one) starts afresh
        self._headers = []
        self._head_bytes = 0

    def _tainted(self) -> None:
        for event in self._events:
            if type(event) is ev.ResponseEnd:
                event.reusable = False

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head is not None:
            return      # trailer fields: not forwarded
        self._headers.append((name, value))
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self.pool.reply_header_max_size or len(self._headers) > MAX_HEADER_FIELDS:
            raise _HeadTooBig()

    def on_headers_complete(self) -> None:
        parser = self.parser
        status = parser.get_status_code()
        self._heads += 1
        head = ResponseHead(status, self._reason, parser.get_http_version(), self._headers,
                            request_method=self._method)
        framing = head.framing.kind
        if framing == INVALID:
            raise _Unframable(head.framing.problem)
        if status < 200 and status != 101:
            self._events.append(ev.InterimResponse(head))
            return
        self._head = head
        self._close_delimited = framing == CLOSE
        if framing == CHUNKED:
            self._chunk_meter.start(self._head_bytes + len(self._reason) + 17)
        self._events.append(ev.ResponseStarted(head))
        if self._method == "CONNECT" and status < 300:
            rest, self._connect_rest = self._connect_rest, b""
            self._upgraded(rest)
            raise _StopParsing()
        if self._method == "HEAD" and status != 101:
            self._end(reusable=head.keep_alive)
            raise _StopParsing()

    def on_body(self, data: bytes) -> None:
        self._chunk_meter.body += len(data)
        self._events.append(ev.ResponseBody(data))

    def on_chunk_header(self) -> None:
        self._chunk_meter.chunks += 1

    def on_message_complete(self) -> None:
        if self._chunk_meter.exceeded_at_end(self._read_len):
            raise _TooMuchFraming()
        self._chunk_meter.stop()
        if self._head is None:
            return      # end of an interim 1xx reply
        if self._head.status == 101:
            return self._upgraded(b"")
        self._end(reusable=self._head.keep_alive and not self._close_delimited)

    def _end(self, reusable: bool) -> None:
        self._done = True
        self.deadline = None
        self._events.append(ev.ResponseEnd(reusable, self.bytes_in))

    def _upgraded(self, rest: bytes) -> None:
        """After a 101 the bytes that follow belong to the new protocol (httptools first
        completes the 101, then says where the rest of the read starts)."""
        if self._done:
            for event in self._events:
                if type(event) is ev.Upgraded:
                    event.rest += rest
            return
        self._done = True
        self.deadline = None
        self._events.append(ev.Upgraded(rest, self.bytes_in))

    # ------------------------------------------------------------ flow control
    def pauseProducing(self):
        """Our write buffer to the origin is full: stop reading the client (for at
        most write_timeout without progress)."""
        self.limit = time.monotonic() + self.pool.write_timeout
        self._unsent = seam.unsent_bytes(self.transport)
        owner = self.tunnel or self.driver
        if owner is not None:
            owner.client.pause_reading("server")

    def resumeProducing(self):
        self.limit = None
        owner = self.tunnel or self.driver
        if owner is not None:
            owner.client.resume_reading("server")

    def stopProducing(self):
        pass

    def timed_out(self) -> None:
        now = time.monotonic()
        if self.limit is not None and self.limit <= now:
            unsent = seam.unsent_bytes(self.transport)
            if unsent < self._unsent:           # it took some: write_timeout runs again from now
                self._unsent = unsent
                self.limit = now + self.pool.write_timeout
                return
            self.limit = None
            if self.tunnel is not None or self.driver is None or self._done:
                return self.transport.abortConnection()
            self._done = True
            return self.driver.feed(ev.UpstreamFailed(
                "ERR_WRITE_ERROR", "the server took nothing of the request for write_timeout", 502,
                bytes_in=self.bytes_in))
        if self.peeking is not None:
            self._peek_over(None, "no TLS hello from the server within connect_timeout")
            self.transport.abortConnection()
        elif self.handshake is not None and self.through is not None:
            self._tunnel_refused(b"no answer within connect_timeout")
        elif self.handshake is not None:
            from squidpy.tls.errors import SQUID_TLS_ERR_CONNECT, TlsFailure
            self._handshake_over(TlsFailure(SQUID_TLS_ERR_CONNECT, lib_error="no TLS handshake within "
                                            "connect_timeout"))
            self.transport.abortConnection()
        elif self.tunnel is not None:
            self.tunnel.timed_out()
        elif self.driver is None or self._done:
            lose(self.transport)        # idle in the pool, or nobody waits for it any more
        else:
            self._done = True
            self.driver.feed(ev.TimedOut("read"))

    def detach(self) -> None:
        """The exchange is over: undo any pause it caused."""
        for reason in list(self._paused_by):
            self.resume_reading(reason)


class _ServerFactory(Factory):
    def __init__(self, pool: "ServerPool", key: tuple, tls_factory=None, timeout: float | None = None,
                 through: bytes | None = None):
        self.pool = pool
        self.key = key
        self.tls_factory = tls_factory
        self.timeout = timeout
        self.through = through

    def buildProtocol(self, addr):
        conn = ServerConnection(self.pool, self.key, self.tls_factory() if self.tls_factory else None, self.through)
        if self.timeout:
            conn.handshake_timeout = self.timeout
        return conn


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str):
        self.name = name

    def cancel(self) -> None:
        """Nothing to cancel: the answer was given at once."""


@implementer(IHostnameResolver)
class KnownAddresses:
    """A name resolver answering with addresses already looked up (by our DNS cache,
    or for a dst ACL), so HostnameEndpoint only does the connecting: every
    ATTEMPT_DELAY another address is tried alongside, and the first to answer wins
    (happy eyeballs, RFC 8305)."""

    def __init__(self, addresses: list[str]):
        self.addresses = addresses

    def resolveHostName(self, receiver, hostName, portNumber=0, addressTypes=None, transportSemantics="TCP"):
        resolution = _Resolution(hostName)
        receiver.resolutionBegan(resolution)
        for address in self.addresses:
            kind = IPv6Address if ":" in address else IPv4Address
            receiver.addressResolved(kind("TCP", address, portNumber))
        receiver.resolutionComplete()
        return resolution


@implementer(IReactorPluggableNameResolver, IReactorTCP, IReactorTime)
class _ResolvedReactor:
    """The reactor, seen by HostnameEndpoint with KnownAddresses as its resolver;
    each attempt is made from the local address ``bind`` gives its destination
    (tcp_outgoing_address), or, with ``source`` (tproxy), from that address with a
    transparent socket."""

    def __init__(self, reactor, addresses: list[str], bind=None, source: str | None = None):
        self._reactor = reactor
        self.nameResolver = KnownAddresses(addresses)
        self._bind = bind
        self._source = source

    def installNameResolver(self, resolver):
        raise NotImplementedError

    def connectTCP(self, host, port, factory, timeout=30, bindAddress=None):
        if self._source is not None:
            return connect_transparent(self._reactor, host, port, factory, timeout, (self._source, 0))
        if self._bind is not None:
            local = self._bind.local_for(host)
            if local is not None:
                bindAddress = (local, 0)
        return self._reactor.connectTCP(host, port, factory, timeout, bindAddress)

    def __getattr__(self, name):
        return getattr(self._reactor, name)


def pool_key(key: tuple, bind=None, source: str | None = None) -> tuple:
    """The idle-pool key of a connection opened from ``bind``'s local addresses
    (tcp_outgoing_address) or spoofing ``source`` (tproxy)."""
    if bind is not None:
        key += (bind,)          # reused only for requests sent from the same address
    if source is not None:
        key += (source,)        # a spoofed connection carries one client's address: never shared
    return key


class ServerPool:
    """Idle origin connections by (scheme, host, port), newest reused first.  A key
    lives only while it has idle connections: its list is dropped when it empties,
    so the table is as large as the idle connections, not as every origin ever seen."""

    def __init__(self, reactor, timeouts, config: Config):
        self.reactor = reactor
        self.timeouts = timeouts
        self.idle: dict[tuple, list[ServerConnection]] = {}
        self.uses: dict[int, int] = {}      # requests a connection carried -> connections (mgr:pconn)
        self.on_peer_connections = None     # (peer name, +1/-1): connections to cache_peers, for max-conn
        self.configure(config)

    def opened(self, conn: ServerConnection, delta: int) -> None:
        key = conn.key
        if key[0] in ("peer", "peer-tunnel") and self.on_peer_connections is not None:
            self.on_peer_connections(key[1], delta)

    def idle_count(self, key: tuple) -> int:
        return len(self.idle.get(key, ()))

    def configure(self, config: Config) -> None:
        self.connect_timeout = config.connect_timeout
        self.idle_timeout = config.server_idle_pconn_timeout
        self.pconn_lifetime = config.pconn_lifetime
        self.write_timeout = config.write_timeout
        self.reply_header_max_size = config.reply_header_max_size

    def get_idle(self, key: tuple) -> ServerConnection | None:
        conns = self.idle.get(key)
        found = None
        while conns:
            conn = conns.pop()
            if conn.connected:
                conn.idle = False
                found = conn
                break
        if conns is not None and not conns:
            del self.idle[key]
        return found

    def release(self, conn: ServerConnection) -> None:
        if conn.delay is not None:
            conn.delay.detach()
        conn.detach()
        conn.driver = None
        conn.parser = None
        conns = self.idle.get(conn.key)
        if (not conn.connected or self.idle_timeout <= 0
                or (conns is not None
                    and len(conns) >= MAX_IDLE_PER_ORIGIN)):
            lose(conn.transport)
            return
        if conns is None:
            conns = self.idle[conn.key] = []
        conn.idle = True
        now = time.monotonic()
        conn.deadline = now + (idle_time(self.idle_timeout, self.pconn_lifetime, conn, now) if self.pconn_lifetime
                               else self.idle_timeout)
        conns.append(conn)

    def forget(self, conn: ServerConnection) -> None:
        conns = self.idle.get(conn.key)
        if conns and conn in conns:
            conns.remove(conn)
            if not conns:
                del self.idle[conn.key]

    def close_idle(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                lose(conn.transport)
        self.idle.clear()

    def connect(self, key: tuple, addresses: list[str], tls_factory=None,
                timeout: float | None = None, bind=None, source: str | None = None,
                through: bytes | None = None) -> defer.Deferred:
        """Connect to ``addresses`` (happy eyeballs), from the local addresses ``bind``
        names (tcp_outgoing_address); fires with the ServerConnection or fails with
        UpstreamError naming the last address tried.  With ``tls_factory`` (a function
        making a ClientTlsSession: https:// origins, cache_peers with ``tls``) it
        fires once the TLS handshake is done, within ``timeout`` too, or fails with
        ERR_SECURE_CONNECT_FAIL saying why.  ``source``: the
        address to connect from, which need not be this host's (tproxy: the client's);
        only addresses of its family can be reached from it.  ``through``: a CONNECT head
        for the parent at ``addresses``, whose 2xx answer comes before TLS starts."""
        scheme, host, port = key[:3]
        if source is not None:
            v6 = ":" in source
            addresses = [a for a in addresses if (":" in a) == v6]
            if not addresses:
                return defer.fail(UpstreamError(
                    "ERR_CONNECT_FAIL", f"no address of {host} can be reached from the client's address {source}",
                    status=503))
        reactor = _ResolvedReactor(self.reactor, addresses, bind, source)
        timeout = timeout or self.connect_timeout
        if len(addresses) == 1:
            # nothing to race: HostnameEndpoint would hold a refusal until its next attempt
            # tick (ATTEMPT_DELAY), where Squid answers at once
            only = addresses[0]
            endpoint = (TCP6ClientEndpoint if ":" in only else TCP4ClientEndpoint)(reactor, only, port, timeout=timeout)
        else:
            endpoint = HostnameEndpoint(reactor, host, port, timeout=timeout, attemptDelay=ATTEMPT_DELAY)

        def failed(failure):
            e = failure.value
            if isinstance(e, UpstreamError):
                return failure
            os_error = getattr(e, "osError", None)
            raise UpstreamError("ERR_CONNECT_FAIL", _describe_connect_error(e), status=503,
                                server_ip=addresses[-1] if addresses else None,
                                errno=os_error if isinstance(os_error, int) else None)
        d = endpoint.connect(_ServerFactory(self, key, tls_factory, timeout, through)).addErrback(failed)
        if tls_factory is not None or through is not None:
            d.addCallback(lambda conn: conn.handshake if conn.handshake is not None else conn)
        return d


def _describe_connect_error(e) -> str:
    if isinstance(e, ierror.ConnectionRefusedError):
        return "(111) Connection refused"
    if isinstance(e, (ierror.TimeoutError, ierror.TCPTimedOutError)):
        return "(110) Connection timed out"
    if isinstance(e, ierror.NoRouteError):
        return "(113) No route to host"
    if e is None:
        return "no address to connect to"
    return str(e) or e.__class__.__name__
