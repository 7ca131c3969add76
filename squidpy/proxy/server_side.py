"""The server side: connections to origins, and the pool that reuses them.

A :class:`ServerConnection` carries one transaction at a time: it writes the
request head the transaction gives it, parses the reply with httptools and
hands the events back (``response_head``, ``response_body``,
``response_done``, ``server_failed``).  Between transactions it waits in the
:class:`ServerPool`, keyed by (scheme, host, port), until
``server_idle_pconn_timeout``.  After a CONNECT or a 101 it becomes one half
of a tunnel and passes bytes through untouched.
"""

from __future__ import annotations

import time

import httptools
from twisted.internet import defer, interfaces, ssl
from twisted.internet import error as ierror
from twisted.internet.protocol import ClientFactory, Protocol
from zope.interface import implementer

from squidpy.http.message import (
    CHUNKED,
    CLOSE,
    INVALID,
    MAX_HEADER_FIELDS,
    ChunkMeter,
    ResponseHead,
    reads_end_after_heads,
)
from squidpy.proxy.closing import lose
from squidpy.proxy.flow import PausableReading

MAX_IDLE_PER_ORIGIN = 32


class UpstreamError(Exception):
    """Talking to the origin failed; ``error`` is the ERR_* page to show."""

    def __init__(self, error: str, detail: str, status: int = 502, retriable: bool = False,
                 server_ip: str | None = None):
        super().__init__(detail)
        self.error = error
        self.detail = detail
        self.status = status
        self.retriable = retriable
        self.server_ip = server_ip


class _StopParsing(Exception):
    pass


class _HeadTooBig(Exception):
    pass


class _TooMuchFraming(Exception):
    pass


class _Unframable(Exception):
    pass


class _Leftover(Exception):
    """The origin sent more after a complete reply: bytes no request asked for."""


