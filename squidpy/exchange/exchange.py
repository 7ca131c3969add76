"""One request's life, from its head to its log line, as an explicit state machine.

This is Squid's ClientHttpRequest and FwdState without the I/O: an
:class:`Exchange` is fed :mod:`events <squidpy.exchange.events>` and answers
with :mod:`commands <squidpy.exchange.commands>`, the way h11 and mitmproxy's
layers work.  It validates the request, asks ``http_access`` (looking up the
facts an ACL needs), answers itself (error pages, deny_info, its own pages,
PURGE, Max-Forwards), consults the cache (:mod:`squidpy.exchange.caching`),
forwards to the origin, relays or diverts the reply, opens tunnels, and
retries an idempotent request once on a fresh connection.

``state`` says where the exchange is on the client's side; ``upstream`` says
whether an origin connection is attached (``None``, ``"connecting"``,
``"open"``, or ``"draining"``: the reply is read to its end and dropped
because the cache answered instead).  An event that is not legal in the
current state raises :class:`IllegalEvent`; :data:`TRANSITIONS` (generated
into docs/architecture.md) lists every legal one.
"""

from __future__ import annotations

import enum
import html
from typing import Any, Callable

from squidpy import intercept
from squidpy.acl.access import matches
from squidpy.acl.checklist import Checklist, Pending
from squidpy.cache import policy
from squidpy.errors import STATUS, ErrorContext
from squidpy.exchange import commands as c
from squidpy.exchange import events as ev
from squidpy.exchange.caching import CacheRole, Found, OnReply
from squidpy.http import message
from squidpy.http.message import CHUNKED, CLOSE, INVALID, LENGTH, NO_BODY, RequestHead, ResponseHead
from squidpy.http.upgrade import switch_refusal
from squidpy.http.url import BadTarget, Target, internal_target, parse_target, same_origin_resolver
from squidpy.log.entry import LogEntry
from squidpy.proxy import internal

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
CONNECTION_ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
MAX_BUFFERED_BODY = 256 * 1024     # request body held while connecting, before reading pauses
MULTIRANGE_READ_LIMIT = 8 << 20     # several ranges of a disk object are cut from it in memory up to this
REPLACED_ON_PARTS = frozenset({b"content-length", b"content-range"})   # a 304/206/416 from a stored 200
CLOSE_AFTER = frozenset({
    "ERR_INVALID_REQ", "ERR_INVALID_URL", "ERR_UNSUP_REQ", "ERR_UNSUP_HTTPVERSION", "ERR_TOO_BIG",
    "ERR_LIFETIME_EXP",
})


class State(enum.Enum):
    IDLE = "waiting for its turn (pipelined); its body may already arrive"
    VERIFYING_HOST = "an intercepted request's Host is being looked up (is it the address the client connected to?)"
    CHECKING = "an ACL needs a fact that is being looked up"
    CACHE_LOOKUP = "the store is being asked"
    COLLAPSED = "waiting for another exchange's fetch of the same URL"
    PURGING = "the store is removing the URL"
    CONNECTING = "a connection to the origin is being made"
    AWAITING_REPLY = "the request went upstream; no final reply head yet"
    RELAYING = "the origin's reply streams to the client"
    SERVING_STORED = "a stored body streams from disk"
    TUNNEL = "bytes pass untouched both ways (CONNECT, 101)"
    DONE = "answered and logged"


for _n, _state in enumerate(State):
    _state.index = _n       # its row in _DISPATCH


class IllegalEvent(RuntimeError):
    """An event that cannot happen in the exchange's state: a bug in the driver."""


class ClientInfo:
    """The client connection as the exchange sees it (plain data, updated by the
    connection: ``closing`` once no further request will be read).

    On an interception port (``interception`` is "intercept" or "tproxy") the local
    address is the original destination, the address the client connected to, as
    in Squid (the localip/localport ACLs and %la/%lp see it); ``to_proxy``: the
    client connected to the interception port itself, not redirected to it."""

    __slots__ = ("client_ip", "client_port", "local_ip", "local_port", "port_name", "closing", "interception",
                 "to_proxy")

    def __init__(self, client_ip: str, client_port: int, local_ip: str, local_port: int, port_name: str = "",
                 interception: str | None = None, to_proxy: bool = False):
        self.client_ip = client_ip
        self.client_port = client_port
        self.local_ip = local_ip
        self.local_port = local_port
        self.port_name = port_name
        self.closing = False
        self.interception = interception
        self.to_proxy = to_proxy


# (state, event type) -> (handler, the states it may lead to); filled by @on below.
TRANSITIONS: dict[tuple[State, type], tuple[Callable, frozenset[State]]] = {}
ANY_STATE = tuple(State)
BEFORE_DONE = tuple(s for s in State if s is not State.DONE)


# The same, for dispatch: per state (by its position in State), event type -> (handler, tuple
# of allowed next states); a tuple and a list index, because hashing an Enum member runs
# Python code and this is the hot path of every request.
_DISPATCH: list[dict[type, tuple[Callable, tuple[State, ...]]]] = [{} for _ in State]
_INDEX = {state: n for n, state in enumerate(State)}


def on(states, *event_types, to=()):
    """Declare a handler for ``event_types`` in ``states``; ``to``: where it may lead
    (besides staying and DONE)."""
    def register(handler):
        for state in states:
            for event_type in event_types:
                key = (state, event_type)
                if key in TRANSITIONS:
                    raise RuntimeError(f"two handlers for {event_type.__name__} in {state.name}")
                allowed = frozenset((state, State.DONE, *to))
                TRANSITIONS[key] = (handler, allowed)
                _DISPATCH[_INDEX[state]][event_type] = (handler, tuple(allowed))
        return handler
    return register


UPSTREAM_EVENTS = frozenset({ev.ResponseStarted, ev.InterimResponse, ev.ResponseBody, ev.ResponseEnd,
                             ev.UpstreamFailed, ev.Upgraded})


