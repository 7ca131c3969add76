"""The client side: a browser's connection to squidpy (Squid's client_side).

:class:`ClientConnection` parses requests with httptools and feeds what it
reads to the connection's :class:`~squidpy.exchange.session.ClientSession`
(which request runs, where body bytes go, when to close) and to each
request's :class:`~squidpy.exchange.Exchange` through an
:class:`~squidpy.proxy.driver.ExchangeDriver`.  It enforces the client
timeouts and the request head size limit, and becomes one half of a tunnel
after CONNECT or a 101.  :class:`ClientFactory` is the Twisted factory behind
every ``http_port``.
"""

from __future__ import annotations

import logging
import re
import socket
import sys
import time

import httptools
from twisted.internet import interfaces
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from squidpy import intercept, proxyp
from squidpy.config.values import TPROXY
from squidpy.exchange import events as ev
from squidpy.exchange.exchange import ClientInfo, Exchange, State
from squidpy.exchange.session import Begin, ClientSession, Close, PauseReading, ResumeReading
from squidpy.http.message import CHUNKED, MAX_HEADER_FIELDS, ChunkMeter, RequestHead, body_prelude
from squidpy.http.url import hide_manager_scheme, restore_manager_scheme
from squidpy.ip import ip_text as plain_ip     # '::ffff:10.0.0.1' (IPv4 on a dual-stack socket) -> '10.0.0.1'
from squidpy.proxy.closing import lose
from squidpy.proxy.driver import ExchangeDriver
from squidpy.proxy import seam
from squidpy.proxy.flow import PausableReading
from squidpy.proxy.timeouts import idle_time

log = logging.getLogger("squidpy")

log = logging.getLogger("squidpy")

LINGER = 2.0               # seconds to drain a client we refused before closing
MAX_RAW_BUFFER = 256 * 1024
MAX_URL = 8192             # Squid's MAX_URL: a longer request target is answered 414


class _HeadTooBig(Exception):
    pass


class _UrlTooLong(Exception):
    pass