@implementer(interfaces.IPushProducer, interfaces.IHalfCloseableProtocol)
class ServerConnection(PausableReading, Protocol):
    def __init__(self, pool: "ServerPool", key: tuple):
        self.pool = pool
        self.key = key
        self.txn = None
        self.tunnel = None
        self.parser = None
        self.deadline = None
        self.idle = False
        self.peer_ip = None
        self.peer_port = None
        self.local_ip = None
        self.local_port = None
        self.used = 0              # transactions carried so far
        self.connected = False
        self._head: ResponseHead | None = None
        self._headers = None
        self._reason = b""
        self._head_bytes = 0
        self._method = "GET"
        self._close_delimited = False
        self._complete = False      # the final reply has been read to its end
        self._done = False          # the transaction has been told how the reply ended
        self._chunk_meter = ChunkMeter()
        self._read_len = 0
        self._heads = 0             # reply heads completed in the current read
        self._tail = b""            # the last bytes of the previous read of this reply
        self.bytes_in = 0

    # ------------------------------------------------------------ connection
    def connectionMade(self):
        self.connected = True
        peer, host = self.transport.getPeer(), self.transport.getHost()
        self.peer_ip, self.peer_port = peer.host, peer.port
        self.local_ip, self.local_port = host.host, host.port
        self.transport.setTcpNoDelay(True)
        self.transport.registerProducer(self, True)
        self.pool.timeouts.add(self)
        d, self._connected_d = self._connected_d, None
        if d is not None:
            d.callback(self)

    def connectionLost(self, reason):
        self.connected = False
        self.pool.timeouts.discard(self)
        self.pool.forget(self)
        self.parser = None          # it holds our bound methods (a reference cycle)
        tunnel, self.tunnel = self.tunnel, None
        if tunnel is not None:
            tunnel.server_closed()
            return
        txn, self.txn = self.txn, None
        if txn is None:
            return
        if self._close_delimited and self._head is not None and not self._done:
            self._done = True
            txn.response_done(reusable=False)
            return
        if self._done:
            return
        if self._head is None:
            nothing = self.bytes_in == 0
            txn.server_failed(UpstreamError(
                "ERR_ZERO_SIZE_OBJECT" if nothing else "ERR_READ_ERROR",
                "the server closed the connection before sending a reply" if nothing
                else "the server closed the connection in the middle of the reply headers",
                retriable=nothing and self.used > 1,
            ))
        else:
            txn.server_failed(UpstreamError(
                "ERR_READ_ERROR", "the server closed the connection before the end of the reply"))

    def readConnectionLost(self):
        """The origin sent EOF: a half-close inside a tunnel, else the end of it."""
        if self.tunnel is not None:
            self.tunnel.server_eof()
        else:
            lose(self.transport)

    def writeConnectionLost(self):
        """Our own half-close completed (loseWriteConnection); reading goes on."""

    # ------------------------------------------------------------ requests
    def start(self, txn, head: bytes, read_timeout: float, method: str) -> None:
        """Send a request head and expect its reply (``method``: the request's,
        which decides whether the reply has a body)."""
        self.txn = txn
        self.idle = False
        self.used += 1
        self.bytes_in = 0
        self._head = None
        self._headers = []
        self._reason = b""
        self._head_bytes = 0
        self._method = method
        self._close_delimited = False
        self._complete = False
        self._done = False
        self._tail = b""
        self._chunk_meter = ChunkMeter()
        self._read_timeout = read_timeout
        self.parser = httptools.HttpResponseParser(self)
        self.deadline = time.monotonic() + read_timeout
        self.transport.write(head)

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.from_server(data)
            return
        if self.txn is None:
            # bytes nobody asked for: this connection cannot be trusted again
            lose(self.transport)
            return
        self.bytes_in += len(data)
        self.deadline = time.monotonic() + self._read_timeout
        self._chunk_meter.before_read(len(data))
        self._read_len = len(data)
        self._heads = 0
        client = self.txn.client
        client.cork()
        try:
            self._feed(data)
        finally:
            client.uncork()

    def _feed(self, data: bytes) -> None:
        """Parse one read.  The transaction learns that its reply ended only after
        the parser has returned: the connection may then go back to the pool and
        carry the next request, which must never meet bytes of this read."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self._upgraded(data[e.args[0]:])
            return
        except httptools.HttpParserError as e:
            cause = e.__context__
            if isinstance(cause, _StopParsing):
                # a reply without a body (to HEAD): reusable only if nothing followed its head
                clean = reads_end_after_heads(self._tail, data, self._heads)
                return self._reply_complete(reusable=clean and self._head.keep_alive)
            if self._complete:
                # more bytes after a complete reply (another reply, garbage, or data
                # after Connection: close): the reply stands, the connection goes
                return self._reply_complete(reusable=False)
            if isinstance(cause, _HeadTooBig):
                return self._fail("ERR_TOO_BIG", f"the reply headers are larger than reply_header_max_size"
                                  f" or more than {MAX_HEADER_FIELDS} fields")
            if isinstance(cause, _TooMuchFraming):
                return self._fail("ERR_INVALID_RESP", "the chunked reply carries too much besides its data")
            if isinstance(cause, _Unframable):
                return self._fail("ERR_INVALID_RESP", str(cause))
            return self._fail("ERR_INVALID_RESP", f"the server sent an invalid reply: {e}")
        if self._complete:
            return self._reply_complete(reusable=self._head.keep_alive and not self._close_delimited)
        if self._head is None and self.txn is not None and self.bytes_in > self.pool.reply_header_max_size:
            # still no complete head after this much: an endless header section
            self._fail("ERR_TOO_BIG", "the reply headers are larger than reply_header_max_size")
        elif self._chunk_meter.exceeded_after_read(len(data)):
            self._fail("ERR_INVALID_RESP", "the chunked reply carries too much besides its data")
        else:
            self._tail = data[-3:]

    def _reply_complete(self, reusable: bool) -> None:
        """The final reply was read to its end; ``reusable``: nothing else came with it."""
        txn, self.txn = self.txn, None
        if not reusable:
            self.parser = None      # nothing more is read as HTTP on this connection
            lose(self.transport)
        if txn is not None and not self._done:
            self._done = True
            txn.response_done(reusable=reusable)

    def _fail(self, error: str, detail: str, status: int = 502) -> None:
        txn, self.txn = self.txn, None
        self.transport.abortConnection()
        if txn is not None and not self._done:
            self._done = True
            txn.server_failed(UpstreamError(error, detail, status))

    # ------------------------------------------------------------ httptools callbacks
    def on_message_begin(self) -> None:
        if self._complete:
            raise _Leftover()
        self._reason = b""          # each reply (an interim one, then the final one) starts afresh
        self._headers = []
        self._head_bytes = 0

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
            self.txn.interim_response(head)
            return
        self._head = head
        self._close_delimited = framing == CLOSE
        if framing == CHUNKED:
            self._chunk_meter.start(self._head_bytes + len(self._reason) + 17)
        txn = self.txn
        txn.response_head(head)
        if self._method == "HEAD" and status != 101 and self.txn is txn:
            self._complete = True
            raise _StopParsing()

    def on_body(self, data: bytes) -> None:
        self._chunk_meter.body += len(data)
        txn = self.txn
        if txn is not None:
            txn.response_body(data)

    def on_chunk_header(self) -> None:
        self._chunk_meter.chunks += 1

    def on_message_complete(self) -> None:
        if self._chunk_meter.exceeded_at_end(self._read_len):
            raise _TooMuchFraming()
        self._chunk_meter.stop()
        if self._head is None:
            return      # end of an interim 1xx reply
        if self._head.status == 101:
            self._upgraded(b"")
            return
        self._complete = True       # told to the transaction once the parser has returned (_feed)

    def _upgraded(self, rest: bytes) -> None:
        """After a 101 the bytes that follow belong to the new protocol."""
        if self.tunnel is not None:
            if rest:
                self.tunnel.from_server(rest)
            return
        txn, self.txn = self.txn, None
        if txn is not None:
            self._done = True
            txn.server_upgraded(self, rest)

    # ------------------------------------------------------------ flow control


    def pauseProducing(self):
        """Our write buffer to the origin is full: stop reading the client."""
        owner = self.tunnel or self.txn
        if owner is not None:
            owner.client.pause_reading("server")

    def resumeProducing(self):
        owner = self.tunnel or self.txn
        if owner is not None:
            owner.client.resume_reading("server")

    def stopProducing(self):
        pass

    def timed_out(self) -> None:
        if self.tunnel is not None:
            self.tunnel.timed_out()
        elif self.idle or self.txn is None:
            lose(self.transport)
        else:
            self._fail("ERR_READ_TIMEOUT", "the server did not answer within read_timeout", 504)

    def detach(self) -> None:
        """The transaction is over: undo any pause it caused."""
        for reason in list(self._paused_by):
            self.resume_reading(reason)


class _Connector(ClientFactory):
    def __init__(self, pool: "ServerPool", key: tuple, d: defer.Deferred):
        self.pool = pool
        self.key = key
        self.d = d

    def buildProtocol(self, addr):
        conn = ServerConnection(self.pool, self.key)
        conn._connected_d = self.d
        return conn

    def clientConnectionFailed(self, connector, reason):
        d, self.d = self.d, None
        if d is not None:
            d.errback(reason)

    def clientConnectionLost(self, connector, reason):
        # Twisted's connector and its transport point at each other: part them so
        # a closed origin connection is freed by reference counting
        connector.transport = None


class ServerPool:
    """Idle origin connections by (scheme, host, port), newest reused first.  A key
    lives only while it has idle connections: its list is dropped when it empties,
    so the table is as large as the idle connections, not as every origin ever seen."""

    def __init__(self, reactor, timeouts, config):
        self.reactor = reactor
        self.timeouts = timeouts
        self.idle: dict[tuple, list[ServerConnection]] = {}
        self.configure(config)

    def configure(self, config) -> None:
        self.connect_timeout = config.connect_timeout
        self.idle_timeout = config.server_idle_pconn_timeout
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
        conn.detach()
        conn.txn = None
        conn.parser = None
        conns = self.idle.get(conn.key)
        if (not conn.connected or self.idle_timeout <= 0
                or (conns is not None and len(conns) >= MAX_IDLE_PER_ORIGIN)):
            lose(conn.transport)
            return
        if conns is None:
            conns = self.idle[conn.key] = []
        conn.idle = True
        conn.deadline = time.monotonic() + self.idle_timeout
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

    @defer.inlineCallbacks
    def connect(self, key: tuple, addresses: list[str]):
        """Connect to the first address that answers; fails with UpstreamError."""
        scheme, host, port = key
        last = None
        for address in addresses:
            d = defer.Deferred()
            factory = _Connector(self, key, d)
            if scheme == "https":
                creator = ssl.optionsForClientTLS(host)
                self.reactor.connectSSL(address, port, factory, creator, timeout=self.connect_timeout)
            else:
                self.reactor.connectTCP(address, port, factory, timeout=self.connect_timeout)
            try:
                conn = yield d
            except Exception as e:
                last = (address, e)
                continue
            return conn
        address, e = last if last else (None, None)
        raise UpstreamError("ERR_CONNECT_FAIL", _describe_connect_error(e), status=503,
                            server_ip=address) from None


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