class Exchange:
    """One request.  ``shared`` is what all exchanges share (configuration, clock,
    the cache's settings, facts already known); see :mod:`squidpy.exchange.shared`."""

    # What an exchange starts with; __init__ sets only what differs per request.
    state = State.IDLE
    upstream: str | None = None         # None, "connecting", "open", "draining"
    target: Target | None = None
    checklist: Checklist | None = None
    upgrade_offer: bytes | None = None  # what http_upgrade_request_protocols let through
    body_buffer: list[bytes] | None = None   # the body held until the request goes upstream
    buffered = 0
    refusal: tuple[str, str, int] | None = None
    response: ResponseHead | None = None
    framing = NO_BODY
    reply_started = False
    reply_limit = 0
    reused = False
    tunnel = False                      # the connection being made is for CONNECT
    upgrading = False
    upstream_started: float | None = None
    cache: CacheRole | None = None
    serving: dict | None = None         # a disk hit being streamed: what remains to do
    waited = False                      # it already waited once for a collapsed fetch
    host_verified = False               # the Host passed verification (interception, host_verify_strict)
    original_dst = False                # it goes to the address the client connected to (interception)
    _head_cmd: c.SendToClient | None = None

    def __init__(self, shared: Any, client: ClientInfo, head: RequestHead, started: float,
                 background: bool = False):
        self.shared = shared
        self.config = shared.config
        self.client = client
        self.head = head
        self.background = background        # a stale-while-revalidate refresh: no client, not logged
        self.entry = e = LogEntry(started)
        e.client_ip, e.client_port = client.client_ip, client.client_port
        e.local_ip, e.local_port = client.local_ip, client.local_port
        e.port_name = client.port_name
        e.method = head.method
        e.url = head.target
        e.version = head.version
        e.request_headers = head.headers
        e.request_header_size = head.size
        framing = head.framing
        self.body_done = not framing.has_body
        self.chunked_body = framing.kind == CHUNKED
        if not self.body_done:
            self.body_buffer = []
        self.keep_alive = head.keep_alive
        self._out: list[c.Command] = []

    def __repr__(self) -> str:
        return f"<Exchange {self.head.method} {self.entry.url} {self.state.name}>"

    # ------------------------------------------------------------ the machine
    def handle(self, event: ev.Event) -> list[c.Command]:
        """Feed one event; returns the commands to carry out, in order."""
        self._out = out = []
        self._dispatch(event)
        self._head_cmd = None
        return out

    def handle_all(self, events: list[ev.Event]) -> list[c.Command]:
        """Feed the events one read of the origin produced.  Until the batch ends
        nothing has been sent, so a reply head found faulty later in the same read
        can still be replaced by an error page.  Once the exchange lets go of the
        origin's connection, the rest of the batch is not for it."""
        self._out = out = []
        for event in events:
            if self.upstream is None and type(event) in UPSTREAM_EVENTS:
                break
            self._dispatch(event)
        self._head_cmd = None
        return out

    def _dispatch(self, event: ev.Event) -> None:
        state = self.state
        found = _DISPATCH[state.index].get(type(event))
        if found is None:
            raise IllegalEvent(f"{event!r} in state {state.name} ({self!r})")
        handler, allowed = found
        handler(self, event)
        if self.state not in allowed:
            raise IllegalEvent(f"{handler.__name__} moved {state.name} -> {self.state.name}")

    def _emit(self, command: c.Command) -> None:
        self._out.append(command)

    # ------------------------------------------------------------ start: validate, then http_access
    @on([State.IDLE], type(ev.RequestStarted),
        to=(State.VERIFYING_HOST, State.CHECKING, State.CONNECTING, State.CACHE_LOOKUP, State.PURGING,
            State.COLLAPSED, State.SERVING_STORED))
    def _start(self, _event) -> None:
        if self.refusal is not None:
            return self.fail(*self.refusal)
        head, e = self.head, self.entry
        if head.version == "0.9" or not head.version.startswith("1."):
            if head.version.startswith(("2.", "3.")):
                return self.fail("ERR_UNSUP_HTTPVERSION", f"HTTP/{head.version} is not spoken here", 505)
            return self.fail("ERR_INVALID_REQ", f"HTTP/{head.version} requests are not accepted")
        client = self.client
        try:
            if client.interception is None:
                self.target = target = parse_target(head.method, head.target)
            else:
                target, verdict = intercept.intercepted_request(
                    head.method, head.target, head.host, client.local_ip, client.local_port,
                    self.shared.cached_addresses)
                self.target = target
        except BadTarget as bad:
            e.url = head.target[:2048]
            return self.fail(bad.error, bad.detail, bad.status)
        shared = self.shared
        if target.kind == "origin":     # addressed to the proxy itself: checked like any request
            self.target = target = internal_target(target.path, shared.visible_hostname, shared.my_port)
        e.url = target.url
        e.path = target.path
        if (target.kind != "internal" and shared.via_name is not None and head.via
                and message.is_forwarding_loop(head.via, shared.via_name)):
            return self.fail("ERR_ACCESS_DENIED",
                             "forwarding loop detected: this request already passed through this proxy", 403,
                             result="TCP_DENIED")
        framing = head.framing
        if framing.kind == INVALID:
            return self.fail("ERR_INVALID_REQ", framing.problem)
        limit = self.config.request_body_max_size
        if limit and framing.kind == LENGTH and framing.length > limit:
            return self.fail("ERR_TOO_BIG", "the request body is larger than request_body_max_size", 413)
        if head.method == "CONNECT" and framing.has_body:
            return self.fail("ERR_INVALID_REQ", "a CONNECT request cannot have a body")
        if client.to_proxy:
            return self.fail("ERR_ACCESS_DENIED", "this request was sent to the proxy's interception port itself, "
                             "not redirected to it: its destination is this proxy, and forwarding it would loop",
                             403, result="TCP_DENIED")
        self.checklist = self._checklist(target)
        if client.interception is not None:
            return self._verify_host(verdict)
        if self.config.host_verify_strict and target.kind != "internal":
            return self._host_checked(intercept.verify_forwarded(head.host, head.method, target))
        self._check()

    # ------------------------------------------------------------ Host verification (CVE-2009-0801)
    def _verify_host(self, verdict) -> None:
        """Squid's hostHeaderVerify, before http_access: an intercepted request's Host
        must resolve to the address the client connected to (``verdict``, from
        intercept.intercepted_request: a name means its addresses must be looked up)."""
        if verdict is intercept.VERIFIED:
            self.host_verified = True
            return self._check()
        if verdict.__class__ is str:
            self.state = State.VERIFYING_HOST
            return self._emit(c.LookUp("host", verdict))
        self._host_checked(verdict)

    @on([State.VERIFYING_HOST], ev.FactKnown,
        to=(State.CHECKING, State.CONNECTING, State.CACHE_LOOKUP, State.PURGING, State.COLLAPSED,
            State.SERVING_STORED))
    def _host_looked_up(self, event: ev.FactKnown) -> None:
        if event.seconds:
            self.entry.dns_time = (self.entry.dns_time or 0) + event.seconds
        self._host_checked(intercept.check_addresses(event.value or [], self.client.local_ip))

    def _host_checked(self, check: intercept.HostCheck) -> None:
        """Verified: on as usual.  Failed: 409 under host_verify_strict (and for
        CONNECT), else on, to the original destination only and past the cache."""
        self.host_verified = check is intercept.VERIFIED
        head, client = self.head, self.client
        if check.outcome == "failed" and intercept.refuse_unverified(self.config.host_verify_strict, head.method):
            for line in intercept.security_alert(check.mismatch, (client.local_ip, client.local_port),
                                                 (client.client_ip, client.client_port),
                                                 policy.field(head.headers, b"user-agent"), self.entry.url):
                self._emit(c.Report("warning", line))
            return self.fail("ERR_CONFLICT_HOST", f"the Host header does not match where the request goes "
                             f"({check.mismatch[0]} does not match {check.mismatch[1]})", 409)
        self._check()

    def _checklist(self, target: Target) -> Checklist:
        client, head = self.client, self.head
        ch = Checklist(
            src=client.client_ip, method=head.method, url=target.url, scheme=target.scheme,
            host=target.host, port=target.port, path=target.path, request_headers=head.headers,
            src_port=client.client_port, local_ip=client.local_ip, local_port=client.local_port,
            port_name=client.port_name, ip_literal=target.ip_literal,
        )
        ch.client_connections = self.shared.connections_from(client.client_ip)
        if target.ip_literal:           # a known name spares dstdomain ACLs a lookup round
            ch.dst_name = self.shared.cached_name(target.host)
        if client.interception is not None and self.config.client_dst_passthru:
            ch.dst = [client.local_ip]  # dst ACLs match where the request goes: the original destination
        return ch

    def _check(self) -> None:
        """http_access; an ACL that needs a fact not known yet makes us look it up."""
        try:
            verdict = self.config.http_access.check(self.checklist)
        except Pending as p:
            return self._look_up(p.fact)
        if not verdict.allowed:
            return self.deny(verdict, self.config.http_access)
        self._checked()

    def _look_up(self, fact: str) -> None:
        target, ch = self.target, self.checklist
        assert target is not None and ch is not None
        if fact == "dst":
            if target.ip_literal:
                ch.dst = [target.host]
                return self._check()
            cached = self.shared.cached_addresses(target.host)
            if cached is not None:
                ch.dst = cached
                return self._check()
            name = target.host
        elif fact == "dst_name":
            name = target.host
        elif fact == "src_name":
            name = self.client.client_ip
        else:
            raise RuntimeError(f"no lookup for ACL fact {fact!r}")
        self.state = State.CHECKING
        self._emit(c.LookUp(fact, name))

    @on([State.CHECKING], ev.FactKnown,
        to=(State.CONNECTING, State.CACHE_LOOKUP, State.PURGING, State.COLLAPSED, State.SERVING_STORED))
    def _fact_known(self, event: ev.FactKnown) -> None:
        setattr(self.checklist, event.fact, event.value)
        if event.fact == "dst" and event.seconds:
            self.entry.dns_time = (self.entry.dns_time or 0) + event.seconds
        self._check()

    def _checked(self) -> None:
        """http_access allowed the request."""
        head = self.head
        if self.target.kind == "internal":
            return self._serve_internal()
        if head.method == "CONNECT":
            return self._connect(tunnel=True)
        if head.method in ("OPTIONS", "TRACE") and head.max_forwards is not None:
            try:
                hops = int(head.max_forwards)
            except ValueError:
                return self.fail("ERR_INVALID_REQ", "Max-Forwards is not a number")
            if hops <= 0:
                return self._answer_max_forwards()
        if head.method == "PURGE":
            return self._purge()
        if head.upgrade is not None and head.version == "1.1" and not head.framing.has_body:
            # only what http_upgrade_request_protocols allows (by default nothing). RFC 9110
            # 7.8: an Upgrade in an HTTP/1.0 request is ignored; squidpy ignores one on a
            # request with a body too (that body is read as HTTP: client_side)
            self.upgrade_offer = self.config.http_upgrade_request_protocols.allowed_offers(
                head.upgrade, self.checklist)
        cache = self.shared.cache
        if (cache is not None and head.method in ("GET", "HEAD") and cache.allows(self.checklist)
                # an intercepted request whose Host failed verification neither stores its reply nor is
                # answered from the cache: the reply came from an address the name does not have, and a
                # stored page of that name must not reach a script the same-origin check keeps from it
                # (Squid 5.7 does not store it either, but still serves it stored copies)
                and (self.client.interception is None or self.host_verified)):
            self.cache = role = CacheRole(cache, self.target.url, head.method, head.headers, head.cache_fields,
                                          self.background)
            if role.reload:
                # a reload (RFC 9111 5.2.1.4), as Squid 5.7 does it: no lookup, no validators of
                # ours; the origin's reply is logged TCP_MISS and replaces the stored one
                return self._connect()
            return self._look_in_cache()
        self._connect()

    def _serve_internal(self) -> None:
        """A request to the proxy itself, once http_access allowed it: its own pages,
        and the cache manager (``/squid-internal-mgr/...``), which the ``manager``
        ACL lets a configuration guard, as in Squid."""
        head, client = self.head, self.client
        self.entry.result = "TCP_MISS"
        if head.target.startswith(internal.MANAGER_PREFIX):
            page = internal.manager_page(head.target, self.shared.manager_report())
        else:
            page = internal.page(head, client.local_ip, client.local_port, self.shared.visible_hostname,
                                 self.shared.pac)
        self.send_local(page.status, page.content_type, page.body)

    def _purge(self) -> None:
        """Squid's PURGE: refused (403) unless the configuration names the method in
        an ACL; then every stored variant of the URL is removed: 200, or 404 when
        there was none, with an empty body (TCP_MISS in the log), as Squid answers."""
        if not self.config.acls.names_method("PURGE"):
            return self.fail("ERR_ACCESS_DENIED", "PURGE is not enabled: no ACL names the PURGE method", 403,
                             result="TCP_DENIED")
        self.entry.result = "TCP_MISS"
        if self.shared.cache is None:
            return self.send_local(404, None, b"")
        self.state = State.PURGING
        self._emit(c.Purge(self.target.url))

    def _answer_max_forwards(self) -> None:
        """RFC 9110 7.6.2: Max-Forwards 0 means this proxy answers OPTIONS/TRACE itself."""
        if self.head.method == "TRACE":
            return self.send_local(200, b"message/http", message.raw_request_head(self.head))
        self.send_local(200, b"text/plain", b"",
                        [(b"Allow", b"GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, CONNECT")])

    @on([State.PURGING], ev.Purged)
    def _purged(self, event: ev.Purged) -> None:
        """200 when something was removed, else 404."""
        self.send_local(200 if event.removed else 404, None, b"")

    # ------------------------------------------------------------ denials and errors
    def deny(self, verdict, access_list, result: str = "TCP_DENIED") -> None:
        """A denial, answered as deny_info says for the ACL that decided it: the last
        ACL of the denying line, or after an implicit deny the last ACL evaluated
        (as in Squid).  By default ERR_ACCESS_DENIED."""
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
            self._emit(c.AbortClient)
            return self.finish()
        location = self.shared.error_pages.render_url(info.value, self._error_context("ERR_ACCESS_DENIED", None))
        body = (b'<html><body>See <a href="%s">here</a>.</body></html>\n'
                % html.escape(location).encode("latin-1", "replace"))
        self.send_local(info.status or 302, b"text/html;charset=utf-8", body,
                        [(b"Location", location.encode("latin-1", "replace"))])

    def fail(self, error: str, detail: str | None, status: int | None = None, result: str = "NONE_NONE",
             server_ip: str | None = None) -> None:
        """Answer with the error page ``error`` (if nothing was sent yet) and finish."""
        if self.state is State.DONE:
            return
        e = self.entry
        e.error = error
        e.error_detail = detail
        if error in CLOSE_AFTER:
            self.keep_alive = False     # Squid closes after a request it could not make sense of
        if self.reply_started and self._take_back():
            e.reply_header_size = e.reply_body_size = 0
        if self.reply_started:
            # the reply is under way: cut it short so the client cannot take it as complete
            if not e.result.endswith("_ABORTED"):
                e.result += "_ABORTED"
            self.keep_alive = False
            self._emit(c.AbortClient)
            return self.finish()
        e.result = result
        body = self.shared.error_pages.render(self._error_context(error, detail, server_ip))
        self.send_local(status or STATUS.get(error, 500), b"text/html;charset=utf-8", body,
                        [(b"X-Squid-Error", f"{error} 0".encode())])

    def _take_back(self) -> bool:
        """Withdraw the reply head (and what followed it) if it has not left yet:
        it was emitted in the batch being handled."""
        head_cmd = self._head_cmd
        if head_cmd is None or head_cmd not in self._out:
            return False
        at = self._out.index(head_cmd)
        self._out[at:] = [cmd for cmd in self._out[at:] if not isinstance(cmd, c.SendToClient)]
        self._head_cmd = None
        self.reply_started = False
        return True

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

    def send_local(self, status: int, content_type: bytes | None, body: bytes,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
        """A complete reply made by squidpy itself (no Content-Type when None), then the end."""
        if not self.body_done:
            self.keep_alive = False     # the rest of the request body will not be read
        shared = self.shared
        head = message.local_reply_head(status, content_type, len(body), extra, self.keep_alive,
                                        self.head.version, shared.via_header, shared.x_cache_miss,
                                        shared.now())
        e = self.entry
        e.status = status
        e.mime_type = content_type.split(b";")[0].decode() if content_type is not None else None
        e.reply_header_size = len(head)
        e.reply_body_size = 0 if self.head.method == "HEAD" else len(body)
        self.reply_started = True
        self._emit(c.SendToClient(head if self.head.method == "HEAD" or not body else head + body))
        self.finish()

    # ------------------------------------------------------------ the cache
    def _look_in_cache(self) -> None:
        """The memory tier answers at once (no I/O); the disk is asked by a command."""
        found = self.shared.cache.find_in_memory(self.target.url, self.head.headers)
        if found is not None:
            return self._found(*found)
        self.state = State.CACHE_LOOKUP
        self._emit(c.LookUpCache(self.target.url, self.head.headers))

    @on([State.CACHE_LOOKUP], ev.CacheFound,
        to=(State.COLLAPSED, State.CONNECTING, State.SERVING_STORED))
    def _cache_found(self, event: ev.CacheFound) -> None:
        self._found(event.reply, event.body, event.names)

    def _found(self, reply, body: bytes | None, names: tuple) -> None:
        role = self.cache
        decision = role.found(reply, body, names, self.shared.now(), not self.waited)
        if decision is Found.ONLY_IF_CACHED_MISS:
            return self.fail("ERR_ONLY_IF_CACHED_MISS", "the request asked for a cached reply only", 504,
                             result="TCP_MISS")
        if decision is Found.WAIT:
            self.entry.result = "TCP_MISS"
            self.state = State.COLLAPSED
            return self._emit(c.WaitForFetch(role.key))
        if decision is Found.LEAD:
            self._emit(c.LeadFetch(role.key))
        elif decision is Found.SERVE:
            return self.serve("TCP_OFFLINE_HIT" if self.shared.cache.offline else None)
        elif decision is Found.SERVE_AND_REFRESH:
            self._emit(c.BackgroundRefresh(self.head.target, self.head.headers))
            return self.serve(None)
        self._connect()

    @on([State.COLLAPSED], type(ev.CollapseReleased), to=(State.CACHE_LOOKUP, State.CONNECTING,
                                                         State.SERVING_STORED))
    def _collapse_released(self, _event) -> None:
        """The fetch we waited for is over: look again, and fetch ourselves if it is
        not there, without waiting a second time."""
        self.waited = True
        self._look_in_cache()

    def serve(self, result: str | None, age: float | None = None) -> None:
        """Answer from the stored entry (a 304, ranges, the whole body)."""
        role = self.cache
        reply, body = role.stored, role.stored_body
        head, e = self.head, self.entry
        age = role.age if age is None else age
        e.hierarchy = e.hierarchy if self.upstream_started is not None else "HIER_NONE"
        if self.upstream_started is None:
            e.server_ip = None
        if result is None:
            result = "TCP_MEM_HIT" if body is not None else "TCP_HIT"
        if head.cache_fields and reply.status in (200, 203, 206) and policy.not_modified_for_client(
                head.headers, reply.headers):
            result = "TCP_INM_HIT" if policy.field(head.headers, b"if-none-match") is not None else "TCP_IMS_HIT"
            if result == "TCP_IMS_HIT" and e.result == "TCP_REFRESH_UNMODIFIED":
                result = "TCP_REFRESH_UNMODIFIED"
            return self._send_stored(reply, 304, b"Not Modified", age, b"", result)
        ranges = None
        if head.cache_fields and head.method == "GET" and reply.status == 200 and policy.if_range_allows(
                head.headers, reply.headers):
            ranges = policy.parse_range(policy.field(head.headers, b"range"), reply.body_size)
        if body is not None:
            if ranges is not None:
                return self._send_ranges(reply, body, ranges, age, result)
            return self._send_stored(reply, reply.status, reply.reason, age, body, result)
        # the body is on disk: it streams (a single range from where it starts)
        window = None
        if ranges is not None:
            if len(ranges) == 1:
                window = ranges[0]
            elif ranges and reply.body_size > MULTIRANGE_READ_LIMIT:
                ranges = None       # several ranges of a large object: all of it (RFC 9110 14.2)
        self.serving = {"result": result, "age": age, "ranges": ranges, "window": window,
                        "head": None, "parts": [] if ranges is not None and window is None else None}
        self.state = State.SERVING_STORED
        if ranges is not None and window is None and not ranges:
            self.serving["parts"] = None
            return self._send_ranges(reply, b"", ranges, age, result)
        self._emit(c.StreamStored(reply, window, head_only=head.method == "HEAD"))

    def _hit_head(self, reply, status: int, reason: bytes, age: float, fields: bytes) -> bytes:
        shared = self.shared
        if status == reply.status:
            start = reply.head
        else:
            start = b"HTTP/1.1 %d %s\r\n" % (status, reason) + b"".join(
                b"%s: %s\r\n" % kv for kv in policy.fields_for_hit(reply.headers, REPLACED_ON_PARTS))
        if not self.body_done:
            self.keep_alive = False
        return message.stored_reply_head(start, age, fields, self.keep_alive, self.head.version,
                                         shared.via_header, shared.x_cache_hit)

    def _send_stored(self, reply, status: int, reason: bytes, age: float, body: bytes, result: str,
                     fields: bytes = b"") -> None:
        head = self._hit_head(reply, status, reason, age, fields)
        e = self.entry
        e.result, e.status = result, status
        e.mime_type = reply.mime_type
        e.reply_headers = reply.headers
        e.reply_header_size = len(head)
        send_body = body if (self.head.method != "HEAD" and status not in (204, 304)) else b""
        e.reply_body_size = len(send_body)
        self.reply_started = True
        self._emit(c.SendToClient(head + send_body if send_body else head))
        self.finish()

    def _send_ranges(self, reply, body: bytes, ranges, age: float, result: str) -> None:
        """RFC 9110 14: 206 with one range or multipart/byteranges; 416 when none fits."""
        length = reply.body_size
        if not ranges:
            fields = b"Content-Range: bytes */%d\r\nContent-Length: 0\r\n" % length
            return self._send_stored(reply, 416, b"Range Not Satisfiable", age, b"", result, fields)
        if len(ranges) == 1:
            first, last = ranges[0]
            return self._send_stored(reply, 206, b"Partial Content", age, body[first:last + 1], result,
                                     message.content_range_fields(first, last, length))
        content_type = policy.field(reply.headers, b"content-type")
        boundary, payload = message.multipart_byteranges(body, ranges, length, content_type,
                                                         self.shared.boundary())
        fields = (b"Content-Type: multipart/byteranges; boundary=%s\r\nContent-Length: %d\r\n"
                  % (boundary, len(payload)))
        self._send_stored(reply.without_field(b"content-type"), 206, b"Partial Content", age, payload, result,
                          fields)

    @on([State.SERVING_STORED], ev.StoredBody)
    def _stored_body(self, event: ev.StoredBody) -> None:
        serving = self.serving
        if serving["parts"] is not None:
            serving["parts"].append(event.data)
            return
        self._start_stored_reply()
        self.entry.reply_body_size += len(event.data)
        self._emit(c.SendToClient(event.data))

    def _start_stored_reply(self) -> None:
        serving = self.serving
        if serving["head"] is not None:
            return
        reply, window = self.cache.stored, serving["window"]
        if window is None:
            status, reason, fields = reply.status, reply.reason, b""
        else:
            status, reason = 206, b"Partial Content"
            fields = message.content_range_fields(window[0], window[1], reply.body_size)
        serving["head"] = head = self._hit_head(reply, status, reason, serving["age"], fields)
        e = self.entry
        e.result, e.status, e.reply_headers = serving["result"], status, reply.headers
        e.mime_type = reply.mime_type
        e.reply_header_size = len(head)
        self.reply_started = True
        self._emit(c.SendToClient(head))

    @on([State.SERVING_STORED], ev.StoredBodyEnd)
    def _stored_body_end(self, event: ev.StoredBodyEnd) -> None:
        serving, reply = self.serving, self.cache.stored
        if serving["parts"] is not None:
            if not event.intact:
                return self._swap_failed()
            return self._send_ranges(reply, b"".join(serving["parts"]), serving["ranges"], serving["age"],
                                     serving["result"])
        self._start_stored_reply()
        if not event.intact:
            e = self.entry
            e.result += "_ABORTED"
            self.keep_alive = False
            self._emit(c.Report("error", f"cache_dir entry for {reply.url} is damaged: removed"))
            self._emit(c.AbortClient)
        self.finish()

    @on([State.SERVING_STORED], type(ev.StoredBodyMissing), to=(State.CONNECTING,))
    def _stored_body_missing(self, _event) -> None:
        self._swap_failed()

    def _swap_failed(self) -> None:
        """The stored body could not be read: fetch it (Squid's TCP_SWAPFAIL_MISS)."""
        self.entry.result = "TCP_SWAPFAIL_MISS"
        self.cache.forget_stored()
        self.serving = None
        self._drop_upstream()       # a revalidation's 304 still draining
        self._connect()

    # ------------------------------------------------------------ forwarding
    def _connect(self, tunnel: bool = False, fresh: bool = False) -> None:
        target, client = self.target, self.client
        self.tunnel = tunnel
        if tunnel:
            self.entry.result = "TCP_TUNNEL"
        self.state = State.CONNECTING
        self.upstream = "connecting"
        if client.interception is None:
            addresses = [target.host] if target.ip_literal else (self.checklist.dst or None)
            return self._emit(c.Connect(target.scheme, target.host, target.port, fresh=fresh, tunnel=tunnel,
                                        addresses=addresses))
        source = client.client_ip if client.interception == intercept.TPROXY and self._spoofs() else None
        self.original_dst = intercept.to_original_destination(True, self.config.client_dst_passthru,
                                                              self.host_verified)
        if self.original_dst:
            self._emit(c.Connect(target.scheme, client.local_ip, client.local_port, fresh=fresh, tunnel=tunnel,
                                 addresses=[client.local_ip], source=source))
        else:
            addresses = [target.host] if target.ip_literal else None
            self._emit(c.Connect(target.scheme, target.host, target.port, fresh=fresh, tunnel=tunnel,
                                 addresses=addresses, source=source))

    def _spoofs(self) -> bool:
        """spoof_client_ip: a tproxy request connects with the client's address unless
        a line denies it (an ACL that needs a lookup cannot decide: no spoofing)."""
        try:
            return self.config.spoof_client_ip.check(self.checklist).allowed
        except Pending:
            return False

    @on([State.CONNECTING], ev.Connected, to=(State.AWAITING_REPLY, State.TUNNEL))
    def _connected(self, event: ev.Connected) -> None:
        e = self.entry
        e.hierarchy = "ORIGINAL_DST" if self.original_dst else "HIER_DIRECT"
        e.server_ip, e.server_port = event.peer_ip, event.peer_port
        e.server_local_ip, e.server_local_port = event.local_ip, event.local_port
        if event.seconds:
            e.dns_time = (e.dns_time or 0) + event.seconds
        self.upstream = "open"
        self.reused = event.reused
        self.upstream_started = self.shared.now()
        if self.tunnel:
            e.status = 200
            e.reply_header_size = len(CONNECTION_ESTABLISHED)
            self.reply_started = True
            self.state = State.TUNNEL
            self._emit(c.SendToClient(CONNECTION_ESTABLISHED))
            self._emit(c.StartTunnel())
            return
        head, target, shared = self.head, self.target, self.shared
        max_forwards = None
        if head.max_forwards is not None and head.method in ("OPTIONS", "TRACE"):
            max_forwards = int(head.max_forwards) - 1
        extra, drop = None, None
        role = self.cache
        if role is not None and role.revalidating:
            extra = role.validators()
            if extra:
                drop = message.CONDITIONAL_FIELDS
        request = message.request_head_for_origin(
            head, target.path, target.authority, self.client.client_ip,
            shared.via_header, self.config.forwarded_for, max_forwards, extra, drop, self.upgrade_offer)
        e.upstream_bytes_out = len(request)
        self.state = State.AWAITING_REPLY
        self._emit(c.SendUpstream(request, head=True, method=head.method))
        buffered, self.body_buffer = self.body_buffer, None
        for chunk in buffered or ():
            self._send_body(chunk)
        if self.buffered:
            self.buffered = 0
            self._emit(c.ResumeClient("body"))
        if self.body_done and self.chunked_body:
            self._emit(c.SendUpstream(message.LAST_CHUNK))

    @on([State.CONNECTING], ev.ConnectFailed, to=(State.SERVING_STORED,))
    def _connect_failed(self, event: ev.ConnectFailed) -> None:
        self.upstream = None
        e = self.entry
        if self.tunnel:
            self.keep_alive = False
            if event.error != "ERR_DNS_FAIL":
                e.hierarchy = "ORIGINAL_DST" if self.original_dst else "HIER_DIRECT"
                e.server_ip = event.server_ip
            return self.fail(event.error, event.detail, event.status, result="TCP_TUNNEL",
                             server_ip=event.server_ip)
        if self._stale_instead():
            return
        if event.error == "ERR_DNS_FAIL":
            e.hierarchy = "HIER_NONE"
            return self.fail(event.error, event.detail, event.status, result=self._miss_result())
        e.hierarchy = "ORIGINAL_DST" if self.original_dst else "HIER_DIRECT"
        e.server_ip = event.server_ip
        self.fail(event.error, event.detail, event.status, result=self._miss_result(), server_ip=event.server_ip)

    def _miss_result(self) -> str:
        result = self.entry.result
        return result if result.startswith("TCP_REFRESH") else "TCP_MISS"

    def _stale_instead(self) -> bool:
        """The origin cannot be reached: answer stale if the cache may (else False)."""
        role = self.cache
        if role is None:
            return False
        decision = role.on_failure()
        if decision is OnReply.SERVE_STALE:
            self._stop_teeing()
            self.serve("TCP_REFRESH_FAIL_OLD")
            return True
        if decision is OnReply.FAIL:
            self._stop_teeing()
            self.fail(self.entry.error or "ERR_CANNOT_FORWARD", self.entry.error_detail, 504,
                      result="TCP_REFRESH_FAIL_ERR")
            return True
        if role.revalidating and role.stored is not None:
            self.entry.result = "TCP_REFRESH_FAIL_ERR"
        self._stop_teeing()
        return False

    # request body, from the client
    @on(BEFORE_DONE, ev.RequestBody)
    def _request_body(self, event: ev.RequestBody) -> None:
        data = event.data
        e = self.entry
        e.request_body_size += len(data)
        limit = self.config.request_body_max_size
        if limit and e.request_body_size > limit:
            if self.state is State.IDLE:
                self.refusal = ("ERR_TOO_BIG", "the request body is larger than request_body_max_size", 413)
                return
            self._drop_upstream()
            return self.fail("ERR_TOO_BIG", "the request body is larger than request_body_max_size", 413)
        if self.body_buffer is not None:
            self.body_buffer.append(data)
            self.buffered += len(data)
            if self.buffered > MAX_BUFFERED_BODY:
                self._emit(c.PauseClient("body"))
            return
        if self.upstream == "open":
            self._send_body(data)

    @on([State.DONE], ev.RequestBody, type(ev.RequestEnd))
    def _late_request_body(self, _event) -> None:
        """The exchange answered before the body ended: the rest is not wanted."""

    def _send_body(self, data: bytes) -> None:
        if self.chunked_body:
            self._emit(c.SendUpstream(message.chunk(data)))
        else:
            self._emit(c.SendUpstream(data))
        self.entry.upstream_bytes_out += len(data)

    @on(BEFORE_DONE, type(ev.RequestEnd))
    def _request_end(self, _event) -> None:
        self.body_done = True
        if self.upstream == "open" and self.body_buffer is None and self.chunked_body and \
                self.state in (State.AWAITING_REPLY, State.RELAYING):
            self._emit(c.SendUpstream(message.LAST_CHUNK))

    @on(BEFORE_DONE, ev.RequestInvalid)
    def _request_invalid(self, event: ev.RequestInvalid) -> None:
        """The request body turned out malformed: nothing more of it goes upstream,
        and that connection cannot be reused."""
        self.keep_alive = False
        self.body_done = True
        if self.state is State.IDLE:
            self.refusal = (event.error, event.detail, event.status)
            return
        self._drop_upstream()
        self.fail(event.error, event.detail, event.status)

    @on([State.DONE], ev.RequestInvalid)
    def _late_request_invalid(self, _event) -> None:
        self.keep_alive = False

    # the reply, from the origin
    @on([State.AWAITING_REPLY], ev.InterimResponse)
    def _interim(self, event: ev.InterimResponse) -> None:
        """1xx (other than 101): passed on to HTTP/1.1 clients (RFC 9110 15.2)."""
        if self.head.version == "1.1":
            self._emit(c.SendToClient(message.interim_head_for_client(event.head, self.shared.via_header)))

    @on([State.AWAITING_REPLY], ev.ResponseStarted, to=(State.RELAYING, State.SERVING_STORED, State.CONNECTING))
    def _response_started(self, event: ev.ResponseStarted) -> None:
        resp = event.head
        e, shared = self.entry, self.shared
        self.response = resp
        e.upstream_status = resp.status
        if resp.status == 101:
            refusal = switch_refusal(self.upgrade_offer, resp.header(b"upgrade"), resp.connection)
            if refusal is not None:
                return self._upstream_failed(ev.UpstreamFailed("ERR_INVALID_RESP", refusal))
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
                self._drop_upstream()
                return self.deny(verdict, self.config.http_reply_access, result="TCP_DENIED_REPLY")
        role = self.cache
        if role is not None:
            decision = role.on_reply(resp, self._storable_here())
            if decision is OnReply.FRESHEN:
                return self._freshen(resp)
            if decision is OnReply.SERVE_STALE:
                self.upstream = "draining"
                return self.serve("TCP_REFRESH_FAIL_OLD")
            refresh = role.refresh_result(resp)
            if refresh is not None:
                e.result = refresh
            if decision is OnReply.STORE:
                self._emit(c.StoreStart(resp, self.upstream_started))
            elif role.leader:
                # nobody should wait for this URL: the waiters fetch on their own, now and next time
                role.leader = False
                self._emit(c.ReleaseFetch(role.key, uncacheable=True))
        self.reply_limit = self._reply_body_limit(resp)
        if self.reply_limit and resp.content_length is not None and resp.content_length > self.reply_limit:
            self._drop_upstream()
            return self.fail("ERR_TOO_BIG", "the reply is larger than reply_body_max_size", 403)
        framing = message.client_framing(resp.framing, self.head.version)
        self.framing = framing.kind
        if framing.kind == CLOSE or self.client.closing:
            self.keep_alive = False
        if not self.body_done and not self.upgrading:
            self.keep_alive = False
        head = message.response_head_for_client(
            resp, framing, self.keep_alive, self.head.version, shared.via_header, shared.x_cache_miss)
        e.status = resp.status
        e.mime_type = resp.mime_type
        e.reply_headers = resp.headers
        e.reply_header_size = len(head)
        self.reply_started = True
        self.state = State.RELAYING
        self._head_cmd = cmd = c.SendToClient(head)
        self._emit(cmd)

    def _storable_here(self) -> bool:
        """The ``cache`` ACL allows this URL, and the request's no-store is not overridden away."""
        role, cache = self.cache, self.shared.cache
        if "no-store" in role.req_cc and "ignore-no-store" not in cache.options(self.target.url):
            return False
        return cache.allows(self.checklist)

    def _freshen(self, resp: ResponseHead) -> None:
        """The origin says the stored entry is still good: update its fields, answer from it."""
        role = self.cache
        reply = role.stored
        now = self.shared.now()
        reply.freshen(policy.freshen_headers(reply.headers, resp.headers), self.upstream_started or now, now)
        self._emit(c.Freshen(role.key, reply, role.stored_body))
        self.entry.result = "TCP_REFRESH_UNMODIFIED"
        self.upstream = "draining"
        self.serve("TCP_REFRESH_UNMODIFIED", 0.0)

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

    @on([State.RELAYING], ev.ResponseBody)
    def _response_body(self, event: ev.ResponseBody) -> None:
        data = event.data
        e = self.entry
        e.reply_body_size += len(data)
        role = self.cache
        if role is not None and role.teeing:
            if self.shared.cache.size_allowed(e.reply_body_size):
                self._emit(c.StoreBody(data))
            else:
                self._stop_teeing()
        if self.reply_limit and e.reply_body_size > self.reply_limit:
            self._drop_upstream()
            return self.fail("ERR_TOO_BIG", "the reply grew larger than reply_body_max_size", 403)
        if self.framing == CHUNKED:
            self._emit(c.SendToClient(message.chunk(data)))
        elif self.framing != NO_BODY:
            self._emit(c.SendToClient(data))

    @on([State.RELAYING], ev.ResponseEnd)
    def _response_end(self, event: ev.ResponseEnd) -> None:
        self._release(event.reusable, event.bytes_in)
        if self.framing == CHUNKED:
            self._emit(c.SendToClient(message.LAST_CHUNK))
        role = self.cache
        if role is not None and role.teeing:
            role.teeing = False
            resp = self.response
            if resp.content_length is not None and self.entry.reply_body_size != resp.content_length:
                self._emit(c.StoreDiscard)
            else:
                key, names, values = role.stored_under(resp.headers)
                self._emit(c.StoreEnd(key, self.target.url, names, values, self.shared.now()))
        if self.shared.cache is not None and self.head.method not in SAFE_METHODS:
            urls = policy.invalidated_urls(self.head.method, self.response.status, self.target.url,
                                           self.response.headers, same_origin_resolver(self.target.url))
            if urls:
                self._emit(c.Invalidate(tuple(urls)))
        self.finish()

    def _release(self, reusable: bool, bytes_in: int) -> None:
        self.upstream = None
        e = self.entry
        e.upstream_bytes_in += bytes_in
        if self.upstream_started is not None:
            e.upstream_time = self.shared.now() - self.upstream_started
        self._emit(c.ReleaseUpstream(reusable and self.body_done))

    @on([State.DONE, State.SERVING_STORED], ev.ResponseBody)
    def _drained_body(self, _event: ev.ResponseBody) -> None:
        """The cache answered instead: the origin's reply is read to its end and dropped."""
        self._require_draining()

    @on([State.DONE, State.SERVING_STORED], ev.ResponseEnd)
    def _drained_end(self, event: ev.ResponseEnd) -> None:
        self._require_draining()
        self._release(event.reusable, event.bytes_in)

    @on([State.DONE, State.SERVING_STORED], ev.UpstreamFailed)
    def _drained_failure(self, event: ev.UpstreamFailed) -> None:
        self._require_draining()
        self.upstream = None
        self.entry.upstream_bytes_in += event.bytes_in

    def _require_draining(self) -> None:
        if self.upstream != "draining":
            raise IllegalEvent(f"origin events after the exchange ended ({self!r})")

    @on([State.AWAITING_REPLY, State.RELAYING], ev.UpstreamFailed, to=(State.CONNECTING, State.SERVING_STORED))
    def _upstream_failed(self, event: ev.UpstreamFailed) -> None:
        if self.upstream is not None:
            self.upstream = None
            self.entry.upstream_bytes_in += event.bytes_in
            self._emit(c.AbortUpstream)
        if self.upstream_started is not None:
            self.entry.upstream_time = self.shared.now() - self.upstream_started
        if (event.retriable and self.reused and not self.reply_started
                and self.head.method in IDEMPOTENT and self.entry.request_body_size == 0):
            # RFC 9112 9.3.1: a reused connection the server had closed; try a new one once
            self.reused = False
            self.body_buffer = []
            return self._connect(fresh=True)
        if not self.reply_started and self._stale_instead():
            return
        self._stop_teeing()
        self.fail(event.error, event.detail, event.status, result=self._miss_result())

    @on([State.AWAITING_REPLY, State.RELAYING], ev.TimedOut, to=(State.SERVING_STORED,))
    def _timed_out(self, event: ev.TimedOut) -> None:
        """read_timeout: the origin stopped sending."""
        self._upstream_failed(ev.UpstreamFailed("ERR_READ_TIMEOUT", "the server did not answer within read_timeout",
                                                504))

    @on([State.DONE, State.SERVING_STORED], ev.TimedOut)
    def _drain_timed_out(self, _event: ev.TimedOut) -> None:
        self._require_draining()
        self._drop_upstream()

    @on([State.RELAYING], ev.Upgraded, to=(State.TUNNEL,))
    def _upgraded(self, event: ev.Upgraded) -> None:
        """A 101 reply was passed on: the two connections become a tunnel."""
        self.upstream = None
        self.entry.upstream_bytes_in += event.bytes_in
        if self.upstream_started is not None:
            self.entry.upstream_time = self.shared.now() - self.upstream_started
        self.state = State.TUNNEL
        self._emit(c.StartTunnel(event.rest))

    @on([State.TUNNEL], ev.TunnelEnded)
    def _tunnel_ended(self, event: ev.TunnelEnded) -> None:
        e = self.entry
        e.reply_body_size += event.bytes_down
        e.request_body_size += event.bytes_up
        e.upstream_bytes_in += event.bytes_down
        e.upstream_bytes_out += event.bytes_up
        self.keep_alive = False
        self.finish()

    def _drop_upstream(self) -> None:
        """Reset the origin's connection, if any: what it still sends is unwanted."""
        if self.upstream is not None:
            if self.upstream != "connecting":
                self._emit(c.AbortUpstream)
            self.upstream = None
        self._stop_teeing()

    def _stop_teeing(self) -> None:
        role = self.cache
        if role is not None and role.teeing:
            role.teeing = False
            self._emit(c.StoreDiscard)

    # ------------------------------------------------------------ the end
    @on(BEFORE_DONE, type(ev.ClientGone))
    def _client_gone(self, _event) -> None:
        """The client went away before the exchange ended."""
        if self.state is State.TUNNEL:
            return      # the tunnel logs when it ends
        if self.state is State.IDLE:
            self.state = State.DONE
            return      # never started: nothing to log
        self._drop_upstream()
        e = self.entry
        if not e.result.endswith("_ABORTED"):
            e.result += "_ABORTED"
        self.keep_alive = False
        self.finish()

    @on([State.DONE], type(ev.ClientGone))
    def _gone_after_done(self, _event) -> None:
        """Nothing left to do."""

    def finish(self) -> None:
        if self.state is State.DONE:
            return
        self.state = State.DONE
        self.entry.end = self.shared.now()
        role = self.cache
        if role is not None:
            self._stop_teeing()
            if role.leader:
                role.leader = False
                self._emit(c.ReleaseFetch(role.key))
        if not self.background:
            self._emit(c.Log(self.entry, self.checklist))
        self._emit(c.Finished(self.keep_alive))