@implementer(interfaces.IPushProducer, interfaces.IHalfCloseableProtocol)
class ClientConnection(PausableReading, Protocol):
    # limits beside ``deadline`` (monotonic seconds): client_lifetime while a request is
    # under way, write_timeout while what we write waits; ``limit`` is the nearer one
    limit = None
    _busy_until = None
    _write_until = None
    _unsent = 0
    # State a new connection has not changed yet is a class default: thousands of idle
    # (preconnected) clients keep only what they set (and a small instance dict)
    metrics_port = False
    proxy_header: bytes | None = None   # read so far, on a port that requires the PROXY header
    active: ExchangeDriver | None = None
    tunnel = None
    parser = None
    deadline: float | None = None
    info: ClientInfo | None = None
    raw: list[bytes] | None = None      # bytes after CONNECT/Upgrade, before the tunnel
    nrequests = 0                       # requests read on this connection (the cache manager shows it)
    bytes_read = 0                      # ... and the bytes of its finished requests and replies
    bytes_written = 0
    write_limit = None                  # squidpy.proxy.throttle.ClientWriter: in a client delay pool
    _http_again = False                 # a CONNECT answered during this read: HTTP goes on
    tls = None                          # a ServerTlsSession once the connection speaks TLS (bumped, https_port)
    bumped_info = None                  # set by a CONNECT that bumped: its requests' BumpedInfo
    _hello_waiter = None                # SslBump reading the ClientHello
    _tls_waiter = None                  # SslBump waiting for the client's handshake
    # the request being read (_reset_request)
    _url = b""
    _head_size = 0
    _head_bytes = 0
    _in_head = False
    _started = 0.0
    _upgrade_pending: Exchange | None = None    # a CONNECT or Upgrade request
    _body_after_upgrade: Exchange | None = None     # an Upgrade request with a body
    _priming = False
    accepted = 0.0                      # time.monotonic() of the accept, when it waited for its first bytes
    _headers: list[tuple[bytes, bytes]]     # these two come with the parser, at the first bytes
    _chunk_meter: ChunkMeter

    def __init__(self, service, port_name: str, metrics_port: bool = False,
                 require_proxy_header: bool = False):
        self.service = service
        self.port_name = port_name
        if metrics_port:
            self.metrics_port = True
        if require_proxy_header:
            self.proxy_header = b""
        self.session = ClientSession()
        self.drivers: dict[Exchange, ExchangeDriver] = {}

    @property
    def closing(self) -> bool:
        return self.session.closing

    # ------------------------------------------------------------ connection
    def connectionMade(self):
        t = self.transport
        peer, host = t.getPeer(), t.getHost()
        self.client_ip, self.client_port = plain_ip(peer.host), peer.port
        self.local_ip, self.local_port = plain_ip(host.host), host.port
        listen = getattr(getattr(self, "factory", None), "listen", None)
        mode = listen.interception if listen is not None else None
        to_proxy = False
        if mode is not None:
            original = original_destination(t.getHandle(), mode, host.host)
            if original is None:
                # as Squid: no original destination, no request (the client sees the connection close)
                log.error("ERROR: NAT/TPROXY lookup failed to locate original IPs on local=%s remote=%s",
                          _where(self.local_ip, self.local_port), _where(self.client_ip, self.client_port))
                t.abortConnection()
                return
            to_proxy = intercept.addressed_to_proxy(mode, (self.local_ip, self.local_port), original,
                                                    self.factory.port_number())
            self.local_ip, self.local_port = original
        self.info = ClientInfo(self.client_ip, self.client_port, self.local_ip, self.local_port, self.port_name,
                               listen.tls if listen is not None else None, metrics_port=self.metrics_port,
                               interception=mode, to_proxy=to_proxy)
        t.setTcpNoDelay(True)
        t.registerProducer(self, True)
        self.opened = now = self.accepted or time.monotonic()
        self.deadline = now + self.service.config.request_start_timeout
        if self.proxy_header is None:       # else once the PROXY header says who the client is
            self.write_limit = self.service.throttles.limit_client(self, self.info)
        self.service.client_connected(self)
        if self.proxy_header is not None and self.transport.connected and not proxyp.sender_allowed(
                self.service.config.proxy_protocol_access, self.client_ip, self.client_port, self.local_ip,
                self.local_port, self.port_name):
            self._proxy_refused("PROXY client not permitted by ACLs")
        if listen is not None and listen.https and mode is not None:
            self._intercepted_tls()
        elif listen is not None and listen.https and listen.tls.server_context is not None:
            from squidpy.tls.session import ServerTlsSession
            self.tls = ServerTlsSession(listen.tls.server_context)
            self._tls_waiter = self._https_ready

    def _intercepted_tls(self) -> None:
        """An intercepting https_port: the connection enters SslBump as Squid's does, as a
        CONNECT to the original destination that nobody sent (Squid's fakeAConnectRequest);
        the bytes the client sends (its TLS hello) wait in ``raw`` for the steps."""
        info = self.info
        host = f"[{info.local_ip}]" if ":" in info.local_ip else info.local_ip
        head = RequestHead("CONNECT", f"{host}:{info.local_port}", "1.1", [], 0)
        exchange = Exchange(self.service, info, head, time.time())
        exchange.intercepted_tls = True
        self.drivers[exchange] = ExchangeDriver(exchange, self, self.service)
        self.raw = []
        self._session(self.session.received(exchange, False))

    # ------------------------------------------------------------ the PROXY protocol (require-proxy-header)
    def _proxy_refused(self, why: str) -> None:
        log.warning("%s from local=%s:%d remote=%s:%d", why, self.local_ip, self.local_port,
                    self.client_ip, self.client_port)
        self.proxy_header = None
        self.session.closing = True
        self.transport.abortConnection()

    def _read_proxy_header(self, data: bytes) -> bytes | None:
        """The PROXY header the connection must start with (squidpy.proxyp): None while
        it is incomplete or refused, else the bytes after it.  Its addresses replace the
        connection's for everything the requests do (ACLs, logs, limits), as in Squid."""
        buffered = self.proxy_header + data
        try:
            header = proxyp.parse(buffered)
        except proxyp.ProxyHeaderError as e:
            self._proxy_refused(str(e))
            return None
        if header is None:
            self.proxy_header = buffered
            return None
        self.proxy_header = None
        if header.forwarded:
            (client_ip, client_port), (local_ip, local_port) = header.source, header.destination
            self.info = ClientInfo(client_ip, client_port, local_ip, local_port, self.port_name, self.info.port_tls,
                                   metrics_port=self.metrics_port)
        self.write_limit = self.service.throttles.limit_client(self, self.info)
        return buffered[header.size:]

    def connectionLost(self, reason):
        if self.info is None:
            return      # refused before it began (no original destination)
        self.service.client_disconnected(self)
        self._hello_waiter = self._tls_waiter = None
        if self.write_limit is not None:
            self.write_limit.drop()
        if self.info is not None and self.info.auth is not None:
            self.service.release_connection_auth(self.info.auth)
        # the parser holds our bound methods: drop it so the connection is freed
        # by reference counting, not left for the garbage collector
        self.parser = None
        self._upgrade_pending = None
        tunnel, self.tunnel = self.tunnel, None
        active = self.session.gone()
        if tunnel is not None:
            tunnel.client_closed()
        elif active is not None:
            driver = self.drivers.get(active)
            if driver is not None and not driver.finished:
                driver.feed(ev.ClientGone)
        self.drivers.clear()
        self.active = None

    def readConnectionLost(self):
        """The client sent EOF: finish what was asked, then close (at once when a
        request body is still being read, unless half_closed_clients)."""
        waiter, self._hello_waiter = self._hello_waiter, None
        if waiter is not None:
            return waiter(None, "the client closed the connection before its TLS hello", False)
        if self.tls is not None and not self.tls.established:
            return self._tls_received(b"")
        if self.tunnel is not None:
            self.tunnel.client_eof()
            return
        self._session(self.session.half_closed(self.service.config.half_closed_clients))

    def writeConnectionLost(self):
        """Our own half-close completed (loseWriteConnection); reading goes on."""

    # ------------------------------------------------------------ reading
    def dataReceived(self, data: bytes) -> None:
        if self.proxy_header is not None:
            data = self._read_proxy_header(data)
            if not data:
                return
        if self.tls is not None:
            self._tls_received(data)
            return
        self._plain_received(data)

    def _plain_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.from_client(data)
            return
        if self.raw is not None:
            self.raw.append(data)
            if self._hello_waiter is not None:
                self._try_hello()
            elif sum(map(len, self.raw)) > MAX_RAW_BUFFER:
                self.pause_reading("raw")
            return
        if self.session.closing and self._body_target() is None:
            return      # lingering after a refusal or the last request: drain and drop
        if self._in_head:
            self._head_bytes += len(data)
        elif b" cache_object://" in data and self.session.receiving is None:
            data = hide_manager_scheme(data)        # squidclient's URLs, which httptools refuses
        if self.parser is None:         # made at the first bytes: idle (preconnected) clients cost less
            self.parser = httptools.HttpRequestParser(self)
            self._headers = []
            self._chunk_meter = ChunkMeter()
        self._chunk_meter.before_read(len(data))
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            rest = data[e.args[0]:]
            body_of, self._body_after_upgrade = self._body_after_upgrade, None
            if body_of is not None:
                return self._read_upgrade_body(body_of, rest)
            self._upgrade_pending = None
            if self._http_again:
                # the CONNECT was answered (407) before this read was over and the
                # connection goes on as HTTP, unless bytes followed it: those were
                # meant for a tunnel, never a request
                self._http_again = False
                if rest:
                    self.session.closing = self.session.closed = True
                    lose(self.transport)
                return
            self.raw = [rest] if rest else []
            return
        except httptools.HttpParserError as e:
            if isinstance(e.__context__, _StopReading) or (
                    self.session.closing and self._body_target() is None and not self._in_head):
                return      # bytes after the request that closes the connection: not read
            if isinstance(e.__context__, _HeadTooBig):
                return self._refuse("ERR_TOO_BIG", "the request headers are larger than request_header_max_size"
                                    f" or more than {MAX_HEADER_FIELDS} fields", 431)
            if isinstance(e.__context__, _UrlTooLong):
                return self._refuse("ERR_TOO_BIG", f"the URL is longer than {MAX_URL} bytes", 414)
            return self._refuse(*_classify_parse_error(e, data))
        self._http_again = False
        pending, self._upgrade_pending = self._upgrade_pending, None
        if pending is not None and pending.state is not State.DONE and self.raw is None and self.tunnel is None:
            # httptools raises only when bytes follow the request; either way
            # what comes next belongs to the tunnel (or, if declined, to HTTP)
            self.raw = []
        if self._in_head and self._head_bytes > self.service.config.request_header_max_size:
            self._refuse("ERR_TOO_BIG", "the request headers are larger than request_header_max_size", 431)
        elif self._chunk_meter.exceeded_after_read(len(data)):
            self._refuse("ERR_INVALID_REQ", "the chunked request body carries too much besides its data", 400)

    def _reset_request(self) -> None:
        """Forget the request being read (a connection bumped: HTTP starts again inside TLS)."""
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._head_bytes = 0
        self._in_head = False
        self._started = 0.0
        self._chunk_meter = ChunkMeter()
        self._upgrade_pending = None
        self._body_after_upgrade = None
        self._priming = False

    def _read_upgrade_body(self, exchange: Exchange, rest: bytes) -> None:
        """httptools leaves the body of an Upgrade request unread and hands over all
        that follows its head.  That body is still HTTP: a parser primed with a head
        framed as the request's reads it, and what follows is HTTP again, since such a
        request never upgrades (its offer is not forwarded)."""
        self.parser = httptools.HttpRequestParser(self)
        self._priming = True
        try:
            self.parser.feed_data(body_prelude(exchange.head.framing))
        finally:
            self._priming = False
        if rest:
            self.dataReceived(rest)

    def _body_target(self) -> ExchangeDriver | None:
        target = self.session.body_target()
        return self.drivers.get(target) if target is not None else None

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self._priming:
            return
        if self.session.closing:
            raise _StopReading()        # a request after one that said Connection: close
        self._in_head = True
        self._started = time.time()
        config = self.service.config
        now = time.monotonic()
        self.deadline = now + config.request_timeout
        self._busy_until = busy = now + config.client_lifetime      # from its first byte
        self.limit = busy if self._write_until is None else min(busy, self._write_until)

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
        if url[:1] == "s":                      # only a cache_object:// URL read under its stand-in
            url = restore_manager_scheme(url)
        size = len(method) + len(url) + 12 + self._head_size + 2
        head = RequestHead(method, url, parser.get_http_version(), self._headers, size)
        exchange = Exchange(self.service, self.info, head, self._started)
        self.drivers[exchange] = ExchangeDriver(exchange, self, self.service)
        self.nrequests += 1
        self._in_head = False
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._head_bytes = 0
        self.deadline = None
        framing = head.framing
        has_body = framing.has_body
        if head.method == "CONNECT":
            self._upgrade_pending = exchange
        elif parser.should_upgrade():
            # what follows is the new protocol's, unless the origin declines; but
            # httptools leaves a body unread: see _read_upgrade_body
            if has_body:
                self._body_after_upgrade = exchange
            else:
                self._upgrade_pending = exchange
        if framing.kind == CHUNKED:
            self._chunk_meter.start(size)
        if has_body:
            self.deadline = self._body_deadline()
        self._session(self.session.received(exchange, has_body))

    def on_body(self, data: bytes) -> None:
        self._chunk_meter.body += len(data)
        self.deadline = self._body_deadline()
        target = self._body_target()
        if target is not None and not target.finished:
            target.feed(ev.RequestBody(data))

    def _body_deadline(self) -> float:
        return time.monotonic() + self.service.config.read_timeout

    def on_chunk_header(self) -> None:
        self._chunk_meter.chunks += 1

    def on_message_complete(self) -> None:
        if self._priming or (self._body_after_upgrade is not None
                             and self.session.body_target() is self._body_after_upgrade):
            return      # httptools skipped the body: it is read after the head (_read_upgrade_body)
        self._chunk_meter.stop()
        if self.active is not None and self._hello_waiter is None and self._tls_waiter is None:
            self.deadline = None
        target = self._body_target()
        self.session.body_ended()
        if target is not None and not target.finished:
            target.feed(ev.RequestEnd)

    def refuse_now(self, error: str, detail: str, status: int) -> None:
        """Answer a connection we will not serve, before it sends anything."""
        self._refuse(error, detail, status)

    def _refuse(self, error: str, detail: str, status: int) -> None:
        """Input that cannot be parsed: answer it, then stop reading this client.

        When it is the body of a request already read, that request gets the error
        (nothing more of it goes upstream); otherwise the broken input gets an
        exchange of its own."""
        if self.parser is not None:
            self._chunk_meter.active = False
        self._in_head = False       # the parser is spent: nothing more is read
        target = self._body_target()
        if target is not None and not target.finished:
            self.session.stop_reading(target.exchange)
            target.feed(ev.RequestInvalid(error, detail, status))
            return
        head = RequestHead("NONE", "error:invalid-request", "1.1", [], self._head_bytes)
        exchange = Exchange(self.service, self.info, head, time.time())
        exchange.refusal = (error, detail, status)
        exchange.keep_alive = False
        self.drivers[exchange] = ExchangeDriver(exchange, self, self.service)
        self._session(self.session.refused(exchange))

    # ------------------------------------------------------------ the session's decisions
    def _session(self, commands) -> None:
        for cmd in commands:
            kind = type(cmd)
            if kind is Begin:
                self.active = driver = self.drivers[cmd.exchange]
                driver.feed(ev.RequestStarted)
            elif kind is PauseReading:
                self.pause_reading(cmd.reason)
            elif kind is ResumeReading:
                self.resume_reading(cmd.reason)
            elif kind is Close:
                self._close(cmd.linger)
            else:       # Idle
                config = self.service.config
                now = time.monotonic()
                idle = config.client_idle_pconn_timeout
                self.deadline = now + (idle_time(idle, config.pconn_lifetime, self, now) if config.pconn_lifetime
                                       else idle)
                self._busy_until = None
                self.limit = self._write_until

    def exchange_finished(self, driver: ExchangeDriver, keep_alive: bool) -> None:
        exchange = driver.exchange
        self.drivers.pop(exchange, None)
        e = exchange.entry
        self.bytes_read += e.request_header_size + e.request_body_size
        self.bytes_written += e.reply_header_size + e.reply_body_size
        if driver is not self.active:
            return
        self.active = None
        self.resume_reading("server")
        if self.bumped_info is not None and keep_alive:
            return self.become_bumped(self.bumped_info)
        connect = exchange.head.method == "CONNECT"
        if self.raw is None and connect and self.tunnel is None and keep_alive and self._upgrade_pending is exchange:
            # a CONNECT answered 407 while its head is being read: HTTP goes on with a new parser
            self.parser = httptools.HttpRequestParser(self)
            self._http_again = True
        if self.raw is not None and self.tunnel is None:
            # an Upgrade the origin declined (or a refused CONNECT): what followed the
            # request is HTTP again, or nobody's (bytes after a CONNECT were meant for a tunnel)
            raw, self.raw = self.raw, None
            self.resume_reading("raw")
            if keep_alive and (not connect or not any(raw)):
                self.parser = httptools.HttpRequestParser(self)
                self._session(self.session.finished(exchange, keep_alive, exchange.body_done))
                for data in raw:
                    self._plain_received(data)
                return
            keep_alive = False
        self._session(self.session.finished(exchange, keep_alive, exchange.body_done,
                                            tunnel=self.tunnel is not None))

    def _close(self, linger: bool) -> None:
        if self.tunnel is not None:
            return
        limit = self.write_limit
        if limit is not None and limit.queued:
            limit.close_when_drained = True         # a client delay pool still holds part of the reply
            return
        if not linger:
            lose(self.transport)
        else:
            # the client may still be sending a body we refused: let it drain,
            # so the reply is not lost to a reset (a lingering close)
            self.transport.loseWriteConnection()
            self.deadline = time.monotonic() + LINGER

    def shut_down(self) -> bool:
        """The proxy is stopping: read no more requests.  True when nothing is under way."""
        self.session.closing = True
        return self.active is None and not self.session.queue and self.tunnel is None

    # ------------------------------------------------------------ TLS (SslBump, https_port)
    def read_client_hello(self, callback) -> None:
        """SslBump: call ``callback(hello, problem, not_tls)`` once the ClientHello is in
        (its bytes stay in ``raw`` for the handshake, the tunnel or the peek)."""
        if self.raw is None:
            self.raw = []
        self._hello_waiter = callback
        self.deadline = time.monotonic() + self.service.config.request_timeout
        self._try_hello()

    def _try_hello(self) -> None:
        from squidpy.tls.hello import MAX_HANDSHAKE, HelloError, NotTls, parse_client_hello
        data = b"".join(self.raw)
        try:
            hello = parse_client_hello(data)
        except HelloError as e:
            return self._hello_answer(None, str(e), isinstance(e, NotTls))
        if hello is not None:
            return self._hello_answer(hello, None, False)
        if len(data) > MAX_HANDSHAKE + 4096:
            self._hello_answer(None, "the client's TLS hello is too large", False)

    def _hello_answer(self, hello, problem, not_tls) -> None:
        waiter, self._hello_waiter = self._hello_waiter, None
        self.deadline = None
        if waiter is not None:
            waiter(hello, problem, not_tls)

    def take_raw(self) -> bytes:
        """The bytes read since CONNECT (the ClientHello a peek sends on), handed over once."""
        raw, self.raw = self.raw, []
        return b"".join(raw or ())

    def start_tls(self, context, callback) -> None:
        """Answer the client's hello (already in ``raw``) with TLS; ``callback(failure)``
        once the handshake is done (failure None) or failed."""
        from squidpy.tls.session import ServerTlsSession
        initial = self.take_raw()
        self.raw = None
        self.resume_reading("raw")
        self.tls = ServerTlsSession(context)
        self._tls_waiter = callback
        self.deadline = time.monotonic() + self.service.config.request_timeout
        if initial:
            self._tls_received(initial)

    def _tls_received(self, data: bytes) -> None:
        tls = self.tls
        out = tls.receive(data)
        if out.network:
            self.transport.write(out.network)
        if out.handshake_done or out.failure is not None:
            waiter, self._tls_waiter = self._tls_waiter, None
            if out.handshake_done:
                self.deadline = None
            if waiter is not None:
                waiter(out.failure)
        if out.failure is not None:
            lose(self.transport)
            return
        if out.plaintext:
            self._plain_received(out.plaintext)
        if out.closed:
            self.tls_closed()

    def _https_ready(self, failure) -> None:
        """An https_port client finished (or failed) its handshake: its certificate, if it
        gave one, is a fact of its requests (user_cert, ca_cert, %us)."""
        if failure is None:
            self.info.client_cert = self.tls.peer_certificate()
            self.info.tls = self.tls.facts()
            self.deadline = time.monotonic() + self.service.config.request_timeout

    def tls_closed(self) -> None:
        """close_notify (or EOF) from a TLS client: as a plain EOF."""
        if self.tunnel is not None:
            self.tunnel.client_eof()
            return
        self._session(self.session.half_closed())

    def become_bumped(self, info) -> None:
        """The CONNECT bumped: the connection goes on as HTTP inside TLS, a new session."""
        self.bumped_info = None
        before = self.info
        self.info = ClientInfo(self.client_ip, self.client_port, self.local_ip, self.local_port, self.port_name,
                               before.port_tls, info, interception=before.interception)
        self.info.notes = before.notes      # the connection's annotations (annotate_client), as in Squid
        if self.tls is not None:
            self.info.tls = self.tls.facts()
        self.session = ClientSession()
        self.parser = None
        self.raw = None
        self._reset_request()
        self.deadline = time.monotonic() + self.service.config.request_timeout

    def become_tunnel(self, tunnel) -> None:
        self.tunnel = tunnel
        self.deadline = None
        raw, self.raw = self.raw, None
        self.resume_reading("raw")
        for data in raw or ():
            if data:
                tunnel.from_client(data)

    # ------------------------------------------------------------ writing
    def write(self, data: bytes) -> None:
        if self.tls is not None:
            data = self.tls.send(data)
        if self.write_limit is not None:
            return self.write_limit.write(data)
        seam.write(self.transport, data)

    def write_sequence(self, parts) -> None:
        if self.tls is not None or self.write_limit is not None:
            return self.write(b"".join(parts))
        seam.write_sequence(self.transport, parts)

    def abort(self) -> None:
        """End a reply that cannot be completed: close without the rest of the body,
        so the client sees a short body or a missing last chunk, never a whole reply."""
        self.session.closing = True
        if self.write_limit is not None:
            self.write_limit.drop()
        lose(self.transport)

    # ------------------------------------------------------------ flow control
    def pauseProducing(self):
        """Our write buffer to the client is full: stop reading the origin (for at
        most write_timeout without progress)."""
        self._write_until = time.monotonic() + self.service.config.write_timeout
        self._unsent = seam.unsent_bytes(self.transport)
        self._set_limit()
        source = self._source()
        if source is not None:
            source.pause_reading("client")

    def resumeProducing(self):
        if self._write_until is not None:
            self._write_until = None
            self._set_limit()
        source = self._source()
        if source is not None:
            source.resume_reading("client")

    def _set_limit(self) -> None:
        busy, write = self._busy_until, self._write_until
        self.limit = busy if write is None else write if busy is None else min(busy, write)

    def _limit_passed(self, now: float) -> None:
        """client_lifetime or write_timeout passed: the transaction is given up and
        the connection closed (a write that progressed meanwhile gets more time)."""
        if self._write_until is not None and self._write_until <= now:
            unsent = seam.unsent_bytes(self.transport)
            if unsent < self._unsent:
                self._unsent = unsent
                self._write_until = now + self.service.config.write_timeout
                return self._set_limit()
            why = "write_timeout: the client took nothing of what squidpy had for it"
        else:
            why = "client_lifetime: the connection was busy with one request too long"
        self.limit = self._busy_until = self._write_until = None
        self.service.log_error("closing the connection from %s:%d (%s)", self.client_ip, self.client_port, why)
        self.session.closing = True
        self.transport.abortConnection()

    def stopProducing(self):
        pass

    def _source(self):
        if self.tunnel is not None:
            return self.tunnel.server
        if self.active is not None:
            return self.active.source()
        return None

    def timed_out(self) -> None:
        now = time.monotonic()
        if self.limit is not None and self.limit <= now:
            return self._limit_passed(now)
        if self._hello_waiter is not None:
            return self._hello_answer(None, "no TLS hello within request_timeout", False)
        if self._tls_waiter is not None:
            from squidpy.tls.errors import SQUID_TLS_ERR_ACCEPT, TlsFailure
            waiter, self._tls_waiter = self._tls_waiter, None
            waiter(TlsFailure(SQUID_TLS_ERR_ACCEPT, lib_error="no TLS handshake within request_timeout"))
            self.transport.abortConnection()
            return
        session = self.session
        target = self._body_target()
        if target is not None and target is self.active and not target.exchange.body_done:
            if self._paused_by:
                # we stopped reading it ourselves (the origin is slow): not the client's fault
                self.deadline = self._body_deadline()
                return
            # the request body stopped coming for read_timeout
            self.deadline = None
            return self._refuse("ERR_LIFETIME_EXP", "the request body stopped arriving (read_timeout)", 408)
        if self.active is not None or session.queue or self.tunnel is not None:
            return
        if self._in_head and not session.closing:
            # a request started but did not arrive in time (slow or stalled client)
            self.deadline = None
            return self._refuse("ERR_LIFETIME_EXP", "the request did not arrive within request_timeout", 408)
        if session.closed or session.closing:
            self.transport.abortConnection()
        else:
            lose(self.transport)


