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

import copy
import dataclasses
import enum
import html
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from squidpy import intercept
from squidpy.acl.access import matches
from squidpy.acl.auth_types import is_auth_acl
from squidpy.acl.checklist import UNDECIDED, AuthRequired, Checklist, ExternalPending, Pending, Undecided
from squidpy.acl.indirect import IndirectClient
from squidpy.acl.outgoing import Bind, outgoing_addresses, outgoing_to
from squidpy.auth import decide as auth
from squidpy.cache import policy
from squidpy.delay import select as select_delay_pool
from squidpy.cache.quick_abort import QuickAbort, keeps_fetching
from squidpy.errors import STATUS, ErrorContext
from squidpy.exchange import commands as c
from squidpy.exchange import events as ev
from squidpy.exchange.caching import CacheRole, Found, OnReply
from squidpy.helpers.external import GRACE
from squidpy.helpers.protocol import BH, ERR, OK, TIMEDOUT, UNKNOWN
from squidpy.helpers.rewrite import REDIRECT, REWRITE, store_id_decision, url_rewrite_decision
from squidpy.helpers.state import MAX_REQUEST_LINE, STORE_ID, URL_REWRITE, external_helper
from squidpy.http import message
from squidpy.http.message import CHUNKED, CLOSE, INVALID, LENGTH, NO_BODY, RequestHead, ResponseHead, field
from squidpy.http.upgrade import switch_refusal
from squidpy.http.url import (BadTarget, Target, addressed_to_proxy, for_proxy, internal_target, parse_target,
                              same_origin_resolver, with_domain)
from squidpy.log.entry import LogEntry
from squidpy.mgr import internal, pages
from squidpy.mgr.actions import needs_of
from squidpy.mgr.request import (
    ManagerError, ManagerRequest, is_metrics, manager_base, manager_request, password_ok,
)
from squidpy.peers.forwarding import NO_CANDIDATE, REOPEN_PAUSE, Forwarding, reopens
from squidpy.peers.peer import SIBLING, login_fields
from squidpy.peers.selection import HIER_DIRECT, TIMEOUT_PREFIX, PeerSelector, Ping, RequestFacts, is_hierarchical

if TYPE_CHECKING:
    from cryptography import x509

    from squidpy.acl.access import AccessList, Verdict
    from squidpy.cache.store import CachedReply
    from squidpy.exchange.bumping import BumpedInfo, BumpRole
    from squidpy.exchange.shared import Shared
    from squidpy.helpers.protocol import Reply
    from squidpy.helpers.state import HelperState
    from squidpy.http.message import Fields
    from squidpy.intercept import HostCheck
    from squidpy.log.logformat import LogFormat
    from squidpy.peers.peer import CachePeer
    from squidpy.peers.selection import Destination, Selected
    from squidpy.tls.options import PortTls
    from squidpy.tls.session import TlsFacts

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
CONNECTION_ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
MAX_BUFFERED_BODY = 256 * 1024     # request body held while connecting, before reading pauses
MULTIRANGE_READ_LIMIT = 8 << 20     # several ranges of a disk object are cut from it in memory up to this
REPLACED_ON_PARTS = frozenset({b"content-length", b"content-range"})   # a 304/206/416 from a stored 200
RANGE_FIELDS = frozenset({b"range", b"if-range", b"request-range"})      # left out when the whole is fetched
CLOSE_AFTER = frozenset({
    "ERR_INVALID_REQ", "ERR_INVALID_URL", "ERR_UNSUP_REQ", "ERR_UNSUP_HTTPVERSION", "ERR_TOO_BIG",
    "ERR_LIFETIME_EXP",
})


class State(enum.Enum):
    IDLE = "waiting for its turn (pipelined); its body may already arrive"
    VERIFYING_HOST = ("an intercepted request's Host (or a spliced connection's SNI) is being looked up (is it the "
                      "address the client connected to?)")
    CHECKING = "an ACL needs a fact that is being looked up (DNS, credentials, an external ACL helper)"
    REWRITING = "the URL rewriter or the store-ID helper is being asked"
    CACHE_LOOKUP = "the store is being asked"
    COLLAPSED = "waiting for another exchange's fetch of the same URL"
    PURGING = "the store is removing the URL"
    SELECTING = "peer selection waits for a fact (always_direct/never_direct) or ICP replies"
    CONNECTING = "a connection to the origin (or a peer) is being made"
    AWAITING_REPLY = "the request went upstream; no final reply head yet"
    RELAYING = "the origin's reply streams to the client"
    SERVING_STORED = "a stored body streams from disk"
    BUMP_CLIENT_HELLO = "SslBump: reading the client's TLS hello (step 2)"
    BUMP_SERVER = "SslBump: the server's TLS hello or handshake is in (step 3); ssl_bump may need a fact"
    BUMP_CLIENT_TLS = "SslBump: the client's TLS handshake with a minted certificate"
    TUNNEL = "bytes pass untouched both ways (CONNECT, 101)"
    COLLECTING = "the cache manager's or /metrics' figures are gathered (from every kid under workers)"
    DONE = "answered and logged"

    index: int      # its row in _DISPATCH (set below)


for _n, _state in enumerate(State):
    _state.index = _n       # its row in _DISPATCH


# where an exchange may go once a looked-up fact (or a helper's answer) lets its checks go on
AFTER_A_FACT = (State.CHECKING, State.REWRITING, State.SELECTING, State.CONNECTING, State.CACHE_LOOKUP,
                State.PURGING, State.COLLAPSED, State.SERVING_STORED, State.BUMP_CLIENT_HELLO, State.COLLECTING)
_PRIVATE_NOTES = frozenset({"password", "token", "ha1"})     # helper keys that never reach a log
_CALLOUT_KEYS = frozenset({"url", "rewrite-url", "status", "store-id", "message"})
_HANDSHAKE_SCHEMES = {"negotiate": "Negotiate", "ntlm": "NTLM"}
_RESULT_WORDS = {TIMEDOUT: "Timeout"}


def _handshake_failure(scheme: str, reply: Reply) -> str:
    """Squid's cache_log line when a Negotiate or NTLM helper could not check the
    client's token (BH: an expired ticket, one made with another key...): the reply as
    Squid prints it, without the notes that may carry credentials."""
    notes = "".join(f"{k}: {v}; " for k, v in reply.notes if k not in _PRIVATE_NOTES)
    shown = f"{{result={_RESULT_WORDS.get(reply.result, reply.result)}" + (f", notes={{{notes}}}" if notes else "")
    return f"ERROR: {_HANDSHAKE_SCHEMES[scheme]} Authentication validating user. Result: {shown}}}"


class IllegalEvent(RuntimeError):
    """An event that cannot happen in the exchange's state: a bug in the driver."""


class ClientInfo:
    """The client connection as the exchange sees it (plain data, updated by the
    connection: ``closing`` once no further request will be read).  ``port_tls``: the
    port's TLS settings (squidpy.tls.options.PortTls) when it has any; ``bumped``: what
    SslBump learnt, on a connection that now carries HTTP inside TLS.

    On an interception port (``interception`` is "intercept" or "tproxy") the local
    address is the original destination, the address the client connected to, as
    in Squid (the localip/localport ACLs and %la/%lp see it); ``to_proxy``: the
    client connected to the interception port itself, not redirected to it."""

    __slots__ = ("client_ip", "client_port", "local_ip", "local_port", "port_name", "closing", "metrics_port",
                 "notes", "auth", "port_tls", "bumped", "client_cert", "tls", "interception", "to_proxy")

    def __init__(self, client_ip: str, client_port: int, local_ip: str, local_port: int, port_name: str = "",
                 port_tls: PortTls | None = None, bumped: BumpedInfo | None = None, metrics_port: bool = False,
                 interception: str | None = None, to_proxy: bool = False) -> None:
        self.client_ip = client_ip
        self.client_port = client_port
        self.local_ip = local_ip
        self.local_port = local_port
        self.port_name = port_name
        self.closing = False
        self.metrics_port = metrics_port    # a metrics_port: /metrics only, nothing is forwarded
        self.notes: list[tuple[str, str]] | None = None           # annotate_client ACLs' annotations: a list once one is made
        self.auth: auth.ConnectionAuth | None = None    # Negotiate/NTLM on this connection
        self.port_tls = port_tls
        self.bumped = bumped
        self.client_cert: x509.Certificate | None = None    # the one a client of an https_port presented
        self.tls: TlsFacts | None = None    # once the client speaks TLS to us
        self.interception = interception
        self.to_proxy = to_proxy


HTTP_ACCESS = "http_access"


class ConnectTiming(TypedDict, total=False):
    """A reopen's connect_retries pause and what connect_timeout leaves it (Connect's
    ``delay`` and ``timeout``)."""

    delay: float
    timeout: float


class Serving(TypedDict):
    """A disk hit being streamed: what remains to do."""

    result: str
    age: float
    ranges: list[tuple[int, int]] | None    # the Range asked for, when it is answered
    window: tuple[int, int] | None          # the one range read from disk
    head: bytes | None                      # the reply head, once sent
    parts: list[bytes] | None               # several ranges: the body, gathered


class Callout:
    """What an exchange keeps while helpers decide about it: made only for a request
    that meets one (credentials, an external ACL, the rewriter), so others allocate
    nothing."""

    __slots__ = ("helpers", "phase", "waiting", "host", "store_id")

    def __init__(self, helpers: HelperState | None) -> None:
        self.helpers = helpers       # the HelperState when helpers first met this request (a reconfigure
                                     # may replace the shared one: this request keeps its own)
        self.phase = HTTP_ACCESS     # the list being checked: http_access, url_rewrite or store_id
        self.waiting: auth.Outcome | tuple[str, str] | None = None   # what the awaited answer is for:
                                     # an auth Outcome or (external ACL type, line)
        self.host: str | None = None     # url_rewrite_host_header off: the authority the client asked for
        self.store_id: str | None = None     # the cache key a store-ID helper gave


Handler = Callable[..., None]
"""A transition: Exchange method (or a role's function) taking the event."""
_H = TypeVar("_H", bound=Handler)

# (state, event type) -> (handler, the states it may lead to); filled by @on below.
TRANSITIONS: dict[tuple[State, type], tuple[Handler, frozenset[State]]] = {}
ANY_STATE = tuple(State)
BEFORE_DONE = tuple(s for s in State if s is not State.DONE)


# The same, for dispatch: per state (by its position in State), event type -> (handler, tuple
# of allowed next states); a tuple and a list index, because hashing an Enum member runs
# Python code and this is the hot path of every request.
_DISPATCH: list[dict[type, tuple[Handler, tuple[State, ...]]]] = [{} for _ in State]
_INDEX = {state: n for n, state in enumerate(State)}


