"""One client request from start to log line (Squid's ClientHttpRequest + FwdState).

The transaction validates the request, asks ``http_access``, then either
answers itself (error page, internal page), opens a tunnel (CONNECT), or
forwards the request to the origin and streams the reply back.  Every
decision is delegated to the pure modules (url, message, acl, errors); this
class only sequences them and moves bytes between the two connections.
"""

from __future__ import annotations

import html
import time

from twisted.internet import defer

from squidpy.acl.access import matches
from squidpy.acl.checklist import Checklist, Pending
from squidpy.cache.policy import SAFE_METHODS
from squidpy.errors import REASONS, STATUS, ErrorContext
from squidpy.http import message
from squidpy.http.message import CHUNKED, CLOSE, INVALID, LENGTH, NO_BODY, RequestHead, ResponseHead
from squidpy.http.upgrade import switch_refusal
from squidpy.http.url import BadTarget, Target, internal_target, parse_target
from squidpy.log.entry import LogEntry
from squidpy.proxy import internal
from squidpy.proxy.closing import lose
from squidpy.proxy.dns import DnsError
from squidpy.proxy.server_side import UpstreamError
from squidpy.proxy.tunnel import Tunnel

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
CONNECTION_ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
MAX_BUFFERED_BODY = 256 * 1024
CLOSE_AFTER = frozenset({
    "ERR_INVALID_REQ", "ERR_INVALID_URL", "ERR_UNSUP_REQ", "ERR_UNSUP_HTTPVERSION", "ERR_TOO_BIG",
    "ERR_LIFETIME_EXP",
})


