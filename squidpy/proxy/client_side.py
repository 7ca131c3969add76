"""The client side: a browser's connection to squidpy (Squid's client_side).

:class:`ClientConnection` parses requests with httptools, queues pipelined
ones and runs them one at a time as :class:`Transaction` objects, so replies
leave in request order.  It enforces the client timeouts and the request
head size limit, and becomes one half of a tunnel after CONNECT or a 101.
:class:`ClientFactory` is the Twisted factory behind every ``http_port``.
"""

from __future__ import annotations

import re
import time

import httptools
from twisted.internet import interfaces
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from squidpy.acl.checklist import Checklist
from squidpy.http.message import CHUNKED, MAX_HEADER_FIELDS, ChunkMeter, RequestHead, body_prelude
from squidpy.ip import ip_text as plain_ip     # '::ffff:10.0.0.1' (IPv4 on a dual-stack socket) -> '10.0.0.1'
from squidpy.proxy.closing import lose
from squidpy.proxy.flow import PausableReading
from squidpy.proxy.transaction import Transaction

MAX_PIPELINE = 16          # queued requests before we stop reading
LINGER = 2.0               # seconds to drain a client we refused before closing
MAX_RAW_BUFFER = 256 * 1024


MAX_URL = 8192             # Squid's MAX_URL: a longer request target is answered 414


class _HeadTooBig(Exception):
    pass


class _UrlTooLong(Exception):
    pass


class _NoMoreRequests(Exception):
    """A request began after the one that closes the connection (RFC 9112 9.6)."""