class _StopReading(Exception):
    pass


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


def original_destination(sock, mode: str, local_host: str) -> tuple[str, int] | None:
    """Where the client meant to connect: NAT (``intercept``) keeps it in the
    connection tracking entry (SO_ORIGINAL_DST, IP6T_SO_ORIGINAL_DST); TPROXY
    (``tproxy``) leaves it as the socket's own address.  None when the kernel has
    no entry (nothing was translated and connection tracking is off)."""
    if mode == TPROXY:
        name = sock.getsockname()
        return plain_ip(name[0]), name[1]
    try:
        if ":" not in plain_ip(local_host):       # IPv4, even on an IPv6 socket (::ffff:a.b.c.d)
            raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        else:
            raw = sock.getsockopt(socket.IPPROTO_IPV6, IP6T_SO_ORIGINAL_DST, 28)
    except OSError:
        return None
    return sockaddr(raw)


SO_ORIGINAL_DST = 80           # linux/netfilter_ipv4.h
IP6T_SO_ORIGINAL_DST = 80      # linux/netfilter_ipv6/ip6_tables.h


def sockaddr(raw: bytes) -> tuple[str, int] | None:
    """A struct sockaddr_in or sockaddr_in6 as (address, port)."""
    if len(raw) < 8:
        return None
    family = int.from_bytes(raw[:2], sys.byteorder)
    port = int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    if family == socket.AF_INET6 and len(raw) >= 24:
        return plain_ip(socket.inet_ntop(socket.AF_INET6, raw[8:24])), port
    return None


def _where(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class ClientFactory(Factory):
    """Builds a :class:`ClientConnection` for each browser connection on one http_port."""

    def __init__(self, service, listen):
        self.service = service
        self.listen = listen
        self.bound_port = listen.port       # the port as bound (port 0 picks one)

    def port_number(self) -> int:
        return self.bound_port

    def buildProtocol(self, addr):
        conn = ClientConnection(self.service, self.listen.name, self.listen.kind == "metrics",
                                self.listen.require_proxy_header)
        conn.factory = self
        return conn