class Transaction:
    def __init__(self, client, head: RequestHead, started: float):
        self.client = client
        self.service = client.service
        self.config = self.service.config
        self.head = head
        self.target: Target | None = None
        self.checklist: Checklist | None = None
        self.entry = e = LogEntry(started)
        e.client_ip = client.client_ip
        e.client_port = client.client_port
        e.local_ip = client.local_ip
        e.local_port = client.local_port
        e.port_name = client.port_name
        e.method = head.method
        e.url = head.target
        e.version = head.version
        e.request_headers = head.headers
        e.request_header_size = head.size
        self.body_expected = head.framing.has_body
        self.body_done = not self.body_expected
        self.chunked_body = head.framing.kind == CHUNKED
        self.body_buffer: list[bytes] | None = []
        self.buffered = 0
        self.server = None
        self.reused_server = False
        self.response: ResponseHead | None = None
        self.framing = NO_BODY
        self.keep_alive = head.keep_alive
        self.reply_started = False
        self.finished = False
        self.upgrading = False
        self.upgrade_offer: bytes | None = None     # what http_upgrade_request_protocols let through
        self.tunnel = None
        self.upstream_started = None
        self.refusal: tuple[str, str, int] | None = None   # set for unparsable requests
        self.head_cork: int | None = None     # the client cork holding our reply head, if any
        self.reply_limit = 0
        self.cache_flow = None          # the cache's part, for GET/HEAD when caching is on
        self.background = False         # a stale-while-revalidate refresh (no client, not logged)
        self.diverted = False           # the cache answered instead of the origin's reply
        self.upstream_started_wall: float | None = None

    # ------------------------------------------------------------ start
    def start(self) -> None:
        if self.refusal is not None:
            return self.fail(*self.refusal)
        head, e = self.head, self.entry
        if head.version == "0.9" or not head.version.startswith("1."):
            if head.version.startswith(("2.", "3.")):
                return self.fail("ERR_UNSUP_HTTPVERSION", f"HTTP/{head.version} is not spoken here", 505)
            return self.fail("ERR_INVALID_REQ", f"HTTP/{head.version} requests are not accepted")
        try:
            self.target = target = parse_target(head.method, head.target)
        except BadTarget as bad:
            e.url = head.target[:2048]
            return self.fail(bad.error, bad.detail, bad.status)
        svc = self.service
        if target.kind == "origin":     # addressed to the proxy itself: checked like any request
            self.target = target = internal_target(target.path, svc.visible_hostname, svc.my_port)
        e.url = target.url
        e.path = target.path
        if (target.kind != "internal" and svc.via_name is not None and head.via
                and message.is_forwarding_loop(head.via, svc.via_name)):
            return self.fail("ERR_ACCESS_DENIED", "forwarding loop detected: this request already passed through this proxy", 403,
                             result="TCP_DENIED")
        framing = head.framing
        if framing.kind == INVALID:
            return self.fail("ERR_INVALID_REQ", framing.problem)
        limit = self.config.request_body_max_size
        if limit and framing.kind == LENGTH and framing.length > limit:
            return self.fail("ERR_TOO_BIG", "the request body is larger than request_body_max_size", 413)
        if head.method == "CONNECT" and framing.has_body:
            return self.fail("ERR_INVALID_REQ", "a CONNECT request cannot have a body")
        self.checklist = ch = self.client.checklist(head, target)
        if target.ip_literal:           # a known name spares dstdomain ACLs a lookup round
            ch.dst_name = svc.dns.cached_name(target.host)
        self.check_access()

    def check_access(self) -> None:
        try:
            verdict = self.config.http_access.check(self.checklist)
        except Pending as p:
            return self.lookup(p.fact, self.check_access)
        if not verdict.allowed:
            return self.deny(verdict, self.config.http_access)
        if self.target.kind == "internal":
            return self.serve_internal()
        if self.head.method == "CONNECT":
            return self.open_tunnel()
        if self.head.method in ("OPTIONS", "TRACE") and self.head.max_forwards is not None:
            try:
                hops = int(self.head.max_forwards)
            except ValueError:
                return self.fail("ERR_INVALID_REQ", "Max-Forwards is not a number")
            if hops <= 0:
                return self.answer_max_forwards()
        if self.head.method == "PURGE":
            return self.purge()
        head = self.head
        if head.upgrade is not None and head.version == "1.1" and not head.framing.has_body:
            # only what http_upgrade_request_protocols allows (by default nothing). RFC 9110
            # 7.8: an Upgrade in an HTTP/1.0 request is ignored; squidpy ignores one on a
            # request with a body too (that body is read as HTTP: client_side)
            self.upgrade_offer = self.config.http_upgrade_request_protocols.allowed_offers(
                head.upgrade, self.checklist)
        cache = self.service.cache
        if cache is not None:
            self.cache_flow = flow = cache.flow_for(self)
            if flow is not None and flow.start():
                return
        self.forward()

    def purge(self) -> None:
        """Squid's PURGE: refused (403) unless the configuration names the method in
        an ACL; then every stored variant of the URL is removed: 200, or 404 when
        there was none, with an empty body (TCP_MISS in the log), as Squid answers."""
        if not self.config.acls.names_method("PURGE"):
            return self.fail("ERR_ACCESS_DENIED", "PURGE is not enabled: no ACL names the PURGE method", 403,
                             result="TCP_DENIED")
        cache = self.service.cache
        removed = cache.store.remove_url(self.target.url) if cache is not None else 0
        self.entry.result = "TCP_MISS"
        self.send_local(200 if removed else 404, None, b"", [])

    def lookup(self, fact: str, then) -> None:
        """Fetch a fact an ACL needs (``dst``, ``dst_name``, ``src_name``), then re-run ``then``.

        A failed lookup leaves an empty fact, which matches nothing (as in Squid)."""
        ch = self.checklist
        if fact == "dst":
            d = self.resolve()
            empty = []
        elif fact == "dst_name":
            d = self.service.dns.reverse(self.target.host)
            empty = ""
        elif fact == "src_name":
            d = self.service.dns.reverse(self.client.client_ip)
            empty = ""
        else:
            raise RuntimeError(f"no lookup for ACL fact {fact!r}")

        def got(value):
            setattr(ch, fact, value)
            if not self.finished:
                then()

        d.addCallbacks(got, lambda f: got(empty))

    def resolve(self) -> defer.Deferred:
        target = self.target
        if target.ip_literal:
            return defer.succeed([target.host])
        if self.checklist is not None and self.checklist.dst:
            return defer.succeed(self.checklist.dst)
        cached = self.service.dns.cached(target.host)
        if cached is not None:
            return defer.succeed(cached)
        started = time.monotonic()
        d = self.service.dns.resolve(target.host)

        def timed(result):
            self.entry.dns_time = (self.entry.dns_time or 0) + time.monotonic() - started
            return result

        return d.addBoth(timed)

    def deny(self, verdict, access_list, result: str = "TCP_DENIED") -> None:
        """A denial, answered as deny_info says for the ACL that decided it:
        the last ACL of the denying line, or after an implicit deny the last
        ACL evaluated (as in Squid).  By default ERR_ACCESS_DENIED."""
        name = verdict.last_acl
        if verdict.implicit:
            steps = access_list.explain(self.checklist)[1]
            name = steps[-1].last_acl if steps else None
        info = self.config.deny_info.get(name) if name else None
        if info is None:
            return self.fail("ERR_ACCESS_DENIED", None, 403, result=result)
        if info.kind == "page":
            return self.fail(info.value, None, info.status or 403, result=result)
        self.entry.result = result
        if info.kind == "reset":
            self.entry.status = 0
            self.keep_alive = False
            self.client.transport.abortConnection()
            return self.finish()
        location = self.service.error_pages.render_url(info.value, self._error_context("ERR_ACCESS_DENIED", None))
        body = b'<html><body>See <a href="%s">here</a>.</body></html>\n' % html.escape(location).encode("latin-1", "replace")
        self.send_local(info.status or 302, b"text/html;charset=utf-8", body,
                        [(b"Location", location.encode("latin-1", "replace"))])

    # ------------------------------------------------------------ local answers
    def serve_internal(self) -> None:
        """A request to the proxy itself, once http_access allowed it: its own pages,
        and the cache manager (``/squid-internal-mgr/...``), which the ``manager``
        ACL lets a configuration guard, as in Squid."""
        self.entry.result = "TCP_MISS"
        if self.head.target.startswith(internal.MANAGER_PREFIX):
            page = internal.manager_page(self.head.target, self.service.manager_report())
        else:
            page = internal.page(self.head, self.client.local_ip, self.client.local_port,
                                 self.service.visible_hostname, self.service.pac)
        self.send_local(page.status, page.content_type, page.body, [])

    def answer_max_forwards(self) -> None:
        """RFC 9110 7.6.2: Max-Forwards 0 means this proxy answers OPTIONS/TRACE itself."""
        if self.head.method == "TRACE":
            body = self.client.raw_head(self.head)
            self.send_local(200, b"message/http", body, [])
        else:
            self.send_local(200, b"text/plain", b"", [(b"Allow", b"GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, CONNECT")])

    def fail(self, error: str, detail: str | None, status: int | None = None, result: str = "NONE_NONE",
             server_ip: str | None = None) -> None:
        """Answer with the error page ``error`` (if nothing was sent yet) and finish."""
        if self.finished:
            return
        e = self.entry
        e.error = error
        e.error_detail = detail
        if error in CLOSE_AFTER:
            self.keep_alive = False     # Squid closes after a request it could not make sense of
        if self.reply_started and self.head_cork is not None and self.client.take_back(self.head_cork):
            # the faulty reply's head is still held back: answer with the error page instead
            self.reply_started = False
            e.reply_header_size = e.reply_body_size = 0
        if self.reply_started:
            # the reply is under way: cut it short so the client cannot take it as complete
            if not e.result.endswith("_ABORTED"):
                e.result += "_ABORTED"
            self.keep_alive = False
            self.client.abort()
            return self.finish()
        status = status or STATUS.get(error, 500)
        e.result = result
        body = self.service.error_pages.render(self._error_context(error, detail, server_ip))
        self.send_local(status, b"text/html;charset=utf-8", body,
                        [(b"X-Squid-Error", f"{error} 0".encode())])

    def _error_context(self, error: str, detail: str | None, server_ip: str | None = None) -> ErrorContext:
        e, target = self.entry, self.target
        return ErrorContext(
            name=error, url=e.url, method=self.head.method, client_ip=self.client.client_ip,
            server_ip=server_ip or e.server_ip, host=target.host if target else None,
            port=target.port if target else None,
            protocol=(target.scheme.upper() if target else None), detail=detail,
            errno_text=detail if error == "ERR_CONNECT_FAIL" else None,
            dns_error=detail if error == "ERR_DNS_FAIL" else None,
        )

    def send_local(self, status: int, content_type: bytes | None, body: bytes, extra: list) -> None:
        """A complete reply made by squidpy itself (no Content-Type when ``content_type`` is None)."""
        if not self.body_done:
            self.keep_alive = False     # the rest of the request body will not be read
        svc = self.service
        lines = [
            b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, "Unknown").encode()),
            b"Server: %s\r\n" % message.SERVER_NAME.encode(),
            b"Mime-Version: 1.0\r\n",
            b"Date: %s\r\n" % message.http_date(),
        ]
        if content_type is not None:
            lines.append(b"Content-Type: %s\r\n" % content_type)
        lines.append(b"Content-Length: %d\r\n" % len(body))
        lines.extend(b"%s: %s\r\n" % kv for kv in extra)
        lines.append(b"X-Cache: MISS from %s\r\n" % svc.visible_hostname.encode("latin-1"))
        if svc.via_header is not None:
            lines.append(b"Via: %s\r\n" % svc.via_header)
        if not self.keep_alive:
            lines.append(b"Connection: close\r\n")
        elif self.head.version == "1.0":
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        head = b"".join(lines)
        e = self.entry
        e.status = status
        e.mime_type = content_type.split(b";")[0].decode() if content_type is not None else None
        e.reply_header_size = len(head)
        e.reply_body_size = 0 if self.head.method == "HEAD" else len(body)
        self.reply_started = True
        self.client.write(head if self.head.method == "HEAD" else head + body)
        self.finish()

    # ------------------------------------------------------------ forwarding
    def forward(self) -> None:
        target = self.target
        key = (target.scheme, target.host, target.port)
        server = self.service.pool.get_idle(key)
        if server is not None:
            self.reused_server = True
            self.use_server(server)
            return
        self.connect(key)

    def connect(self, key: tuple) -> None:
        d = self.resolve()
        d.addCallback(lambda addresses: self.service.pool.connect(key, addresses))
        d.addCallbacks(self.use_server, self.connect_failed)

    def connect_failed(self, failure) -> None:
        if self.finished:
            return
        err = failure.value
        if self.cache_flow is not None and isinstance(err, (DnsError, UpstreamError)) and self.cache_flow.on_error(err):
            return
        if isinstance(err, DnsError):
            self.entry.hierarchy = "HIER_NONE"
            return self.fail("ERR_DNS_FAIL", str(err), 503, result="TCP_MISS")
        if isinstance(err, UpstreamError):
            self.entry.hierarchy = "HIER_DIRECT"
            self.entry.server_ip = err.server_ip
            return self.fail(err.error, err.detail, err.status, result="TCP_MISS", server_ip=err.server_ip)
        self.service.log_error("unexpected failure connecting to %s: %s", self.entry.url, failure.getErrorMessage())
        return self.fail("ERR_CANNOT_FORWARD", failure.getErrorMessage(), 503, result="TCP_MISS")

    def use_server(self, server) -> None:
        if self.finished:
            # the client went away while we connected: keep the connection for later
            self.service.pool.release(server)
            return
        self.server = server
        e = self.entry
        e.hierarchy = "HIER_DIRECT"
        e.server_ip = server.peer_ip
        e.server_port = server.peer_port
        e.server_local_ip = server.local_ip
        e.server_local_port = server.local_port
        self.upstream_started = time.monotonic()
        self.upstream_started_wall = time.time()
        head, target, svc = self.head, self.target, self.service
        max_forwards = None
        if head.max_forwards is not None and head.method in ("OPTIONS", "TRACE"):
            max_forwards = int(head.max_forwards) - 1
        extra, drop = None, None
        flow = self.cache_flow
        if flow is not None and flow.revalidating:
            extra = flow.request_headers()
            if flow.drops_client_validators():
                drop = message.CONDITIONAL_FIELDS
        request = message.request_head_for_origin(
            head, target.path, target.authority, self.client.client_ip,
            svc.via_header, self.config.forwarded_for, max_forwards, extra, drop, self.upgrade_offer)
        server.start(self, request, self.config.read_timeout, head.method)
        e.upstream_bytes_out = len(request)
        buffered, self.body_buffer = self.body_buffer, None
        for chunk in buffered or ():
            self._send_body(chunk)
        if self.buffered:
            self.buffered = 0
            self.client.resume_reading("body")
        if self.body_done and self.chunked_body:
            server.write(b"0\r\n\r\n")

    # request body, from the client side
    def client_body(self, data: bytes) -> None:
        if self.finished:
            return
        self.entry.request_body_size += len(data)
        limit = self.config.request_body_max_size
        if limit and self.entry.request_body_size > limit:
            if self.server is not None:
                self.server.transport.abortConnection()
            return self.fail("ERR_TOO_BIG", "the request body is larger than request_body_max_size", 413)
        if self.body_buffer is not None:
            self.body_buffer.append(data)
            self.buffered += len(data)
            if self.buffered > MAX_BUFFERED_BODY:
                self.client.pause_reading("body")
            return
        self._send_body(data)

    def _send_body(self, data: bytes) -> None:
        if self.chunked_body:
            self.server.transport.writeSequence((b"%x\r\n" % len(data), data, b"\r\n"))
        else:
            self.server.write(data)
        self.entry.upstream_bytes_out += len(data)

    def client_body_invalid(self, error: str, detail: str, status: int) -> None:
        """The request body turned out malformed after forwarding began: nothing
        more goes upstream, and that connection cannot be reused."""
        if self.server is not None:
            server, self.server = self.server, None
            server.txn = None
            server.detach()
            server.transport.abortConnection()
        self.body_done = True
        self.fail(error, detail, status)

    def client_body_done(self) -> None:
        self.body_done = True
        if self.finished or self.server is None or self.body_buffer is not None:
            return
        if self.chunked_body:
            self.server.write(b"0\r\n\r\n")

    # reply, from the server side
    def interim_response(self, resp: ResponseHead) -> None:
        """1xx (other than 101): passed on to HTTP/1.1 clients (RFC 9110 15.2)."""
        if self.head.version != "1.1":
            return
        head = message.response_head_for_client(resp, resp.framing, True, "1.1", self.service.via_header, None)
        self.client.write(head.replace(b"Connection: keep-alive\r\n", b""))

    def response_head(self, resp: ResponseHead) -> None:
        e, svc = self.entry, self.service
        self.response = resp
        e.upstream_status = resp.status
        if resp.status == 101:
            refusal = switch_refusal(self.upgrade_offer, resp.header(b"upgrade"), resp.connection)
            if refusal is not None:
                return self.server._fail("ERR_INVALID_RESP", refusal)
            self.upgrading = True
        if self.config.http_reply_access:
            ch = self.checklist
            ch.reply_status = resp.status
            ch.reply_headers = resp.headers
            try:
                verdict = self.config.http_reply_access.check(ch)
            except Pending:
                verdict = None      # a lookup cannot wait here: treat as no match
            if verdict is not None and not verdict.allowed:
                server, self.server = self.server, None
                server.txn = None
                server.transport.abortConnection()
                return self.deny(verdict, self.config.http_reply_access, result="TCP_DENIED_REPLY")
        if self.cache_flow is not None and self.cache_flow.on_head(resp):
            return
        self.reply_limit = self._reply_body_limit(resp)
        if self.reply_limit and resp.content_length is not None and resp.content_length > self.reply_limit:
            server, self.server = self.server, None
            server.txn = None
            server.transport.abortConnection()
            return self.fail("ERR_TOO_BIG", "the reply is larger than reply_body_max_size", 403)
        framing = message.client_framing(resp.framing, self.head.version)
        self.framing = framing.kind
        if framing.kind == CLOSE or self.client.closes_after_active:
            self.keep_alive = False
        if not self.body_done and not self.upgrading:
            self.keep_alive = False
        head = message.response_head_for_client(
            resp, framing, self.keep_alive, self.head.version, svc.via_header, svc.x_cache_miss)
        e.status = resp.status
        e.mime_type = resp.mime_type
        e.reply_headers = resp.headers
        e.reply_header_size = len(head)
        self.reply_started = True
        self.head_cork = self.client.cork_number
        self.client.write(head)

    def divert_reply(self) -> None:
        """The cache answers the client: the origin's reply is read to its end and dropped."""
        self.diverted = True
        self.framing = NO_BODY

    def _reply_body_limit(self, resp: ResponseHead) -> int:
        """reply_body_max_size: the first line whose ACLs match decides (0: none)."""
        rules = self.config.reply_body_max_size
        if not rules:
            return 0
        ch = self.checklist
        ch.reply_status = resp.status
        ch.reply_headers = resp.headers
        for rule in rules:
            try:
                if matches(rule.filter, ch):
                    return rule.size
            except Pending:
                continue
        return 0

    def response_body(self, data: bytes) -> None:
        if self.finished or self.diverted:
            return
        self.entry.reply_body_size += len(data)
        if self.cache_flow is not None:
            self.cache_flow.on_body(data)
        if self.reply_limit and self.entry.reply_body_size > self.reply_limit:
            server, self.server = self.server, None
            if server is not None:
                server.txn = None
                server.transport.abortConnection()
            return self.fail("ERR_TOO_BIG", "the reply grew larger than reply_body_max_size", 403)
        if self.framing == CHUNKED:
            self.client.write_sequence((b"%x\r\n" % len(data), data, b"\r\n"))
        elif self.framing != NO_BODY:
            self.client.write(data)

    def response_done(self, reusable: bool) -> None:
        server, self.server = self.server, None
        if server is not None:
            # also after the cache answered instead (diverted): the connection is done with
            self._account_server(server)
            if reusable and self.body_done and server.connected:
                self.service.pool.release(server)
            else:
                server.detach()
                lose(server.transport)
        if self.finished or self.diverted:
            return                  # (a diverted transaction ends when the cache's answer has gone out)
        if self.framing == CHUNKED:
            self.client.write(b"0\r\n\r\n")
        if self.cache_flow is not None:
            self.cache_flow.on_done(complete=True)
        cache = self.service.cache
        if cache is not None and self.response is not None and self.head.method not in SAFE_METHODS:
            cache.invalidate(self.head.method, self.response.status, self.target.url, self.response.headers)
        self.finish()

    def server_failed(self, error: UpstreamError) -> None:
        if self.finished:
            return
        server, self.server = self.server, None
        if server is not None:
            server.detach()
            self._account_server(server)
        if (error.retriable and self.reused_server and not self.reply_started
                and self.head.method in IDEMPOTENT and self.entry.request_body_size == 0):
            # RFC 9112 9.3.1: a reused connection the server had closed; try a new one once
            self.reused_server = False
            self.body_buffer = []
            return self.connect((self.target.scheme, self.target.host, self.target.port))
        if self.cache_flow is not None and not self.reply_started and self.cache_flow.on_error(error):
            return
        self.fail(error.error, error.detail, error.status, result="TCP_MISS")

    def server_upgraded(self, server, rest: bytes) -> None:
        """A 101 reply was passed on: the two connections become a tunnel."""
        self.client.uncork()        # the 101 head leaves before any byte of the new protocol
        self.server = None
        server.txn = None
        self._account_server(server)
        self.tunnel = Tunnel(self.client, server, self.config.read_timeout, self._tunnel_ended)
        if rest:
            self.tunnel.from_server(rest)
        self.client.become_tunnel(self.tunnel)
        self.tunnel.maybe_splice()

    def _account_server(self, server) -> None:
        self.entry.upstream_bytes_in += server.bytes_in
        if self.upstream_started is not None:
            self.entry.upstream_time = time.monotonic() - self.upstream_started

    # ------------------------------------------------------------ CONNECT
    def open_tunnel(self) -> None:
        target = self.target
        self.entry.result = "TCP_TUNNEL"
        d = self.resolve()
        d.addCallback(lambda addresses: self.service.pool.connect(("tcp", target.host, target.port), addresses))
        d.addCallbacks(self.tunnel_connected, self.tunnel_failed)

    def tunnel_connected(self, server) -> None:
        if self.finished:
            lose(server.transport)
            return
        e = self.entry
        e.hierarchy = "HIER_DIRECT"
        e.server_ip = server.peer_ip
        e.server_port = server.peer_port
        e.status = 200
        e.reply_header_size = len(CONNECTION_ESTABLISHED)
        self.reply_started = True
        self.client.write(CONNECTION_ESTABLISHED)
        self.tunnel = Tunnel(self.client, server, self.config.read_timeout, self._tunnel_ended)
        self.client.become_tunnel(self.tunnel)
        self.tunnel.maybe_splice()

    def tunnel_failed(self, failure) -> None:
        if self.finished:
            return
        self.keep_alive = False
        err = failure.value
        if isinstance(err, DnsError):
            return self.fail("ERR_DNS_FAIL", str(err), 503, result="TCP_TUNNEL")
        if isinstance(err, UpstreamError):
            self.entry.hierarchy = "HIER_DIRECT"
            self.entry.server_ip = err.server_ip
            return self.fail(err.error, err.detail, err.status, result="TCP_TUNNEL", server_ip=err.server_ip)
        return self.fail("ERR_CANNOT_FORWARD", failure.getErrorMessage(), 503, result="TCP_TUNNEL")

    def _tunnel_ended(self, tunnel) -> None:
        self.tunnel = None
        e = self.entry
        e.reply_body_size += tunnel.bytes_down
        e.request_body_size += tunnel.bytes_up
        e.upstream_bytes_in += tunnel.bytes_down
        e.upstream_bytes_out += tunnel.bytes_up
        self.keep_alive = False
        self.finish()

    # ------------------------------------------------------------ the end
    def client_aborted(self) -> None:
        """The client went away before the transaction ended."""
        if self.finished:
            return
        if self.tunnel is not None:
            return      # the tunnel logs when it ends
        server, self.server = self.server, None
        if server is not None:
            server.txn = None
            server.detach()
            self._account_server(server)
            server.transport.abortConnection()
        e = self.entry
        if not e.result.endswith("_ABORTED"):
            e.result += "_ABORTED"
        self.keep_alive = False
        self.finish()

    @property
    def source(self):
        """What feeds the client's connection now: the origin, or the cache's disk reader."""
        return self.server if self.server is not None else self.cache_flow

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        e = self.entry
        e.end = time.time()
        flow, self.cache_flow = self.cache_flow, None     # (a reference cycle)
        if flow is not None:
            flow.finish()
        if not self.background:
            self.service.log_transaction(e, self.checklist)
        self.client.transaction_done(self)