@implementer(interfaces.IPushProducer, interfaces.IHalfCloseableProtocol)
class ClientConnection(PausableReading, Protocol):
    def __init__(self, service, port_name: str):
        self.service = service
        self.port_name = port_name
        self.queue: list[Transaction] = []      # pipelined requests (a list: a deque costs 600 bytes)
        self.active: Transaction | None = None
        self.tunnel = None
        self.parser = None
        self.deadline = None
        self.closing = False       # no more requests will be read
        self.eof = False           # the client half-closed
        self.raw: list[bytes] | None = None  # bytes after CONNECT/Upgrade, before the tunnel
        self._corked: list[bytes] | None = None
        self._cork_number = 0
        self._starting = False
        self._priming = False
        self._reset_request()

    # ------------------------------------------------------------ connection
    def connectionMade(self):
        t = self.transport
        peer, host = t.getPeer(), t.getHost()
        self.client_ip, self.client_port = plain_ip(peer.host), peer.port
        self.local_ip, self.local_port = plain_ip(host.host), host.port
        t.setTcpNoDelay(True)
        t.registerProducer(self, True)
        self.deadline = time.monotonic() + self.service.config.request_timeout
        self.service.client_connected(self)

    def connectionLost(self, reason):
        self.closing = True
        self.service.client_disconnected(self)
        # the parser holds our bound methods: drop it so the connection is freed
        # by reference counting, not left for the garbage collector
        self.parser = None
        self._txn = self._upgrade_pending = self._body_after_upgrade = None
        tunnel, self.tunnel = self.tunnel, None
        if tunnel is not None:
            tunnel.client_closed()
            return
        active, self.active = self.active, None
        if active is not None:
            active.client_aborted()
        self.queue.clear()

    def readConnectionLost(self):
        """The client sent EOF: finish what was asked, then close."""
        if self.tunnel is not None:
            self.tunnel.client_eof()
            return
        self.eof = True
        self.closing = True
        if self.active is None and not self.queue:
            lose(self.transport)

    def writeConnectionLost(self):
        """Our own half-close completed (loseWriteConnection); reading goes on."""

    @property
    def closes_after_active(self) -> bool:
        """Whether the connection closes once the active request is answered: no
        request will be read any more and none waits behind it."""
        return self.closing and not self.queue

    def checklist(self, head: RequestHead, target) -> Checklist:
        ch = Checklist(
            src=self.client_ip, method=head.method, url=target.url, scheme=target.scheme,
            host=target.host, port=target.port, path=target.path,
            request_headers=head.headers, src_port=self.client_port, local_ip=self.local_ip,
            local_port=self.local_port, port_name=self.port_name, ip_literal=target.ip_literal,
        )
        ch.client_connections = self.service.connections_from(self.client_ip)
        return ch

    # ------------------------------------------------------------ reading
    def dataReceived(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.from_client(data)
            return
        if self.raw is not None:
            self.raw.append(data)
            if sum(map(len, self.raw)) > MAX_RAW_BUFFER:
                self.pause_reading("raw")
            return
        if self.closing and self._txn is None and not self._in_head:
            return      # no request will be read any more (after a refusal, or the last one): drop
        if self._in_head:
            self._head_bytes += len(data)
        self._chunk_meter.before_read(len(data))
        if self.parser is None:         # made at the first bytes: idle (preconnected) clients cost less
            self.parser = httptools.HttpRequestParser(self)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            rest = data[e.args[0]:]
            txn, self._body_after_upgrade = self._body_after_upgrade, None
            if txn is not None:
                return self._read_upgrade_body(txn, rest)
            self._upgrade_pending = None
            self.raw = [rest] if rest else []
            return
        except httptools.HttpParserError as e:
            if self.closing and self._txn is None and not self._in_head:
                return      # bytes after the request that closes the connection: not read
            if isinstance(e.__context__, _HeadTooBig):
                return self._refuse("ERR_TOO_BIG", "the request headers are larger than request_header_max_size"
                                    f" or more than {MAX_HEADER_FIELDS} fields", 431)
            if isinstance(e.__context__, _UrlTooLong):
                return self._refuse("ERR_TOO_BIG", f"the URL is longer than {MAX_URL} bytes", 414)
            return self._refuse(*_classify_parse_error(e, data))
        pending, self._upgrade_pending = self._upgrade_pending, None
        if pending is not None and not pending.finished and self.raw is None and self.tunnel is None:
            # httptools raises only when bytes follow the request; either way
            # what comes next belongs to the tunnel (or, if declined, to HTTP)
            self.raw = []
        if self._in_head and self._head_bytes > self.service.config.request_header_max_size:
            self._refuse("ERR_TOO_BIG", "the request headers are larger than request_header_max_size", 431)
        elif self._chunk_meter.exceeded_after_read(len(data)):
            self._refuse("ERR_INVALID_REQ", "the chunked request body carries too much besides its data", 400)

    def _reset_request(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._head_bytes = 0
        self._in_head = False
        self._chunk_meter = ChunkMeter()
        self._upgrade_pending: Transaction | None = None   # a CONNECT or Upgrade request
        self._body_after_upgrade: Transaction | None = None  # an Upgrade request with a body
        self._txn: Transaction | None = None     # the request whose body is being read

    def _read_upgrade_body(self, txn: Transaction, rest: bytes) -> None:
        """httptools leaves the body of an Upgrade request unread and hands over all
        that follows its head.  That body is still HTTP: a parser primed with a head
        framed as the request's reads it, and what follows is HTTP again, since such a
        request never upgrades (the transaction does not forward its offer)."""
        self.parser = httptools.HttpRequestParser(self)
        self._priming = True
        try:
            self.parser.feed_data(body_prelude(txn.head.framing))
        finally:
            self._priming = False
        self._txn = txn
        if rest:
            self.dataReceived(rest)

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self._priming:
            return
        if self.closing:
            raise _NoMoreRequests()
        self._in_head = True
        self._started = time.time()
        self.deadline = time.monotonic() + self.service.config.request_timeout

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_URL:
            raise _UrlTooLong()

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return      # a trailer field after a chunked body: dropped
        self._headers.append((name, value))
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.service.config.request_header_max_size or len(self._headers) > MAX_HEADER_FIELDS:
            raise _HeadTooBig()

    def on_headers_complete(self) -> None:
        if self._priming:
            self._url = b""
            return
        parser = self.parser
        method = parser.get_method().decode("ascii")
        url = self._url.decode("latin-1")
        size = len(method) + len(url) + 12 + self._head_size + 2
        head = RequestHead(method, url, parser.get_http_version(), self._headers, size)
        txn = Transaction(self, head, self._started)
        self._txn = txn
        self._in_head = False
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._head_bytes = 0
        self.deadline = None
        if not head.keep_alive:
            self.closing = True
        framing = head.framing
        if head.method == "CONNECT":
            self._upgrade_pending = txn
        elif parser.should_upgrade():
            # what follows is the new protocol's, unless the origin declines; but
            # httptools leaves a body unread: see _read_upgrade_body
            if framing.has_body:
                self._body_after_upgrade = txn
            else:
                self._upgrade_pending = txn
        if framing.kind == CHUNKED:
            self._chunk_meter.start(size)
        if framing.has_body:
            self.deadline = self._body_deadline()
        self.queue.append(txn)
        if len(self.queue) > MAX_PIPELINE:
            self.pause_reading("pipeline")
        self._start_next()

    def on_body(self, data: bytes) -> None:
        self._chunk_meter.body += len(data)
        self.deadline = self._body_deadline()
        txn = self._txn
        if txn is not None:
            txn.client_body(data)

    def _body_deadline(self) -> float:
        return time.monotonic() + self.service.config.read_timeout

    def on_chunk_header(self) -> None:
        self._chunk_meter.chunks += 1

    def on_message_complete(self) -> None:
        if self._txn is not None and self._txn is self._body_after_upgrade:
            return      # httptools skipped the body: it is read after the head (_read_upgrade_body)
        self._chunk_meter.stop()
        if self.active is not None:
            self.deadline = None
        txn, self._txn = self._txn, None
        if txn is not None:
            txn.client_body_done()

    def refuse_now(self, error: str, detail: str, status: int) -> None:
        """Answer a connection we will not serve, before it sends anything."""
        self._refuse(error, detail, status)

    def _refuse(self, error: str, detail: str, status: int) -> None:
        """Input that cannot be parsed: answer it, then stop reading this client.

        When it is the body of a request already queued or under way, that request
        gets the error (nothing more of it goes upstream); otherwise the broken
        request gets one of its own."""
        self.closing = True
        self._in_head = False       # the parser is spent: nothing more is read
        self._chunk_meter.active = False
        txn, self._txn = self._txn, None
        if txn is not None and not txn.finished:
            txn.keep_alive = False
            if txn is self.active:
                txn.client_body_invalid(error, detail, status)
            else:
                txn.refusal = (error, detail, status)
            return
        head = RequestHead("NONE", "error:invalid-request", "1.1", [], self._head_bytes)
        txn = Transaction(self, head, time.time())
        txn.entry.url = "error:invalid-request"
        txn.keep_alive = False
        txn.refusal = (error, detail, status)
        self.queue.append(txn)
        self._start_next()

    # ------------------------------------------------------------ transactions
    def _start_next(self) -> None:
        if self._starting:
            return
        self._starting = True
        try:
            while self.active is None and self.queue:
                self.active = self.queue.pop(0)
                if len(self.queue) <= MAX_PIPELINE:
                    self.resume_reading("pipeline")
                self.active.start()
        finally:
            self._starting = False

    def transaction_done(self, txn: Transaction) -> None:
        if txn is not self.active:
            return
        self.active = None
        self.resume_reading("body")
        self.resume_reading("server")
        if txn.head.method == "CONNECT" and self.tunnel is None:
            txn.keep_alive = False      # bytes meant for a tunnel may follow a refused CONNECT
        if self.raw is not None and self.tunnel is None:
            # an Upgrade the origin declined: what followed the request is HTTP again
            raw, self.raw = self.raw, None
            self.resume_reading("raw")
            if txn.keep_alive and txn.head.method != "CONNECT":
                self.parser = httptools.HttpRequestParser(self)
                self._start_next()
                for data in raw:
                    self.dataReceived(data)
                return
            txn.keep_alive = False
        if not txn.keep_alive or (self.closing and not self.queue):
            self.closing = True
            self.queue.clear()
            self._close_after_reply(txn)
            return
        if not self.queue:
            self.deadline = time.monotonic() + self.service.config.client_idle_pconn_timeout
        self._start_next()

    def _close_after_reply(self, txn: Transaction) -> None:
        if self.tunnel is not None:
            return
        if txn.body_done or self.eof:
            lose(self.transport)
        else:
            # the client may still be sending a body we refused: let it drain,
            # so the reply is not lost to a reset (a lingering close)
            self.transport.loseWriteConnection()
            self.deadline = time.monotonic() + LINGER

    def become_tunnel(self, tunnel) -> None:
        self.tunnel = tunnel
        self.deadline = None
        raw, self.raw = self.raw, None
        self.resume_reading("raw")
        for data in raw or ():
            if data:
                tunnel.from_client(data)

    def raw_head(self, head: RequestHead) -> bytes:
        """The request head as received (for TRACE)."""
        lines = [f"{head.method} {head.target} HTTP/{head.version}".encode("latin-1")]
        lines.extend(b"%s: %s" % kv for kv in head.headers)
        return b"\r\n".join(lines) + b"\r\n\r\n"

    # ------------------------------------------------------------ writing
    def write(self, data: bytes) -> None:
        if self._corked is not None:
            self._corked.append(data)
        else:
            self.transport.write(data)

    def write_sequence(self, parts) -> None:
        if self._corked is not None:
            self._corked.extend(parts)
        else:
            self.transport.writeSequence(parts)

    def cork(self) -> int:
        """Hold writes until uncork(): what one origin read produces leaves in one
        write, and a reply head found faulty in that same read can still be taken back.
        Returns the cork's number, for take_back()."""
        self._corked = []
        self._cork_number += 1
        return self._cork_number

    def uncork(self) -> None:
        corked, self._corked = self._corked, None
        if corked:
            self.transport.write(b"".join(corked))

    def take_back(self, number: int) -> bool:
        """Drop what cork ``number`` holds; False when it was already sent."""
        if self._corked is None or number != self._cork_number:
            return False
        self._corked = []
        return True

    @property
    def cork_number(self) -> int | None:
        return self._cork_number if self._corked is not None else None

    def abort(self) -> None:
        """End a reply that cannot be completed: close without the rest of the body,
        so the client sees a short body or a missing last chunk, never a whole reply."""
        self.closing = True
        lose(self.transport)

    # ------------------------------------------------------------ flow control


    def pauseProducing(self):
        """Our write buffer to the client is full: stop reading the origin."""
        source = self._source()
        if source is not None:
            source.pause_reading("client")

    def resumeProducing(self):
        source = self._source()
        if source is not None:
            source.resume_reading("client")

    def stopProducing(self):
        pass

    def _source(self):
        if self.tunnel is not None:
            return self.tunnel.server
        if self.active is not None:
            return self.active.source
        return None

    def timed_out(self) -> None:
        if self._txn is not None and self._txn is self.active and not self._txn.body_done:
            if self._paused_by:
                # we stopped reading it ourselves (the origin is slow): not the client's fault
                self.deadline = self._body_deadline()
                return
            # the request body stopped coming for read_timeout
            self.deadline = None
            return self._refuse("ERR_LIFETIME_EXP", "the request body stopped arriving (read_timeout)", 408)
        if self.active is not None or self.queue or self.tunnel is not None:
            return
        if self._in_head and not self.closing:
            # a request started but did not arrive in time (slow or stalled client)
            self.deadline = None
            return self._refuse("ERR_LIFETIME_EXP", "the request did not arrive within request_timeout", 408)
        if self.closing:
            self.transport.abortConnection()
        else:
            lose(self.transport)


_REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [!-~]+ HTTP/1\.[01]\r?\n")


def _classify_parse_error(e: Exception, data: bytes) -> tuple[str, str, int]:
    """Squid's answer to a request httptools refused: 501 for a well-formed line
    with a method we do not know, 400 for anything malformed."""
    text = str(e) or e.__class__.__name__
    if isinstance(e, httptools.HttpParserInvalidMethodError) and _REQUEST_LINE.match(data):
        return "ERR_UNSUP_REQ", "the request method is not supported", 501
    if isinstance(e, httptools.HttpParserInvalidURLError):
        return "ERR_INVALID_URL", f"the request target is malformed ({text})", 400
    return "ERR_INVALID_REQ", f"the request is malformed: {text}", 400


class ClientFactory(Factory):
    """Builds a :class:`ClientConnection` for each browser connection on one http_port."""

    def __init__(self, service, listen):
        self.service = service
        self.listen = listen

    def buildProtocol(self, addr):
        conn = ClientConnection(self.service, self.listen.name)
        conn.factory = self
        return conn