def on(states: Iterable[State], *event_types: type, to: Iterable[State] = ()) -> Callable[[_H], _H]:
    """Declare a handler for ``event_types`` in ``states``; ``to``: where it may lead
    (besides staying and DONE)."""
    def register(handler: _H) -> _H:
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
    upstream: str | None = None         # None, "connecting", "open", "draining", "storing"
    target: Target | None = None
    checklist: Checklist | None = None
    upgrade_offer: bytes | None = None  # what http_upgrade_request_protocols let through
    indirect: IndirectClient | None = None   # follow_x_forwarded_for's walk, while under way
    bind: Bind | None = None            # tcp_outgoing_address's local addresses
    source: str | None = None           # tproxy: the client's address, to connect from (spoof_client_ip)
    connect_after_lookup = False        # connecting once the origin's addresses are known (tcp_outgoing_address)
    body_buffer: list[bytes] | None = None   # the body held until the request goes upstream
    buffered = 0
    refusal: tuple[str, str, int] | None = None
    intercepted_tls = False             # the CONNECT an intercepting https_port makes of a connection (no bytes sent it)
    response: ResponseHead | None = None
    framing = NO_BODY
    reply_started = False
    reply_limit = 0
    reused = False
    tunnel = False                      # the connection being made is for CONNECT
    upgrading = False
    upstream_started: float | None = None
    cache: CacheRole | None = None
    serving: Serving | None = None      # a disk hit being streamed: what remains to do
    waited = False                      # it already waited once for a collapsed fetch
    manager: ManagerRequest | None = None   # a cache manager request being answered
    selector: PeerSelector | None = None    # with cache_peer lines: where it may go, in order
    selected: Selected | None = None    # the candidates selection found
    destination: Destination | None = None  # the candidate being tried (None: straight to the origin)
    forwarding: Forwarding | None = None
    attempts = 0                        # connections asked for (the events of one read belong to one)
    callout: Callout | None = None      # what helpers decide about it (only when they do)
    host_verified = False               # the Host passed verification (interception, host_verify_strict)
    original_dst = False                # it goes to the address the client connected to (interception)
    redirected = False                  # the URL rewriter gave it another URL (Squid's flags.redirected)
    _head_cmd: c.SendToClient | None = None
    bump: BumpRole | None = None        # a CONNECT being bumped
    range_limit: int | None = None      # range_offset_limit for this Range request (None: not looked at)
    whole_for_range = False             # its Range was left out upstream: the whole object is fetched
    sliced: list[int] | None = None     # [first, last, sent]: the one range of the whole reply relayed
    connect_failures = 0                # connect_retries: failed opens of the destination being tried
    connect_deadline = 0.0              # when connect_timeout ends for the destination being tried

    def __init__(self, shared: Shared, client: ClientInfo, head: RequestHead, started: float,
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
        self.keep_alive = head.keep_alive and self.config.client_persistent_connections
        self._out: list[c.Command] = []

    def __repr__(self) -> str:
        return f"<Exchange {self.head.method} {self.entry.url} {self.state.name}>"

    # ------------------------------------------------------------ the machine
    def handle(self, event: ev.Event) -> list[c.Command]:
        """Feed one event; returns the commands to carry out, in order."""
        out: list[c.Command] = []
        self._out = out
        self._dispatch(event)
        self._head_cmd = None
        return out

    def handle_all(self, events: list[ev.Event]) -> list[c.Command]:
        """Feed the events one read of the origin produced.  Until the batch ends
        nothing has been sent, so a reply head found faulty later in the same read
        can still be replaced by an error page.  Once the exchange lets go of the
        origin's connection, the rest of the batch is not for it."""
        out: list[c.Command] = []
        self._out = out
        attempts = self.attempts
        for event in events:
            if type(event) in UPSTREAM_EVENTS and (self.upstream is None or self.attempts != attempts):
                break       # it let go of that connection (or moved on to another candidate)
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
        to=(State.VERIFYING_HOST, State.CHECKING, State.REWRITING, State.SELECTING, State.CONNECTING,
            State.CACHE_LOOKUP, State.PURGING, State.COLLAPSED, State.SERVING_STORED, State.BUMP_CLIENT_HELLO,
            State.COLLECTING))
    def _start(self, _event: ev.Event) -> None:
        if self.refusal is not None:
            return self.fail(*self.refusal)
        head, e = self.head, self.entry
        if head.version == "0.9" or not head.version.startswith("1."):
            if head.version.startswith(("2.", "3.")):
                return self.fail("ERR_UNSUP_HTTPVERSION", f"HTTP/{head.version} is not spoken here", 505)
            return self.fail("ERR_INVALID_REQ", f"HTTP/{head.version} requests are not accepted")
        client = self.client
        bumped = client.bumped
        try:
            if client.interception is None or bumped is not None:
                target = parse_target(head.method, head.target)
                if bumped is not None and target.kind == "origin":     # inside a bumped connection
                    target = parse_target(head.method, bumping.inner_url(bumped, head, target.path))
                self.target = target = with_domain(target, self.config.append_domain)
                if client.interception is not None:     # bumped after interception: where did it connect?
                    verdict = intercept.verify_target(target, client.local_ip, client.local_port,
                                                      self.shared.cached_addresses)
            else:
                target, verdict = intercept.intercepted_request(
                    head.method, head.target, head.host, client.local_ip, client.local_port,
                    self.shared.cached_addresses)
                self.target = target
        except BadTarget as bad:
            e.url = head.target[:2048]
            return self.fail(bad.error, bad.detail, bad.status)
        shared, client = self.shared, self.client
        if target.kind == "origin":     # addressed to the proxy itself: checked like any request
            port = client.local_port if client.metrics_port else shared.my_port
            self.target = target = internal_target(target.path, shared.visible_hostname, port)
        elif target.kind != "internal" and client.interception is None and (client.metrics_port or (
                # only a URL on one of our ports can name us (most name port 80 or 443)
                (target.port == client.local_port or target.port == shared.my_port) and addressed_to_proxy(
                    target, shared.hostnames, shared.my_port, client.local_ip, client.local_port,
                    shared.cached_addresses))):
            if client.metrics_port:
                e.url = target.url
                return self.fail("ERR_INVALID_URL", "this port serves /metrics only: it forwards nothing", 404,
                                 result="TCP_MISS")
            self.target = target = for_proxy(target)    # answered here, never forwarded to ourselves
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
        if limit and framing.kind == LENGTH and framing.length > limit:  # type: ignore[operator]  # LENGTH has one
            return self.fail("ERR_TOO_BIG", "the request body is larger than request_body_max_size", 413)
        if head.method == "CONNECT" and framing.has_body:
            return self.fail("ERR_INVALID_REQ", "a CONNECT request cannot have a body")
        if client.to_proxy and self.intercepted_tls:
            return self._reset_intercepted("TCP_DENIED")
        if client.to_proxy:
            return self.fail("ERR_ACCESS_DENIED", "this request was sent to the proxy's interception port itself, "
                             "not redirected to it: its destination is this proxy, and forwarding it would loop",
                             403, result="TCP_DENIED")
        self.checklist = self._checklist(target)
        if bumped is not None and bumping.answer_for_bumped(self, bumped):
            return
        if head.forwarded_for and self.config.follow_x_forwarded_for.rules:
            self.indirect = IndirectClient(self.client.client_ip, head.forwarded_for)
        if client.interception is not None:
            return self._verify_host(verdict)
        if self.config.host_verify_strict and target.kind != "internal":
            return self._host_checked(intercept.verify_forwarded(head.host, head.method, target))
        self._check()

    # ------------------------------------------------------------ Host verification (CVE-2009-0801)
    def _verify_host(self, verdict: HostCheck | str) -> None:
        """Squid's hostHeaderVerify, before http_access: an intercepted request's Host
        must resolve to the address the client connected to (``verdict``, from
        intercept.intercepted_request: a name means its addresses must be looked up)."""
        if verdict is intercept.VERIFIED:
            self.host_verified = True
            return self._check()
        if isinstance(verdict, str):
            self.state = State.VERIFYING_HOST
            return self._emit(c.LookUp("host", verdict))
        self._host_checked(verdict)

    @on([State.VERIFYING_HOST], ev.FactKnown, to=AFTER_A_FACT)
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
                                                 message.field(head.headers, b"user-agent"), self.entry.url):
                self._emit(c.Report("warning", line))
            if self.bump is not None:   # a splice's second CONNECT: Squid refuses it before it logs a bump mode
                self.entry.bump_mode = None
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
        ch.to_proxy = target.kind == "internal"
        ch.connection = client
        if client.notes:
            ch.notes = list(client.notes)   # each request starts with its connection's annotations
        ch.entry = self.entry               # hier_code and squid_error ACLs read what the log will say
        helpers = self.shared.helpers
        if helpers is not None and helpers.auth is not None:
            # a function of the checklist, never a method of this exchange: that would be a
            # reference cycle (exchange, checklist, exchange), and every request's objects
            # would wait for the garbage collector instead of going when the request does
            ch.authenticate = partial(_known_credentials, helpers, helpers.auth, client, self.entry, head)
        if target.ip_literal:           # a known name spares dstdomain ACLs a lookup round
            ch.dst_name = self.shared.cached_name(target.host)
        if client.bumped is not None:
            bumping.tls_facts(ch, self.entry, client.bumped)
        if client.client_cert is not None:
            ch.client_cert = self.entry.client_cert = client.client_cert
            self.entry.user_ssl = bumping.certificate_user(client.client_cert)
        if client.tls is not None:
            self.entry.client_tls = client.tls
            ch.client_encrypted = True
        if client.interception is not None and self.config.client_dst_passthru:
            ch.dst = [client.local_ip]  # dst ACLs match where the request goes: the original destination
        return ch

    def _check(self) -> None:
        """http_access (after follow_x_forwarded_for found the indirect client); an
        ACL that needs a fact not known yet makes us look it up (or check the
        credentials, or ask an external ACL helper)."""
        if self.indirect is not None and not self._follow_x_forwarded_for():
            return
        ch = self.checklist
        assert ch is not None, "_start made the checklist before the first check"
        try:
            verdict = self.config.http_access.check(ch)
        except Pending as p:
            return self._look_up(p)
        except AuthRequired as needed:
            assert needed.acl is not None, "the access list names the ACL that ended its check"
            return self._deny_as(needed.acl.name, auth_required=True)
        except Undecided as failed:
            assert failed.acl is not None, "the access list names the ACL that ended its check"
            return self._deny_as(failed.acl.name)
        if not verdict.allowed:
            return self.deny(verdict, self.config.http_access)
        self._checked()

    def _follow_x_forwarded_for(self) -> bool:
        """Find the indirect client (follow_x_forwarded_for); False while a lookup it
        needs is under way."""
        walk, ch, config = self.indirect, self.checklist, self.config
        assert walk is not None and ch is not None, "_check calls it while the walk is under way"
        try:
            walk.run(config.follow_x_forwarded_for, ch, self._test_client)
        except Pending as p:
            self._look_up(p)
            return False
        self.indirect = None
        if config.log_uses_indirect_client:
            self.entry.client_ip = walk.address
        self._test_client(walk.address if config.acl_uses_indirect_client else self.client.client_ip)
        return True

    def _test_client(self, address: str) -> None:
        """ACLs test ``address`` as the client (its own connection count for maxconn)."""
        ch = self.checklist
        assert ch is not None, "follow_x_forwarded_for runs after _start made the checklist"
        if ch.src != address:
            ch.set_src(address)
            ch.client_connections = self.shared.connections_from(address)

    def _recheck(self) -> None:
        """A fact arrived: ask again the access list that waited for it."""
        callout = self.callout
        if callout is None or callout.phase == HTTP_ACCESS:
            return self._check()
        if callout.phase == URL_REWRITE:
            return self._rewrite()
        self._store_id()

    def _look_up(self, pending: Pending) -> None:
        fact = pending.fact
        if fact == "auth":
            return self._authenticate()
        if isinstance(pending, ExternalPending):     # (fact "external")
            return self._external(pending)
        if self._need(fact):
            return self._recheck()
        self.state = State.CHECKING

    def _need(self, fact: str) -> bool:
        """A DNS fact an ACL needs: True when it is known at once (set on the checklist),
        else a LookUp is emitted and FactKnown will bring it."""
        target, ch = self.target, self.checklist
        assert target is not None and ch is not None
        if fact == "dst":
            if target.ip_literal:
                ch.dst = [target.host]
                return True
            cached = self.shared.cached_addresses(target.host)
            if cached is not None:
                ch.dst = cached
                return True
            name = target.host
        elif fact == "dst_name":
            name = target.host
        elif fact == "src_name":
            name = ch.src
        else:
            raise RuntimeError(f"no lookup for ACL fact {fact!r}")
        self._emit(c.LookUp(fact, name))
        return False

    @on([State.CHECKING], ev.FactKnown, to=AFTER_A_FACT)
    def _fact_known(self, event: ev.FactKnown) -> None:
        ch = self.checklist
        assert ch is not None, "a fact is looked up for the checklist _start made"
        setattr(ch, event.fact, event.value)
        if event.fact == "dst" and event.seconds:
            self.entry.dns_time = (self.entry.dns_time or 0) + event.seconds
        if self.connect_after_lookup:   # tcp_outgoing_address waited for the origin's addresses
            self.connect_after_lookup = False
            self.bind = outgoing_addresses(self.config.tcp_outgoing_address, ch)
            return self._open(False)
        self._recheck()

    def _callout(self) -> Callout:
        callout = self.callout
        if callout is None:
            callout = self.callout = Callout(self.shared.helpers)
        return callout

    # ------------------------------------------------------------ proxy authentication
    def _authenticate(self) -> None:
        """An authentication ACL needs the credentials: read them (the user cache
        answers most requests at once), or ask the scheme's helper."""
        callout = self._callout()
        helpers = callout.helpers
        if helpers is None or helpers.auth is None:
            # a reconfigure removed auth_param while this request was under way: no
            # credentials can be checked, so none are valid (denied, never let through)
            return self._authenticated(auth.Outcome(auth.NONE))
        authenticator = helpers.auth
        head, client = self.head, self.client
        conn = client.auth
        if conn is None and helpers.stateful:
            conn = client.auth = auth.ConnectionAuth()
        value = head.proxy_authorization
        language = message.field_text(head.headers, b"accept-language") if helpers.reads_language else None
        outcome = authenticator.examine(value, head.method, language, conn, helpers.key_extras_of(self.entry))
        if outcome.kind != auth.ASK:
            return self._authenticated(outcome)
        scheme, line = outcome.scheme, outcome.line
        assert scheme is not None and line is not None, "an ASK outcome names its scheme and the helper's line"
        callout.waiting = outcome
        self.state = State.CHECKING
        reservation = conn.child if conn is not None and scheme == conn.scheme else None
        self._emit(c.AskHelper(scheme, line, reservation))

    def _auth_answered(self, outcome: auth.Outcome, event: ev.HelperAnswered) -> None:
        callout = self.callout
        assert callout is not None, "the helper was asked for this request's credentials"
        helpers, conn = callout.helpers, self.client.auth
        if helpers is None or helpers.auth is None:     # a reconfigure removed auth_param meanwhile
            return self._authenticated(auth.Outcome(auth.NONE))
        authenticator = helpers.auth
        reply = event.reply
        scheme = outcome.scheme
        if scheme in _HANDSHAKE_SCHEMES and reply.result in (BH, TIMEDOUT, UNKNOWN):
            self._emit(c.Report("error", _handshake_failure(scheme, reply)))
        final = authenticator.answered(outcome, reply.result, reply.notes, self.head.method, conn, event.child)
        if conn is not None and scheme in ("negotiate", "ntlm") and event.child is not None:
            if final.kind != auth.HANDSHAKE:
                self._emit(c.ReleaseHelper(scheme, event.child))
            elif self.keep_alive and not self.client.closing:
                self._emit(c.ReserveHelper(scheme, event.child))
            else:
                # the handshake goes on over this connection only, which is about to close
                conn.child = conn.scheme = None
                final = auth.Outcome(auth.REFUSED, scheme, close=True,
                                     message=f"{scheme} authentication requires a persistent connection")
        self._authenticated(final)

    def _authenticated(self, outcome: auth.Outcome) -> None:
        """The credentials are known good, bad, missing or unreadable: the ACLs decide."""
        ch, callout = self.checklist, self.callout
        assert ch is not None and callout is not None, "an authentication ACL met it: _authenticate ran"
        _note_credentials(ch, outcome, callout.helpers, self.entry, self.client)
        self._recheck()

    # ------------------------------------------------------------ external ACLs
    def _external(self, pending: ExternalPending) -> None:
        """An external ACL needs its helper's answer: from the result cache (refreshed
        in the background within its grace period), else from the helper."""
        callout = self._callout()
        helpers, ch = callout.helpers, self.checklist
        assert ch is not None, "an external ACL met it: _start made the checklist"
        name, line = pending.type_name, pending.line
        key = (name, line)
        if helpers is None or (results := helpers.external.get(name)) is None:
            # a reconfigure removed this external_acl_type while the request was under way
            ch.external[key] = (BH, [("message", f"external_acl_type {name} is gone")])
            return self._recheck()
        freshness, cached = results.lookup(line, self.shared.now())
        if cached is not None:
            ch.external[key] = (cached.result, cached.notes)
            if freshness == GRACE and helpers.start_refresh(name, line):
                self._emit(c.RefreshExternal(name, line))
            return self._recheck()
        helper = external_helper(name)
        if helpers.will_overload(helper):
            self._emit(c.Report("warning", f"WARNING: external ACL '{name}' queue full. Request rejected."))
            ch.external[key] = (BH, [("message", "SYSTEM TOO BUSY, TRY AGAIN LATER")])
            return self._recheck()
        callout.waiting = key
        self.state = State.CHECKING
        self._emit(c.AskHelper(helper, line))

    @on([State.CHECKING], ev.HelperAnswered, to=AFTER_A_FACT)
    def _acl_helper_answered(self, event: ev.HelperAnswered) -> None:
        """Credentials checked, or an external ACL answered: the ACLs decide again."""
        callout, ch = self.callout, self.checklist
        assert callout is not None and ch is not None, "CHECKING for a helper: _authenticate or _external asked it"
        waiting, callout.waiting = callout.waiting, None
        if isinstance(waiting, tuple):
            name, line = waiting
            if event.helper != external_helper(name):
                raise IllegalEvent(f"{event.helper} answered while {name} was asked ({self!r})")
            reply = event.reply
            ch.external[waiting] = (reply.result, reply.notes)
            helpers = callout.helpers
            results = helpers.external.get(name) if helpers is not None else None
            if results is not None:
                results.store(line, reply.result, reply.notes, self.shared.now())
            return self._recheck()
        if waiting is None or event.helper != waiting.scheme:
            raise IllegalEvent(f"{event.helper} answered, not asked ({self!r})")
        self._auth_answered(waiting, event)

    # ------------------------------------------------------------ after http_access
    def _checked(self) -> None:
        """http_access allowed the request: the rewriter and the store-ID helper, if any,
        then on."""
        target = self.target
        assert target is not None, "_start set the target before http_access"
        if target.kind == "internal":
            return self._serve_internal()
        callout = self.callout
        helpers = self.shared.helpers if callout is None else callout.helpers
        if helpers is not None and helpers.callouts:
            self._callout().phase = URL_REWRITE if helpers.rewriter else STORE_ID
            return self._recheck()
        self._forward()

    def _allowed_by(self, access_list: AccessList) -> bool | None:
        """url_rewrite_access / store_id_access (no lines: all); None while a fact is
        being looked up.  A check that ends without an answer skips the helper."""
        if not access_list:
            return True
        ch = self.checklist
        assert ch is not None, "after http_access: _start made the checklist"
        try:
            return access_list.check(ch).allowed
        except Pending as p:
            self._look_up(p)
            return None
        except (AuthRequired, Undecided):
            return False

    def _rewrite(self) -> None:
        config = self.config
        allowed = self._allowed_by(config.url_rewrite_access)
        if allowed is None:
            return
        helpers = self._callout_helpers()
        if allowed and config.url_rewrite_bypass and helpers.will_overload(URL_REWRITE):
            allowed = False             # every rewriter is busy: the URL stays as it is
        if not allowed:
            return self._rewritten()
        self._ask_callout(URL_REWRITE, helpers.rewrite_extras)

    def _rewritten(self) -> None:
        if self._callout_helpers().store_ids:
            self._callout().phase = STORE_ID
            return self._store_id()
        self._forward()

    def _store_id(self) -> None:
        config = self.config
        allowed = self._allowed_by(config.store_id_access)
        if allowed is None:
            return
        helpers = self._callout_helpers()
        if allowed and config.store_id_bypass and helpers.will_overload(STORE_ID):
            allowed = False
        if not allowed:
            return self._forward()
        self._ask_callout(STORE_ID, helpers.store_id_extras)

    def _callout_helpers(self) -> HelperState:
        """The helpers of a request past http_access whose url_rewrite or store_id phase
        began (_checked found a rewriter or a store-ID helper)."""
        callout = self.callout
        assert callout is not None and callout.helpers is not None, "a url_rewrite or store_id phase"
        return callout.helpers

    def _ask_callout(self, helper: str, extras: LogFormat | None) -> None:
        """The request line is the URL, then the extras (logformat codes)."""
        target = self.target
        assert target is not None, "_start set the target before http_access"
        line = target.url
        if extras is not None:
            more = extras.format(self.entry)
            if more:
                line = f"{line} {more}"
        if len(line) >= MAX_REQUEST_LINE or "\n" in line or "\r" in line:
            self._emit(c.Report("error", f"ERROR: Gateway Failure. Request passed to the {helper} helper "
                                         f"exceeds {MAX_REQUEST_LINE} bytes or is not one line. Request ABORTED."))
            return self.fail("ERR_GATEWAY_FAILURE", f"the request is too long for the {helper} helper", 414)
        self.state = State.REWRITING
        self._emit(c.AskHelper(helper, line))

    @on([State.REWRITING], ev.HelperAnswered, to=(State.CHECKING, *AFTER_A_FACT))
    def _callout_answered(self, event: ev.HelperAnswered) -> None:
        reply = event.reply
        callout, ch, target = self.callout, self.checklist, self.target
        assert callout is not None and ch is not None and target is not None, "_ask_callout asked it"
        phase = callout.phase
        if event.helper != phase:
            raise IllegalEvent(f"{event.helper} answered while {phase} was asked ({self!r})")
        notes = [kv for kv in reply.notes if kv[0] not in _CALLOUT_KEYS]
        if notes:
            ch.notes.extend(notes)
        if phase == URL_REWRITE:
            return self._rewrite_answered(reply)
        store_id = store_id_decision(reply)
        if reply.result not in (OK, ERR):
            self._emit(c.Report("error", f"ERROR: storeID helper: {reply.result}"))
        if store_id is not None and store_id != target.url:
            callout.store_id = store_id
        self._forward()

    def _rewrite_answered(self, reply: Reply) -> None:
        """Squid's clientRedirectDone: rewrite the URL, redirect the client, or go on."""
        if reply.result == TIMEDOUT:
            timeout = self.config.url_rewrite_timeout
            if timeout is None or timeout.action != "bypass":
                self._emit(c.Report("error", "ERROR: URL rewrite helper: Timedout"))
                return self.fail("ERR_GATEWAY_FAILURE", "the URL rewriter did not answer in time", 500)
            return self._rewritten()
        if reply.result == BH:
            self._emit(c.Report("error", f"ERROR: URL rewrite helper: {reply.message or 'BH'}"))
        elif reply.result == UNKNOWN and not reply.other:
            self._emit(c.Report("error", "ERROR: URL rewrite helper returned invalid result code. Wrong helper?"))
        decision = url_rewrite_decision(reply)
        if decision.problem:
            self._emit(c.Report("error", decision.problem))
        url = decision.url
        if decision.kind == REDIRECT:
            assert url is not None and decision.status is not None, "a redirect has its status and URL"
            self.entry.result = "TCP_REDIRECT"
            return self.send_local(decision.status, None, b"", [(b"Location", url.encode("latin-1", "replace"))])
        if decision.kind == REWRITE:
            assert url is not None, "a rewrite has its URL"
            self._retarget(url)
        self._rewritten()

    def _retarget(self, url: str) -> None:
        """``OK rewrite-url=``: the request goes to ``url`` instead (and is logged so)."""
        head = self.head
        try:
            target = parse_target(head.method, url)
        except BadTarget:
            target = None
        if target is None or target.kind not in ("absolute", "authority"):
            self._emit(c.Report("error", f"ERROR: URL-rewrite produces invalid request: {head.method} {url} "
                                         f"HTTP/{head.version}"))
            return
        old, callout, ch = self.target, self.callout, self.checklist
        assert old is not None and callout is not None and ch is not None, "the rewriter's answer to _ask_callout"
        if target.url == old.url:
            return
        if not self.config.url_rewrite_host_header and callout.host is None:
            callout.host = old.authority
        self.target = target
        self.redirected = True
        self.entry.url = target.url
        self.entry.path = target.path
        ch.retarget(target.url, target.scheme, target.host, target.port, target.path, target.ip_literal)

    def _forward(self) -> None:
        """Every check is done: answer here, or from the cache, or forward."""
        head, target, ch = self.head, self.target, self.checklist
        assert target is not None and ch is not None, "_start made both before http_access"
        if head.method == "CONNECT":
            if self.bump is not None and self.bump.spliced:     # an intercepted splice's second CONNECT
                return self._go_upstream(tunnel=True)
            if bumping.bumps(self):
                return bumping.step1(self)
            return self._go_upstream(tunnel=True)
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
            self.upgrade_offer = self.config.http_upgrade_request_protocols.allowed_offers(head.upgrade, ch)
        cache = self.shared.cache
        if (cache is not None and head.method in ("GET", "HEAD") and cache.allows(ch)
                # an intercepted request whose Host failed verification neither stores its reply nor is
                # answered from the cache: the reply came from an address the name does not have, and a
                # stored page of that name must not reach a script the same-origin check keeps from it
                # (Squid 5.7 does not store it either, but still serves it stored copies)
                and (self.client.interception is None or self.host_verified)):
            callout = self.callout
            key = callout.store_id or target.url if callout is not None else target.url
            self.cache = role = CacheRole(cache, key, head.method, head.headers, head.cache_fields,
                                          self.background)
            if role.reload:
                # a reload (RFC 9111 5.2.1.4), as Squid 5.7 does it: no lookup, no validators of
                # ours; the origin's reply is logged TCP_MISS and replaces the stored one
                return self._go_upstream()
            return self._look_in_cache()
        self._go_upstream()

    def _serve_internal(self) -> None:
        """A request for the proxy itself, once http_access allowed it: /metrics, the
        cache manager (``cache_object://...``, ``/squid-internal-mgr/...``; the
        ``manager`` ACL lets a configuration guard both, as in Squid), and its own pages."""
        head, client, target = self.head, self.client, self.target
        assert target is not None, "_checked found it internal"
        self.entry.result = "TCP_MISS"
        if is_metrics(target):
            return self._collect("metrics", {})
        if client.metrics_port:
            return self.send_local(404, b"text/plain;charset=utf-8", b"This port serves /metrics only.\n")
        passwords = self.config.cachemgr_passwd
        try:
            request = manager_request(target, head.headers, passwords)
        except ManagerError as e:
            return self.fail("ERR_INVALID_URL", str(e), 404, result="TCP_MISS")
        if request is None:
            page = internal.page(target.path, head.host, client.local_ip, client.local_port,
                                 self.shared.visible_hostname, self.shared.pac)
            return self.send_local(page.status, page.content_type, page.body)
        if not password_ok(request, passwords):
            who = f"{request.user or 'unknown'}@{client.client_ip}"
            why = "incorrect password" if request.password else "password needed"
            self._emit(c.Report("warning", f"cache manager: {who}: {why} for '{request.action}'"))
            realm = request.action.encode("ascii", "replace")
            return self.fail("ERR_CACHE_MGR_ACCESS_DENIED", None, 401, result="TCP_MISS",
                             extra=[(b"WWW-Authenticate", b'Basic realm="%s"' % realm)])
        if request.action == "index":
            body = pages.index(passwords, manager_base(target))
            return self.send_local(200, b"text/html;charset=utf-8", body.encode("utf-8"))
        self.manager = request
        self._collect(request.action, request.params)

    def _collect(self, action: str, params: dict[str, str]) -> None:
        self.state = State.COLLECTING
        self._emit(c.CollectStats(action, needs_of(action), params))

    @on([State.COLLECTING], ev.StatsCollected)
    def _stats_collected(self, event: ev.StatsCollected) -> None:
        """The figures are in: the page is a pure function of them."""
        if self.manager is None:
            from squidpy.mgr import prometheus     # prometheus_client: imported by the first /metrics request
            body, content_type = prometheus.render(event.reports), prometheus.CONTENT_TYPE
        else:
            body, content_type = pages.render(self.manager, event.reports, self.config.cachemgr_passwd)
        expires = message.http_date(self.shared.now())
        self.send_local(200, content_type, body, [(b"Expires", expires), (b"Last-Modified", expires)])

    def _log_helper_facts(self) -> None:
        """What helpers said reaches the log: %ue (user=), %et (tag=), %ea (log=),
        the annotations (%note)."""
        ch, e = self.checklist, self.entry
        if ch is None:
            return
        e.user_external = ch.ext_user
        e.tag = ch.tag
        if ch.notes:
            notes = list(dict.fromkeys(kv for kv in ch.notes if kv[0] not in _PRIVATE_NOTES))
            e.notes = notes
            logged = [v for k, v in notes if k == "log"]
            if logged:
                e.ext_log = logged[-1]

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
        target = self.target
        assert target is not None, "PURGE is forwarded after http_access"
        self.state = State.PURGING
        self._emit(c.Purge(target.url))

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
    def deny(self, verdict: Verdict, access_list: AccessList, result: str = "TCP_DENIED", challenge: bool = True,
             page: str | None = None) -> None:
        """A denial, answered as deny_info says for the ACL that decided it: the last
        ACL of the denying line, or after an implicit deny the last ACL evaluated
        (as in Squid).  ``page``: the page when deny_info names none (None: Squid's
        choice for http_access)."""
        name = verdict.last_acl
        self.entry.denied_by = denial_line(verdict, access_list.name)
        if verdict.implicit:
            ch = self.checklist
            assert ch is not None, "a list that decided checked the checklist _start made"
            steps = access_list.explain(ch)[1]
            name = steps[-1].last_acl if steps else None
        if (self.head.method == "CONNECT" and self.bump is None and page is None
                and not self._by_auth_acl(name)):
            info = self.config.deny_info.get(name) if name else None
            if (info is None or info.kind != "reset") and bumping.bump_to_deny(self, verdict, access_list):
                return      # the page is shown inside TLS
        self._deny_as(name, result, challenge=challenge, page=page)

    def _by_auth_acl(self, name: str | None) -> bool:
        """The deciding ACL is an authentication one (a denial that challenges)."""
        if name is None or self.shared.helpers is None:
            return False
        acl = self.config.acls.get(name)
        return acl is not None and is_auth_acl(acl.matcher)

    def _deny_as(self, name: str | None, result: str = "TCP_DENIED", auth_required: bool = False,
                 challenge: bool = True, page: str | None = None) -> None:
        """Squid's clientAccessCheckDone: credentials are needed, or an authentication
        ACL decided: 407 with a challenge (ERR_CACHE_ACCESS_DENIED); else 403.
        deny_info picks the page (never the 407 itself), and no redirect while
        credentials are needed.  ``page``: the list's own page when deny_info names
        none (miss_access: ERR_FORWARDING_DENIED)."""
        if self.intercepted_tls:
            return self._reset_intercepted(result, 403)
        info = self.config.deny_info.get(name) if name else None
        if auth_required and info is not None and info.kind == "redirect":
            info = None                 # Squid: no 30x while credentials are missing
        by_auth_acl = challenge and not auth_required and self._by_auth_acl(name)
        page = info.value if info is not None and info.kind == "page" else page
        status, page = auth.denial(auth_required, by_auth_acl, page, self.client.bumped is not None)
        if info is None or info.kind == "page":
            if info is not None and info.status:
                status = info.status    # deny_info STATUS:PAGE
            if status == 407:
                return self._challenge(page, status, result)
            return self.fail(page, None, status, result=result)
        self.entry.result = result
        if info.kind == "reset":
            self.entry.status = 0
            self.keep_alive = False
            self._emit(c.AbortClient)
            return self.finish()
        location = self.shared.error_pages.render_url(info.value, self._error_context("ERR_ACCESS_DENIED", None))
        body = (b'<html><body>See <a href="%s">here</a>.</body></html>\n'
                % html.escape(location).encode("latin-1", "replace"))
        self.send_local(info.redirect_status(self.head.method, self.head.version), b"text/html;charset=utf-8", body,
                        [(b"Location", location.encode("latin-1", "replace"))])

    def _challenge(self, page: str, status: int, result: str) -> None:
        """The 407: one Proxy-Authenticate per configured scheme (or the Negotiate/NTLM
        token of a handshake under way).  A failed handshake closes the connection."""
        callout = self.callout
        helpers = callout.helpers if callout is not None else self.shared.helpers
        authenticator = helpers.auth if helpers is not None else None
        if authenticator is None or status != 407:
            return self.fail(page, None, status if authenticator is not None else 403, result=result)
        ch = self.checklist
        assert helpers is not None and ch is not None, "http_access, with its checklist, denied it"
        outcome = ch.auth
        if outcome is not None and outcome.close:
            self.keep_alive = False
        elif (outcome is None or outcome.kind == auth.NONE) and helpers.close_on_first_challenge():
            self.keep_alive = False
        values = authenticator.challenge(outcome)
        extra = [(b"Proxy-Authenticate", v.encode("latin-1", "replace")) for v in values]
        self.fail(page, outcome.message if outcome is not None else None, 407, result=result, extra=extra)

    def fail(self, error: str, detail: str | None, status: int | None = None, result: str = "NONE_NONE",
             server_ip: str | None = None, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        """Answer with the error page ``error`` (if nothing was sent yet) and finish."""
        if self.state is State.DONE:
            return
        e = self.entry
        e.error = error
        e.error_detail = detail
        if self.intercepted_tls:
            return self._reset_intercepted(result, status or STATUS.get(error, 500))
        if error in CLOSE_AFTER or self.client.bumped is not None:
            # Squid closes after a request it could not make sense of, and after any error
            # page inside a bumped connection (Squid 5.7 sends Connection: close there)
            self.keep_alive = False
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
        pages = self.shared.error_pages
        page = pages.page(self._error_context(error, detail, server_ip))
        if page.missing and self.config.error_log_languages:
            for tag in pages.not_reported(page.missing):
                self._emit(c.Report("warning", f"Error Pages Missing Language: {tag}"))
        fields = [(b"X-Squid-Error", f"{error} 0".encode()), *page.fields]
        if extra:
            fields += extra
        self.send_local(status or STATUS.get(error, 500), b"text/html;charset=utf-8", page.body, fields)

    def _reset_intercepted(self, result: str, status: int = 0) -> None:
        """An intercepted TLS connection that is not bumped has nothing a page could be
        shown in (the client speaks TLS to the origin it believes it reached): reset."""
        e = self.entry
        e.result, e.status = result, status
        e.reply_header_size = e.reply_body_size = 0
        self.keep_alive = False
        self._emit(c.AbortClient)
        self.finish()

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
        e, target, head = self.entry, self.target, self.head
        tls = e.tls_failure
        ctx = ErrorContext(
            name=error, url=e.url, method=self.head.method, client_ip=self.client.client_ip,
            server_ip=server_ip or e.server_ip, host=target.host if target else None,
            port=target.port if target else None,
            protocol=(target.scheme.upper() if target else None), detail=detail,
            errno_text=detail if error == "ERR_CONNECT_FAIL" else (tls.errno_text if tls is not None else None),
            dns_error=detail if error == "ERR_DNS_FAIL" else None,
            tls_code=tls.brief() if tls is not None else None,
            accept_language=message.field_text(head.headers, b"accept-language"),
            path=target.path if target else None, version=head.version, request_headers=head.headers,
        )
        ch = self.checklist
        if self.callout is not None and ch is not None:
            ctx.user = e.user
            if ch.auth is not None:
                ctx.auth_message = ch.auth.message
            ctx.external_message = next((v for k, v in reversed(ch.notes) if k == "message"), None)
        return ctx

    def send_local(self, status: int, content_type: bytes | None, body: bytes,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
        """A complete reply made by squidpy itself (no Content-Type when None), then the end."""
        if not self.body_done or (status >= 400 and not self.config.persistent_connection_after_error):
            self.keep_alive = False     # the rest of the request body will not be read; or after an error
        shared = self.shared
        config = self.config
        head = message.local_reply_head(status, content_type, len(body), extra, self.keep_alive,
                                        self.head.version, shared.via_header, shared.x_cache_miss,
                                        shared.now(), message.app_name(config.httpd_suppress_version_string))
        if config.reply_header_access.active:
            head = self._reply_rules(head, status, extra or [])
        e = self.entry
        e.status = status
        e.mime_type = content_type.split(b";")[0].decode() if content_type is not None else None
        e.reply_header_size = len(head)
        e.reply_body_size = 0 if self.head.method == "HEAD" else len(body)
        self.reply_started = True
        self._emit(c.SendToClient(head if self.head.method == "HEAD" or not body else head + body))
        self.finish()

    def _reply_rules(self, head: bytes, status: int, headers: Fields) -> bytes:
        """reply_header_access/replace/add on a reply head about to leave; reply ACLs
        see this reply."""
        ch = self.checklist
        if ch is None:          # refused before its target was known: what the connection tells
            client, request = self.client, self.head
            ch = Checklist(src=client.client_ip, method=request.method, url=self.entry.url,
                           request_headers=request.headers, src_port=client.client_port,
                           local_ip=client.local_ip, local_port=client.local_port, port_name=client.port_name)
            ch.connection = client
            ch.entry = self.entry
        ch.reply_status = status
        ch.reply_headers = headers
        return self.config.reply_header_access.apply(head, ch, self.entry)

    # ------------------------------------------------------------ the cache
    def _look_in_cache(self) -> None:
        """The memory tier answers at once (no I/O); the disk is asked by a command."""
        role, cache = self.cache, self.shared.cache
        assert role is not None and cache is not None, "_forward made the role: the proxy has a cache"
        url = role.url
        found = cache.find_in_memory(url, self.head.headers)
        if found is not None:
            return self._found(*found)
        self.state = State.CACHE_LOOKUP
        self._emit(c.LookUpCache(url, self.head.headers))

    @on([State.CACHE_LOOKUP], ev.CacheFound,
        to=(State.COLLAPSED, State.SELECTING, State.CONNECTING, State.SERVING_STORED, State.CHECKING))
    def _cache_found(self, event: ev.CacheFound) -> None:
        role = self.cache
        assert role is not None, "_look_in_cache asked the store"
        role.from_disk = event.from_disk
        self._found(event.reply, event.body, event.names)

    def _found(self, reply: CachedReply | None, body: bytes | None, names: tuple[bytes, ...]) -> None:
        role = self.cache
        assert role is not None, "_look_in_cache asked the store"
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
            cache = self.shared.cache
            assert cache is not None, "_forward made the role: there is a cache"
            return self.serve("TCP_OFFLINE_HIT" if cache.offline else None)
        elif decision is Found.SERVE_AND_REFRESH:
            self._emit(c.BackgroundRefresh(self.head.target, self.head.headers))
            return self.serve(None)
        elif decision is Found.RELOAD:
            self.entry.result = "TCP_CLIENT_REFRESH_MISS"
        self._go_upstream()

    @on([State.COLLAPSED], type(ev.CollapseReleased), to=(State.CACHE_LOOKUP, State.SELECTING, State.CONNECTING,
                                                         State.CHECKING,
                                                         State.SERVING_STORED))
    def _collapse_released(self, _event: ev.Event) -> None:
        """The fetch we waited for is over: look again, and fetch ourselves if it is
        not there, without waiting a second time."""
        self.waited = True
        self._look_in_cache()

    def serve(self, result: str | None, age: float | None = None) -> None:
        """Answer from the stored entry (a 304, ranges, the whole body)."""
        role = self.cache
        assert role is not None and role.stored is not None, "the cache lookup found the entry"
        reply, body = role.stored, role.stored_body
        head, e = self.head, self.entry
        age = role.age if age is None else age
        e.hierarchy = e.hierarchy if self.upstream_started is not None else "HIER_NONE"
        if self.upstream_started is None:
            e.server_ip = None
        if result is None:
            result = "TCP_MEM_HIT" if body is not None and not role.from_disk else "TCP_HIT"
        if head.cache_fields and reply.status in (200, 203, 206) and policy.not_modified_for_client(
                head.headers, reply.headers):
            result = "TCP_INM_HIT" if field(head.headers, b"if-none-match") is not None else "TCP_IMS_HIT"
            if result == "TCP_IMS_HIT" and e.result == "TCP_REFRESH_UNMODIFIED":
                result = "TCP_REFRESH_UNMODIFIED"
            return self._send_stored(reply, 304, b"Not Modified", age, b"", result)
        ranges = None
        if head.cache_fields and head.method == "GET" and reply.status == 200 and policy.if_range_allows(
                head.headers, reply.headers):
            ranges = policy.parse_range(field(head.headers, b"range"), reply.body_size)
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

    def _hit_head(self, reply: CachedReply, status: int, reason: bytes, age: float, fields: bytes) -> bytes:
        shared = self.shared
        if status == reply.status:
            start = reply.head
        else:
            start = b"HTTP/1.1 %d %s\r\n" % (status, reason) + b"".join(
                b"%s: %s\r\n" % kv for kv in policy.fields_for_hit(reply.headers, REPLACED_ON_PARTS))
        if not self.body_done or (status >= 400 and not self.config.persistent_connection_after_error):
            self.keep_alive = False
        head = message.stored_reply_head(start, age, fields, self.keep_alive, self.head.version,
                                         shared.via_header, shared.x_cache_hit)
        if self.config.reply_header_access.active:
            head = self._reply_rules(head, status, reply.headers)
        return head

    def _send_stored(self, reply: CachedReply, status: int, reason: bytes, age: float, body: bytes, result: str,
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

    def _send_ranges(self, reply: CachedReply, body: bytes, ranges: list[tuple[int, int]], age: float,
                     result: str) -> None:
        """RFC 9110 14: 206 with one range or multipart/byteranges; 416 when none fits."""
        length = reply.body_size
        if not ranges:
            fields = b"Content-Range: bytes */%d\r\nContent-Length: 0\r\n" % length
            return self._send_stored(reply, 416, b"Range Not Satisfiable", age, b"", result, fields)
        if len(ranges) == 1:
            first, last = ranges[0]
            return self._send_stored(reply, 206, b"Partial Content", age, body[first:last + 1], result,
                                     message.content_range_fields(first, last, length))
        content_type = field(reply.headers, b"content-type")
        boundary, payload = message.multipart_byteranges(body, ranges, length, content_type,
                                                         self.shared.boundary())
        fields = (b"Content-Type: multipart/byteranges; boundary=%s\r\nContent-Length: %d\r\n"
                  % (boundary, len(payload)))
        self._send_stored(reply.without_field(b"content-type"), 206, b"Partial Content", age, payload, result,
                          fields)

    @on([State.SERVING_STORED], ev.StoredBody)
    def _stored_body(self, event: ev.StoredBody) -> None:
        serving = self.serving
        assert serving is not None, "SERVING_STORED streams a disk hit: serve set what remains to do"
        if serving["parts"] is not None:
            serving["parts"].append(event.data)
            return
        self._start_stored_reply()
        self.entry.reply_body_size += len(event.data)
        self._emit(c.SendToClient(event.data))

    def _start_stored_reply(self) -> None:
        serving, role = self.serving, self.cache
        assert serving is not None and role is not None and role.stored is not None, \
            "a disk hit being streamed: its stored reply, found by the cache lookup"
        if serving["head"] is not None:
            return
        reply, window = role.stored, serving["window"]
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
        serving, role = self.serving, self.cache
        assert serving is not None and role is not None and role.stored is not None, \
            "a disk hit being streamed: its stored reply, found by the cache lookup"
        reply = role.stored
        if serving["parts"] is not None:
            if not event.intact:
                return self._swap_failed()
            ranges = serving["ranges"]
            assert ranges is not None, "the parts of several ranges are gathered"
            return self._send_ranges(reply, b"".join(serving["parts"]), ranges, serving["age"], serving["result"])
        self._start_stored_reply()
        if not event.intact:
            e = self.entry
            e.result += "_ABORTED"
            self.keep_alive = False
            self._emit(c.Report("error", f"cache_dir entry for {reply.url} is damaged: removed"))
            self._emit(c.AbortClient)
        self.finish()

    @on([State.SERVING_STORED], type(ev.StoredBodyMissing), to=(State.SELECTING, State.CONNECTING, State.CHECKING))
    def _stored_body_missing(self, _event: ev.Event) -> None:
        self._swap_failed()

    def _swap_failed(self) -> None:
        """The stored body could not be read: fetch it (Squid's TCP_SWAPFAIL_MISS)."""
        role = self.cache
        assert role is not None, "a disk hit failed: the cache lookup found it"
        self.entry.result = "TCP_SWAPFAIL_MISS"
        role.forget_stored()
        self.serving = None
        self._drop_upstream()       # a revalidation's 304 still draining
        self._go_upstream()

    # ------------------------------------------------------------ forwarding
    def _go_upstream(self, tunnel: bool = False) -> None:
        """The request goes upstream: straight to the origin, or, with cache_peer lines,
        to the candidates peer selection finds, in their order (Squid's FwdState)."""
        self.tunnel = tunnel
        if tunnel:
            self.entry.result = "TCP_TUNNEL"
        if self.config.miss_access.rules and not self._miss_allowed():
            return
        peers = self.shared.peers
        if not peers:
            return self._connect()
        if self.selector is None:
            self.forwarding = Forwarding(self.config.forward_max_tries)
            self.selector = PeerSelector(peers, self.config, self._selection_facts(), self.shared.now())
        self._select()

    def _selection_facts(self) -> RequestFacts:
        head, target, role, ch = self.head, self.target, self.cache, self.checklist
        assert target is not None and ch is not None, "it goes upstream after http_access"
        scheme = "" if head.method == "CONNECT" else target.scheme
        no_cache = role is None and head.method in ("GET", "HEAD") or (role is not None and role.reload)
        return RequestFacts(
            head.method, target.url, scheme, target.host, target.port, target.path, self.client.client_ip,
            ch, user=ch.user,
            # Squid's clientHierarchical: an intercepted request whose Host was not verified is
            # not (parents only under never_direct or nonhierarchical_direct off, no ICP)
            hierarchical=is_hierarchical(head.method, scheme, head.headers) and (
                self.client.interception is None or self.host_verified),
            no_cache=no_cache, refresh=role is not None and role.reload,
            need_validation=role is not None and role.revalidating)

    def _select(self) -> None:
        """Ask peer selection; it may need a fact (a lookup) or ICP replies first."""
        selector = self.selector
        assert selector is not None, "_go_upstream made it"
        try:
            step = selector.start()
        except Pending as p:
            if p.fact in ("auth", "external"):
                # credentials are checked by http_access, external ACLs asked there: here
                # one that is not known yet does not match (Squid's ACCESS_DUNNO, "not relevant")
                selector.undecided()
                return self._select()
            if self._need(p.fact):
                return self._select()
            self.state = State.SELECTING
            return
        if isinstance(step, Ping):
            self.state = State.SELECTING
            return self._emit(c.SendIcp(step.queries, step.timeout))
        self._selected(step)

    @on([State.SELECTING], ev.FactKnown, to=(State.CONNECTING, State.CHECKING))
    def _selection_fact(self, event: ev.FactKnown) -> None:
        setattr(self.checklist, event.fact, event.value)
        self._select()

    @on([State.SELECTING], ev.IcpReply, to=(State.CONNECTING, State.CHECKING))
    def _icp_reply(self, event: ev.IcpReply) -> None:
        selector = self.selector
        assert selector is not None, "SELECTING: _go_upstream made it"
        selected = selector.icp_reply(event.peer, event.opcode, event.reqnum, event.at)
        if selected is not None:
            self._emit(c.ForgetIcp(tuple(selector.queried)))
            self._selected(selected)

    @on([State.SELECTING], ev.TimedOut, to=(State.CONNECTING, State.CHECKING))
    def _icp_timed_out(self, _event: ev.TimedOut) -> None:
        selector = self.selector
        assert selector is not None, "SELECTING: _go_upstream made it"
        selected = selector.ping_timeout()
        self._emit(c.ForgetIcp(tuple(selector.queried)))
        if selected is not None:
            self._selected(selected)

    def _selected(self, selected: Selected) -> None:
        self.selected = selected
        for line in selected.lines:
            self._emit(c.Report("warning", line))
        self._next_destination(None)

    def _next_destination(self, failure: ev.ConnectFailed | None) -> None:
        """Try the next candidate; ``failure``: why the last one failed, the answer when
        no candidate is left."""
        forwarding, selected = self.forwarding, self.selected
        assert forwarding is not None and selected is not None, "_go_upstream made one, selection the other"
        if not forwarding.exhausted:
            destination = selected.next(self.shared.now())
            if destination is not None:
                self.destination = destination
                return self._connect()
        e = self.entry
        if failure is None:
            # Squid 5.7 when selection found nothing (never_direct, every parent down)
            e.hierarchy = "HIER_NONE"
            error, status = NO_CANDIDATE
            failure = ev.ConnectFailed(error, "no peer or origin server could be used for this request", status)
            if self.bump is not None:
                return bumping.no_server(self, failure)
            return self.fail(failure.error, failure.detail, failure.status,
                             result="NONE_NONE" if self.tunnel else self._miss_result())
        if self.bump is not None:
            return bumping.no_server(self, failure)
        if self.tunnel:
            self.keep_alive = False
        if failure.tls is not None or failure.reached:  # as when not retried: HIER_NONE/-, TLS details kept
            e.hierarchy, e.server_ip, e.tls_failure = "HIER_NONE", None, failure.tls
            failure = dataclasses.replace(failure, server_ip=None)
        self.fail(failure.error, failure.detail, failure.status,
                  result="NONE_NONE" if self.tunnel else self._miss_result(), server_ip=failure.server_ip)

    def _may_retry(self, connected: bool) -> bool:
        """Another candidate may be tried after this failure (Squid's checkRetry)."""
        if self.forwarding is None:
            return False
        # the "200 Connection established" of a CONNECT SslBump reads is no reply of this forwarding
        return self.forwarding.may_retry(self.head.method, connected, self.entry.upstream_bytes_out > 0
                                         and self.entry.request_body_size > 0,
                                         self.reply_started and self.bump is None)

    def _connect(self, fresh: bool = False) -> None:
        """Connect to the destination chosen (a peer, the origin, or an intercepted request's
        original destination) from the local address Squid's getOutgoingAddress picks for
        every connection: under tproxy the client's own (spoof_client_ip; not to a peer marked
        no-tproxy), else tcp_outgoing_address's, whose dst ACLs test the address connected to
        (which may need the origin's addresses first).  A fresh retry keeps what was chosen."""
        if not fresh:
            peer, client = self.peer, self.client
            self.original_dst = peer is None and self._to_original_dst()
            self.source = (client.client_ip if client.interception == intercept.TPROXY and self._spoofs()
                           and (peer is None or not peer.no_tproxy) else None)
            self.bind = None
            if self.source is None and self.config.tcp_outgoing_address and not self._choose_outgoing():
                return
        self._open(fresh)

    def _open(self, fresh: bool, reopen: bool = False) -> None:
        """``reopen``: connect_retries' next try of the same destination (not an attempt
        forward_max_tries counts), after Squid's pause, within what connect_timeout left."""
        target, peer, ch = self.target, self.peer, self.checklist
        assert target is not None and ch is not None, "it goes upstream after http_access"
        self.state = State.CONNECTING
        self.upstream = "connecting"
        self.attempts += 1
        timing: ConnectTiming = {}
        if reopen:
            left = self.connect_deadline - self.shared.now() - REOPEN_PAUSE
            timing = {"delay": REOPEN_PAUSE, "timeout": left}
        else:
            if self.forwarding is not None:
                self.forwarding.attempt()
            if self.config.connect_retries > 1:
                self.connect_failures = 0
                self.connect_deadline = self.shared.now() + (
                    (peer.connect_timeout or self.config.peer_connect_timeout) if peer is not None
                    else self.config.connect_timeout)
        if self.bump is not None and not self.tunnel:
            return bumping.open_server(self, timing)      # SslBump's own connection to the server
        if peer is not None:
            role = self.cache
            if role is not None and role.leader:
                # collapsed forwarding is for fetches from the origin: through a peer the
                # request may come back to this very proxy (a CARP fleet forwards to itself),
                # where waiting for this fetch would wait forever; the peer collapses instead
                role.leader = False
                self._emit(c.ReleaseFetch(role.key))
            state = self.shared.peers.state(peer)
            through = self._bump_through(peer)
            return self._emit(c.Connect(target.scheme, peer.host, peer.http_port, fresh=fresh, tunnel=self.tunnel,
                                        addresses=state.addresses or None, peer=peer, bind=self.bind,
                                        source=self.source, through=through,
                                        through_host=target.host if through is not None else None, **timing))
        client = self.client
        if self.original_dst and target.scheme == "https" and not self.tunnel:
            # bumped after interception: TLS with the name (SNI, certificate check), to the address
            return self._emit(c.Connect(target.scheme, target.host, client.local_port, fresh=fresh,
                                        addresses=[client.local_ip], bind=self.bind, source=self.source,
                                        original_dst=True, **timing))
        if self.original_dst:
            return self._emit(c.Connect(target.scheme, client.local_ip, client.local_port, fresh=fresh,
                                        tunnel=self.tunnel, addresses=[client.local_ip], bind=self.bind,
                                        source=self.source, **timing))
        addresses: list[str] | None
        if target.ip_literal:
            addresses = [target.host]
        else:
            # an intercepted request's dst ACLs may have seen the original destination instead
            addresses = (ch.dst or None) if client.interception is None else None
        self._emit(c.Connect(target.scheme, target.host, target.port, fresh=fresh, tunnel=self.tunnel,
                             addresses=addresses, bind=self.bind, source=self.source, **timing))

    def _bump_through(self, peer: CachePeer) -> bytes | None:
        """A request inside a bumped connection never goes to a parent in clear: as in
        Squid 5.7 (FwdState's "encrypted traffic through a proxy"), a CONNECT to the
        parent opens a tunnel and TLS with the origin runs inside it, the request in
        origin form; the CONNECT carries the peer's login= credentials.  A parent
        reached over TLS (cache_peer ... tls) gets the request itself, as Squid sends it."""
        if self.client.bumped is None or peer.tls is not None:
            return None
        return self.connect_head(peer)

    def connect_head(self, peer: CachePeer) -> bytes:
        """``CONNECT host:port`` for the parent ``peer``: a tunnel to the target, with the
        peer's login= credentials."""
        target, ch = self.target, self.checklist
        assert target is not None and ch is not None, "it goes upstream after http_access"
        authority = f"[{target.host}]:{target.port}" if ":" in target.host else f"{target.host}:{target.port}"
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        _, credentials = login_fields(peer.login, [], ch.user)
        head = ("\r\n".join(lines) + "\r\n").encode("latin-1", "replace")
        if credentials is not None:
            head += b"Proxy-Authorization: " + credentials + b"\r\n"
        return head + b"\r\n"

    def _to_original_dst(self) -> bool:
        """An intercepted request that goes direct goes to the address the client connected
        to (Squid's ORIGINAL_DST): always when its Host failed verification, else as
        client_dst_passthru says; not once the URL rewriter gave it another URL."""
        return self.client.interception is not None and not self.redirected and intercept.to_original_destination(
            True, self.config.client_dst_passthru, self.host_verified)

    def _spoofs(self) -> bool:
        """spoof_client_ip: a tproxy request connects with the client's address unless
        a line denies it (an ACL that needs a lookup cannot decide: no spoofing)."""
        ch = self.checklist
        assert ch is not None, "it goes upstream after http_access"
        try:
            return self.config.spoof_client_ip.check(ch).allowed
        except Pending:
            return False

    def _miss_allowed(self) -> bool:
        """miss_access: may this client have a reply fetched from the network?  Tested
        with the connecting client's address (never the indirect one), as in Squid; a
        denial answers ERR_FORWARDING_DENIED (or deny_info), a check that needs a
        lookup does not deny."""
        ch, direct = self.checklist, self.client.client_ip
        assert ch is not None, "it goes upstream after http_access"
        tested = ch.src
        if tested != direct:
            ch.set_src(direct)
        try:
            verdict = self.config.miss_access.check(ch)
        except Pending:
            verdict = None
        finally:
            if tested != direct:
                ch.set_src(tested)
        if verdict is None or verdict.allowed:
            return True
        self.entry.hierarchy = "HIER_NONE"
        if self.bump is not None:       # the client is mid-TLS: no HTTP page can reach it now
            bumping.forwarding_denied(self)
            return False
        self.deny(verdict, self.config.miss_access, result="NONE_NONE" if self.tunnel else self._miss_result(),
                  challenge=False, page="ERR_FORWARDING_DENIED")
        return False

    def _choose_outgoing(self) -> bool:
        """tcp_outgoing_address: the local address of the connection, per address connected
        to (a line applies to the addresses of its own family and its dst ACLs test the
        address being connected to: a peer's, the original destination, or the origin's).
        False while the origin's addresses are being looked up for a dst ACL."""
        ch, target, peer = self.checklist, self.target, self.peer
        assert ch is not None and target is not None, "it goes upstream after http_access"
        if peer is not None or self.original_dst:
            addresses = self.shared.peers.state(peer).addresses if peer is not None else [self.client.local_ip]
            self.bind = outgoing_to(self.config.tcp_outgoing_address, ch, addresses,
                                    peer.name if peer is not None else None)
            return True
        if target.ip_literal:
            ch.dst = [target.host]
        try:
            self.bind = outgoing_addresses(self.config.tcp_outgoing_address, ch)
        except Pending:
            cached = self.shared.cached_addresses(target.host)
            if cached is None:
                self.connect_after_lookup = True
                self.state = State.CHECKING
                self._emit(c.LookUp("dst", target.host))
                return False
            ch.dst = cached
            self.bind = outgoing_addresses(self.config.tcp_outgoing_address, ch)
        return True

    @property
    def peer(self) -> CachePeer | None:
        """The peer being tried (None: the origin itself)."""
        destination = self.destination
        return destination.peer if destination is not None else None

    def _hierarchy_code(self) -> str:
        destination = self.destination
        if destination is None:
            return "ORIGINAL_DST" if self.original_dst else HIER_DIRECT
        timed_out = self.selected is not None and self.selected.timed_out
        # Squid's resolveSelected: an intercepted request's DIRECT becomes ORIGINAL_DST
        code = "ORIGINAL_DST" if self.original_dst and destination.peer is None else destination.code
        return (TIMEOUT_PREFIX if timed_out else "") + code

    def reached(self, peer_ip: str | None, peer_port: int | None, seconds: float, tls: TlsFacts | None,
                reused: bool = False) -> None:
        """The destination is connected: what the log says of it; a peer's success counted."""
        e = self.entry
        e.hierarchy = self._hierarchy_code()
        e.server_ip, e.server_port = peer_ip, peer_port
        if seconds:
            e.dns_time = (e.dns_time or 0) + seconds
        if tls is not None:
            e.server_tls = tls
        self.upstream = "open"
        self.reused = reused
        self.upstream_started = self.shared.now()
        peer = self.peer
        if peer is not None and not reused:
            for line in self.shared.peers.connect_succeeded(peer, self.upstream_started):
                self._emit(c.Report("warning", line))

    @on([State.CONNECTING], ev.Connected, to=(State.AWAITING_REPLY, State.TUNNEL))
    def _connected(self, event: ev.Connected) -> None:
        e = self.entry
        self.reached(event.peer_ip, event.peer_port, event.seconds, event.tls, event.reused)
        e.server_local_ip, e.server_local_port = event.local_ip, event.local_port
        peer = self.peer
        if self.tunnel and peer is None:
            e.status = 200
            self.reply_started = True
            self.state = State.TUNNEL
            if self.config.delay_specs:
                self._delay_pool()
            if self.bump is None and not self.intercepted_tls:   # after a peek the client has had its 200 already
                e.reply_header_size = len(CONNECTION_ESTABLISHED)
                self._emit(c.SendToClient(CONNECTION_ESTABLISHED))
            self._emit(c.StartTunnel())
            return
        head, target, shared, ch = self.head, self.target, self.shared, self.checklist
        assert target is not None and ch is not None, "it went upstream after http_access"
        max_forwards = None
        if head.max_forwards is not None and head.method in ("OPTIONS", "TRACE"):
            max_forwards = int(head.max_forwards) - 1
        extra, drop = None, None
        role = self.cache
        if role is not None:
            if role.revalidating:
                extra = role.validators()
                if extra:
                    drop = message.CONDITIONAL_FIELDS
            elif not self.config.cache_miss_revalidate and head.cache_fields:
                drop = role.miss_conditionals()
            if head.cache_fields and head.method == "GET" and self._fetches_whole():
                drop = RANGE_FIELDS if drop is None else drop | RANGE_FIELDS
        authority = target.authority
        if self.callout is not None and self.callout.host is not None:
            authority = self.callout.host       # url_rewrite_host_header off
        path, proxy_auth, keep_proxy_auth = target.path, None, False
        if peer is not None and (self.client.bumped is None or peer.tls is not None):
            # to a proxy: the absolute URL (host:port for CONNECT), login= credentials, and
            # to a sibling only what it has (only-if-cached, unless allow-miss)
            path = target.url
            keep_proxy_auth, proxy_auth = login_fields(peer.login, head.headers, ch.user)
            if peer.type == SIBLING and not peer.allow_miss and not self.tunnel:
                extra = [*(extra or ()), (b"Cache-Control", b"only-if-cached")]
        request = message.request_head_for_origin(
            head, path, authority, self.client.client_ip,
            shared.via_header, self.config.forwarded_for, max_forwards, extra, drop, self.upgrade_offer,
            close=not self.config.server_persistent_connections,
            proxy_authorization=proxy_auth, keep_proxy_authorization=keep_proxy_auth)
        rules = self.config.request_header_access
        if rules.active:
            request = rules.apply(request, ch, e)
        e.upstream_bytes_out = len(request)
        self.state = State.AWAITING_REPLY
        if self.config.delay_specs:
            self._delay_pool()      # from the first byte of the reply; again once its head is known
        self._emit(c.SendUpstream(request, head=True, method=head.method))
        if self.tunnel:
            return          # CONNECT through a parent: its answer comes first
        buffered, self.body_buffer = self.body_buffer, None
        for chunk in buffered or ():
            self._send_body(chunk)
        if self.buffered:
            self.buffered = 0
            self._emit(c.ResumeClient("body"))
        if self.body_done and self.chunked_body:
            self._emit(c.SendUpstream(message.LAST_CHUNK))

    def _fetches_whole(self) -> bool:
        """Squid's decideIfWeDoRanges: a cacheable GET whose Range starts within
        range_offset_limit is fetched whole (and stored), its range cut out here."""
        specs = policy.range_specs(field(self.head.headers, b"range"))
        if specs is None:
            return False
        if self.range_limit is None:
            self.range_limit = self._range_offset_limit()
        self.whole_for_range = not policy.range_offset_limit_exceeded(specs, self.range_limit)
        return self.whole_for_range

    def _range_offset_limit(self) -> int:
        """The first range_offset_limit line whose ACLs match (Squid's fast check: one
        that needs a lookup does not match); none: 0."""
        ch = self.checklist
        assert ch is not None, "it goes upstream after http_access"
        for rule in self.config.range_offset_limit:
            try:
                if rule.filter is None or matches(rule.filter, ch):
                    return rule.size
            except UNDECIDED:
                continue
        return 0

    def _slice_whole(self, resp: ResponseHead) -> ResponseHead | None:
        """The whole object came for a Range request: the client gets its one range as a
        206 (Squid's buildRangeHeader) when the reply is a 200 of known length without
        Content-Range and the range fits; else the reply as it is (several ranges:
        the whole 200, see docs/cache.md)."""
        length = resp.content_length
        if resp.status != 200 or length is None or resp.framing.kind != LENGTH or resp.header(
                b"content-range") is not None:
            return None
        ranges = policy.parse_range(field(self.head.headers, b"range"), length)
        if not ranges or len(ranges) != 1:
            return None
        first, last = ranges[0]
        self.sliced = [first, last, 0]
        headers = [kv for kv in resp.headers if kv[0].lower() not in REPLACED_ON_PARTS]
        headers.append((b"Content-Range", b"bytes %d-%d/%d" % (first, last, length)))
        headers.append((b"Content-Length", b"%d" % (last - first + 1)))
        return ResponseHead(206, b"Partial Content", resp.version, headers, resp.size, self.head.method)

    @on([State.CONNECTING], ev.ConnectFailed, to=(State.CONNECTING, State.CHECKING, State.SERVING_STORED,
                                                   State.BUMP_CLIENT_TLS))
    def _connect_failed(self, event: ev.ConnectFailed) -> None:
        if self.config.connect_retries > 1 and event.errno is not None and self._reopen(event):
            return
        self.upstream = None
        e = self.entry
        peer = self.peer
        if peer is not None and event.error != "ERR_DNS_FAIL":
            for line in self.shared.peers.connect_failed(peer, self.shared.now()):
                self._emit(c.Report("warning", line))
        if event.error == "ERR_DNS_FAIL" and peer is None:
            e.hierarchy = "HIER_NONE"
        else:
            e.hierarchy = self._hierarchy_code()
            e.server_ip = event.server_ip
        if self.selected is not None and self._may_retry(connected=False):
            return self._next_destination(event)
        if self.bump is not None:
            return bumping.no_server(self, event)
        if self.tunnel:
            self.keep_alive = False
            # Squid 5.7 logs a tunnel that was never established NONE_NONE/503, not TCP_TUNNEL
            return self.fail(event.error, event.detail, event.status, result="NONE_NONE",
                             server_ip=event.server_ip)
        if self._stale_instead():
            return
        if event.error == "ERR_DNS_FAIL":
            return self.fail(event.error, event.detail, event.status, result=self._miss_result())
        if event.tls is not None or event.reached:
            # Squid logs a failed TLS handshake, or a parent's refusal of our CONNECT, HIER_NONE/-
            e.hierarchy, e.server_ip = "HIER_NONE", None
            e.tls_failure = event.tls
            return self.fail(event.error, event.detail, event.status, result=self._miss_result(),
                             server_ip=event.server_ip)
        self.fail(event.error, event.detail, event.status, result=self._miss_result(), server_ip=event.server_ip)

    def _reopen(self, event: ev.ConnectFailed) -> bool:
        """connect_retries: the same destination is opened again (Squid's ConnOpener)."""
        self.connect_failures += 1
        if not reopens(self.config.connect_retries, self.connect_failures, event.errno,
                       self.connect_deadline - self.shared.now()):
            return False
        self._open(fresh=True, reopen=True)
        return True

    def _miss_result(self) -> str:
        result = self.entry.result
        return result if result.startswith(("TCP_REFRESH", "TCP_CLIENT_REFRESH")) else "TCP_MISS"

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
    def _late_request_body(self, _event: ev.Event) -> None:
        """The exchange answered before the body ended: the rest is not wanted."""

    def _send_body(self, data: bytes) -> None:
        if self.chunked_body:
            self._emit(c.SendUpstream(message.chunk(data)))
        else:
            self._emit(c.SendUpstream(data))
        self.entry.upstream_bytes_out += len(data)

    @on(BEFORE_DONE, type(ev.RequestEnd))
    def _request_end(self, _event: ev.Event) -> None:
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
    def _late_request_invalid(self, _event: ev.Event) -> None:
        self.keep_alive = False

    # the reply, from the origin
    @on([State.AWAITING_REPLY], ev.InterimResponse)
    def _interim(self, event: ev.InterimResponse) -> None:
        """1xx (other than 101): passed on to HTTP/1.1 clients (RFC 9110 15.2)."""
        if self.head.version == "1.1":
            head = message.interim_head_for_client(event.head, self.shared.via_header)
            if self.config.reply_header_access.active:
                head = self._reply_rules(head, event.head.status, event.head.headers)
            self._emit(c.SendToClient(head))

    @on([State.AWAITING_REPLY], ev.ResponseStarted, to=(State.RELAYING, State.SERVING_STORED, State.CONNECTING))
    def _response_started(self, event: ev.ResponseStarted) -> None:
        resp = event.head
        e, shared = self.entry, self.shared
        self.response = resp
        e.upstream_status = resp.status
        if self.tunnel and resp.status == 200:
            # CONNECT through a parent: it connected; the tunnel starts with the bytes after its answer
            e.status = 200
            self.reply_started = True
            self.state = State.RELAYING
            if self.bump is not None:       # spliced after a peek: the client has had its 200 already
                return
            e.reply_header_size = len(CONNECTION_ESTABLISHED)
            return self._emit(c.SendToClient(CONNECTION_ESTABLISHED))
        if self.tunnel and self.bump is not None:
            # a splice the parent refuses: the client is mid-TLS, an HTTP answer cannot reach it
            self._drop_upstream()
            e.status = resp.status          # Squid logs the parent's refusal: TCP_TUNNEL/403
            return bumping.splice_failed(self, ev.ConnectFailed(
                "ERR_CONNECT_FAIL", f"the parent answered the CONNECT with {resp.status}", 503, e.server_ip))
        if self.tunnel:
            self.keep_alive = False         # the parent's refusal is passed on; the CONNECT is over
        elif self.selected is not None and self.forwarding is not None and self.forwarding.may_reforward(
                resp.status, self.config.retry_on_error, e.request_body_size > 0) and self._try_next():
            return
        if resp.status == 101:
            refusal = switch_refusal(self.upgrade_offer, resp.header(b"upgrade"), resp.connection)
            if refusal is not None:
                return self._upstream_failed(ev.UpstreamFailed("ERR_INVALID_RESP", refusal))
            self.upgrading = True
        if self.config.http_reply_access:
            ch = self.checklist
            assert ch is not None, "it went upstream after http_access"
            ch.reply_status = resp.status
            ch.reply_headers = resp.headers
            try:
                verdict = self.config.http_reply_access.check(ch)
            except UNDECIDED:
                verdict = None      # a lookup cannot wait here: treat as no match
            if verdict is not None and not verdict.allowed:
                self._drop_upstream()
                return self.deny(verdict, self.config.http_reply_access, result="TCP_DENIED_REPLY",
                                 challenge=False)
        role = self.cache
        if role is not None:
            cache, ch = shared.cache, self.checklist
            assert cache is not None and ch is not None, "_forward made the role: there is a cache"
            peer = self.peer        # what comes through a proxy-only peer is not kept here
            storable = (peer is None or not peer.proxy_only) and cache.allows(ch)
            decision = role.on_reply(resp, storable, shared.now())
            if decision is OnReply.FRESHEN:
                return self._freshen(resp)
            if decision is OnReply.SERVE_STALE:
                self.upstream = "draining"
                return self.serve("TCP_REFRESH_FAIL_OLD")
            refresh = role.refresh_result(resp)
            if refresh is not None:
                e.result = refresh
            if decision is OnReply.STORE:
                started = self.upstream_started
                assert started is not None, "reached() set it when the connection was made"
                self._emit(c.StoreStart(resp, started))
            elif role.leader:
                # nobody should wait for this URL: the waiters fetch on their own, now and next time
                role.leader = False
                self._emit(c.ReleaseFetch(role.key, uncacheable=True))
        self.reply_limit = self._reply_body_limit(resp)
        if self.reply_limit and resp.content_length is not None and resp.content_length > self.reply_limit:
            self._drop_upstream()
            return self.fail("ERR_TOO_BIG", "the reply is larger than reply_body_max_size", 403)
        client_resp = resp
        if self.whole_for_range:
            client_resp = self._slice_whole(resp) or resp
        framing = message.client_framing(client_resp.framing, self.head.version)
        self.framing = framing.kind
        if framing.kind == CLOSE or self.client.closing:
            self.keep_alive = False
        if (not self.body_done and not self.upgrading) or (
                resp.status >= 400 and not self.config.persistent_connection_after_error):
            self.keep_alive = False
        head = message.response_head_for_client(
            client_resp, framing, self.keep_alive, self.head.version, shared.via_header, shared.x_cache_miss)
        if self.config.reply_header_access.active:
            head = self._reply_rules(head, client_resp.status, resp.headers)
        e.status = client_resp.status
        e.mime_type = resp.mime_type
        e.reply_headers = resp.headers
        e.reply_header_size = len(head)
        self.reply_started = True
        self.state = State.RELAYING
        if self.config.delay_specs:
            self._delay_pool()
        self._head_cmd = cmd = c.SendToClient(head)
        self._emit(cmd)

    def _delay_pool(self) -> None:
        """delay_access: the first pool that allows the transfer slows its reads from the
        origin.  As in Squid, it is chosen when the request goes out, and again once the
        reply's head is known (reply ACLs match then; no pool then: not delayed)."""
        ch = self.checklist
        assert ch is not None, "the request goes out only after http_access checked it"
        response = self.response
        if response is not None:
            ch.reply_status = response.status
            ch.reply_headers = response.headers
        peer = self.peer
        # a reply from a cache_peer marked no-delay is not slowed (Squid's setNoDelay)
        pool = None if peer is not None and peer.no_delay else select_delay_pool(self.config.delay_specs, ch)
        if pool is not None or response is not None:
            self._emit(c.Throttle(pool, self.client.client_ip, self.entry.user, ch.tag))

    def _try_next(self) -> bool:
        """The reply head is one the next candidate may do better than (a 502 or 504 from
        a parent, as Squid reforwards it): drop it and try that candidate, if there is one."""
        selected = self.selected
        assert selected is not None, "the caller found a selection"
        destination = selected.next(self.shared.now())
        if destination is None:
            return False
        self._drop_upstream()
        self.destination = destination
        self._connect()
        return True

    def _freshen(self, resp: ResponseHead) -> None:
        """The origin says the stored entry is still good: update its fields, answer from it."""
        role = self.cache
        assert role is not None and role.stored is not None, "a revalidation of what the cache lookup found"
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
        assert ch is not None, "it went upstream after http_access"
        ch.reply_status = resp.status
        ch.reply_headers = resp.headers
        for rule in rules:
            try:
                if matches(rule.filter, ch):
                    return rule.size
            except UNDECIDED:
                continue
        return 0

    @on([State.RELAYING], ev.ResponseBody)
    def _response_body(self, event: ev.ResponseBody) -> None:
        data = event.data
        e = self.entry
        e.reply_body_size += len(data)
        role = self.cache
        if role is not None and role.teeing:
            cache = self.shared.cache
            assert cache is not None, "_forward made the role: there is a cache"
            if cache.size_allowed(e.reply_body_size):
                self._emit(c.StoreBody(data))
            else:
                self._stop_teeing()
        if self.reply_limit and e.reply_body_size > self.reply_limit:
            self._drop_upstream()
            return self.fail("ERR_TOO_BIG", "the reply grew larger than reply_body_max_size", 403)
        sliced = self.sliced
        if sliced is not None:
            start = e.reply_body_size - len(data)
            data = data[max(0, sliced[0] - start):max(0, sliced[1] + 1 - start)]
            sliced[2] += len(data)
            if not data:
                return
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
            assert resp is not None, "RELAYING: the reply head came"
            if resp.content_length is not None and self.entry.reply_body_size != resp.content_length:
                self._emit(c.StoreDiscard)
            else:
                key, names, values = role.stored_under(resp.headers)
                self._emit(c.StoreEnd(key, role.url, names, values, self.shared.now()))
        if self.shared.cache is not None and self.head.method not in SAFE_METHODS:
            resp, target = self.response, self.target
            assert resp is not None and target is not None, "RELAYING: the reply head came"
            urls = policy.invalidated_urls(self.head.method, resp.status, target.url, resp.headers,
                                           same_origin_resolver(target.url))
            if urls:
                self._emit(c.Invalidate(tuple(urls)))
        self.finish()

    def _release(self, reusable: bool, bytes_in: int) -> None:
        self.upstream = None
        e = self.entry
        e.upstream_bytes_in += bytes_in
        if self.upstream_started is not None:
            e.upstream_time = self.shared.now() - self.upstream_started
        self._emit(c.ReleaseUpstream(reusable and self.body_done and self.config.server_persistent_connections))

    @on([State.DONE, State.SERVING_STORED], ev.ResponseBody)
    def _drained_body(self, event: ev.ResponseBody) -> None:
        """The cache answered instead: the origin's reply is read to its end and dropped;
        or the client left and quick_abort keeps fetching it for the store."""
        if self._require_draining():
            cache = self.shared.cache
            assert cache is not None, "quick_abort stores it: there is a cache"
            self.entry.reply_body_size += len(event.data)
            if cache.size_allowed(self.entry.reply_body_size):
                self._emit(c.StoreBody(event.data))
            else:
                self._stored_without_client(False)

    @on([State.DONE, State.SERVING_STORED], ev.ResponseEnd)
    def _drained_end(self, event: ev.ResponseEnd) -> None:
        storing = self._require_draining()
        self._release(event.reusable, event.bytes_in)
        if storing:
            self._stored_without_client(True)

    @on([State.DONE, State.SERVING_STORED], ev.UpstreamFailed)
    def _drained_failure(self, event: ev.UpstreamFailed) -> None:
        storing = self._require_draining()
        self.upstream = None
        self.entry.upstream_bytes_in += event.bytes_in
        if storing:
            self._stored_without_client(False)

    def _require_draining(self) -> bool:
        """The origin's events after the exchange let go of the client: True when they
        are being stored (quick_abort), False when dropped."""
        if self.upstream == "storing":
            return True
        if self.upstream != "draining":
            raise IllegalEvent(f"origin events after the exchange ended ({self!r})")
        return False

    def _stored_without_client(self, complete: bool) -> None:
        """The end of a fetch the client left: stored if it all came, then the waiters go."""
        role, resp = self.cache, self.response
        assert role is not None and resp is not None, "a fetch for the store: its role, its reply head"
        if self.upstream == "storing":
            self._emit(c.AbortUpstream)
        self.upstream = None
        if role.teeing:
            role.teeing = False
            if complete and (resp.content_length is None or self.entry.reply_body_size == resp.content_length):
                key, names, values = role.stored_under(resp.headers)
                self._emit(c.StoreEnd(key, role.url, names, values, self.shared.now()))
            else:
                self._emit(c.StoreDiscard)
        if role.leader:
            role.leader = False
            self._emit(c.ReleaseFetch(role.key))

    @on([State.AWAITING_REPLY, State.RELAYING], ev.UpstreamFailed,
        to=(State.CONNECTING, State.CHECKING, State.SERVING_STORED))
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
        if self.selected is not None and not self.reply_started and self._may_retry(connected=True):
            return self._next_destination(ev.ConnectFailed(event.error, event.detail, event.status,
                                                           self.entry.server_ip))
        if not self.reply_started and self._stale_instead():
            return
        self._stop_teeing()
        self.fail(event.error, event.detail, event.status, result=self._miss_result())

    @on([State.AWAITING_REPLY, State.RELAYING], ev.TimedOut,
        to=(State.CONNECTING, State.CHECKING, State.SERVING_STORED))
    def _timed_out(self, event: ev.TimedOut) -> None:
        """read_timeout: the origin stopped sending."""
        self._upstream_failed(ev.UpstreamFailed("ERR_READ_TIMEOUT", "the server did not answer within read_timeout",
                                                504))

    @on([State.DONE, State.SERVING_STORED], ev.TimedOut)
    def _drain_timed_out(self, _event: ev.TimedOut) -> None:
        if self._require_draining():
            return self._stored_without_client(False)
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
    def _client_gone(self, _event: ev.Event) -> None:
        """The client went away before the exchange ended."""
        if self.state is State.TUNNEL:
            return      # the tunnel logs when it ends
        if self.state is State.IDLE:
            self.state = State.DONE
            return      # never started: nothing to log
        storing = self.state is State.RELAYING and self._keeps_fetching()
        if not storing:
            self._drop_upstream()
        e = self.entry
        if not e.result.endswith("_ABORTED"):
            e.result += "_ABORTED"
        self.keep_alive = False
        if storing:
            # quick_abort: the rest is fetched and stored with nobody to send it to
            self.upstream = "storing"
            self.finish()
            self._emit(c.DetachClient)
            return
        self.finish()

    def _keeps_fetching(self) -> bool:
        """Squid's quick_abort decision for a reply being relayed when its client left."""
        role, resp = self.cache, self.response
        if self.upstream != "open" or role is None or resp is None:
            return False
        cache = self.shared.cache
        assert cache is not None, "_forward made the role: there is a cache"
        waiters = len(cache.pending.get(role.key) or ()) if role.leader else 0
        return keeps_fetching(QuickAbort.from_config(self.config), role.teeing, resp.size or 1,
                              resp.content_length, self.entry.reply_body_size, waiters,
                              whole_for_range=self.range_limit == -1)

    @on([State.DONE], type(ev.ClientGone))
    def _gone_after_done(self, _event: ev.Event) -> None:
        """Nothing left to do."""

    def finish(self) -> None:
        if self.state is State.DONE:
            return
        self.state = State.DONE
        self.entry.end = self.shared.now()
        role = self.cache
        if role is not None and self.upstream != "storing":
            self._stop_teeing()
            if role.leader:
                role.leader = False
                self._emit(c.ReleaseFetch(role.key))
        if self.callout is not None:
            self._log_helper_facts()
        if not self.background:
            entry = self.entry
            if self.sliced is not None:
                # the log counts what the client got: its range, not the whole object fetched
                entry = copy.copy(entry)
                entry.reply_body_size = self.sliced[2]
            self._emit(c.Log(entry, self.checklist))
        self._emit(c.Finished(self.keep_alive))


def _known_credentials(helpers: HelperState, authenticator: auth.Authenticator, client: ClientInfo,
                       entry: LogEntry, head: RequestHead, ch: Checklist) -> bool:
    """An authentication ACL's first question (``Checklist.authenticate``), answered
    without leaving the check when the credentials are known good (a logged-in browser):
    the warm path costs one cache probe, no second pass over http_access.  False: the
    exchange's _authenticate decides.  ``helpers``: the HelperState when the request's
    checks began (its user cache outlives a reconfigure), ``authenticator`` its own;
    ``client`` and ``entry``: the checklist's connection and log entry."""
    conn = client.auth
    if conn is None:        # remembers the connection's Basic credentials too (their cache key)
        conn = client.auth = auth.ConnectionAuth()
    extras = helpers.key_extras_of(entry) if helpers.key_extras else None
    outcome = authenticator.known(head.proxy_authorization, conn, extras)
    if outcome is None:
        return False
    _note_credentials(ch, outcome, helpers, entry, client)
    return True


def _note_credentials(ch: Checklist, outcome: auth.Outcome, helpers: HelperState | None, entry: LogEntry,
                      client: ClientInfo) -> None:
    """What the ACLs and the log (``entry``) learn from the credentials' outcome."""
    ch.auth = outcome
    if outcome.user is not None:
        entry.user_login = outcome.user       # logged even when the password was wrong, as Squid does
    if outcome.kind == auth.DONE:
        ch.user = outcome.user
        if outcome.notes:
            ch.notes.extend(kv for kv in outcome.notes if kv[0] not in _PRIVATE_NOTES)
        if (outcome.entry is not None and helpers is not None and helpers.auth is not None
                and helpers.counts_addresses):
            ch.user_ip_count = helpers.auth.cache.note_ip(outcome.entry, client.client_ip)


def denial_line(verdict: Verdict, list_name: str) -> tuple[str, str]:
    """(FILE:LINE, the line) that denied a request, as the counters file it; a denial
    because no line matched is filed under the last line, marked implicit."""
    rule = verdict.rule
    if rule is None:
        return "-", f"{list_name} (no lines: everything is denied)"
    if verdict.implicit:
        return rule.where, f"{rule.text} (implicit: no line matched)"
    return rule.where, rule.text


from squidpy.exchange import bumping  # noqa: E402  (SslBump's states, registered with @on)
