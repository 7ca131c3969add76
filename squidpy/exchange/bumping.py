"""SslBump as states of the CONNECT exchange, and what bumped requests inherit.

A CONNECT that http_access allows on an ``ssl-bump`` port is decided by the
``ssl_bump`` rules (squidpy.tls.bump) step by step:

* step 1 splices at once (an ordinary tunnel), terminates, or answers
  ``200 Connection established`` and reads the client's ClientHello
  (``BUMP_CLIENT_HELLO``);
* step 2 (the SNI known) splices (the hello goes on to the origin untouched),
  terminates, bumps (TLS with the origin first: ``BUMP_SERVER``), peeks (the
  client's own hello is sent to the origin and its answer read) or stares (our
  own TLS with the origin);
* step 3 (the origin's certificate known) splices after a peek, bumps after a
  stare, or terminates;
* bumping answers the client's hello with a certificate minted for the site
  (``BUMP_CLIENT_TLS``), mimicking the origin's when it was seen, signed as
  sslproxy_cert_sign and sslproxy_cert_adapt say.  Once the client's handshake
  is done the CONNECT is logged (``NONE_NONE/200 0``, as Squid 5.7 logs it)
  and the connection goes on as HTTP inside TLS: each request there is an
  exchange of its own with an ``https://`` URL (from its Host header, as Squid
  builds it), through http_access, the cache and the log.

A CONNECT that http_access denies is bumped too, when the port bumps and
``ssl_bump`` lines exist (Squid) or the port has a CA (squidpy, unless
``bump_denied_connect off``): the client gets its deny page inside TLS, on
its first request, instead of a browser error.  When TLS with the origin
fails while bumping, the certificate minted carries the name alone and the
first request gets ERR_SECURE_CONNECT_FAIL, as in Squid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from squidpy import intercept
from squidpy.acl.checklist import Checklist, Pending
from squidpy.auth.decide import Outcome, inherited
from squidpy.config.tls_directives import adaptations, sign_algorithm
from squidpy.exchange import commands as c
from squidpy.exchange import events as ev
from squidpy.exchange.exchange import CONNECTION_ESTABLISHED, ConnectTiming, Exchange, State, on
from squidpy.http.url import BadTarget, Target
from squidpy.log.entry import LogEntry
from squidpy.tls import bump

if TYPE_CHECKING:
    from cryptography import x509

    from squidpy.acl.access import AccessList, Verdict
    from squidpy.http.message import RequestHead
    from squidpy.tls.errors import CertError, TlsFailure
    from squidpy.tls.hello import ClientHello
    from squidpy.tls.session import TlsFacts

Failure = tuple[str, str, int, "TlsFailure | None"]
"""(error, detail, status, TlsFailure): why TLS with the origin failed."""
Denial = tuple["Verdict", "AccessList"]
"""(verdict, access list): why http_access denied the CONNECT."""


@dataclass
class BumpedInfo:
    """What a bumped connection's requests know (ClientInfo.bumped)."""

    connect_host: str
    connect_port: int
    sni: str | None = None
    server_cert: x509.Certificate | None = None
    ssl_errors: tuple[CertError, ...] = ()
    bump_mode: str = bump.BUMP
    failure: Failure | None = None       # the first request's answer
    denial: Denial | None = None         # the CONNECT's denial, shown to the first request
    # what its requests are authenticated as: the CONNECT's user, or nobody (squidpy.auth.decide.inherited)
    auth: Outcome = field(default_factory=lambda: inherited(None))


@dataclass
class BumpRole:
    """A CONNECT being bumped: what the steps learnt and decided."""

    step1: str = ""                      # the action step 1 took
    step2: str = ""                      # ... step 2 (peek, stare, bump)
    hello: ClientHello | None = None     # the client's
    server_cert: x509.Certificate | None = None
    errors: tuple[CertError, ...] = ()
    failure: Failure | None = None
    denial: Denial | None = None
    redo: Callable[[Exchange], None] | None = None   # the step to take again once a looked-up fact is in
    server: str | None = None            # SslBump's own connection to the server: TLS, or PEEK at it
    spliced: bool = False
    extra: list[bytes] = field(default_factory=list)


# ---------------------------------------------------------------- entry points from the exchange

def bumps(x: Exchange) -> bool:
    """The CONNECT arrived on an ssl-bump port and ssl_bump has lines."""
    tls = x.client.port_tls
    return tls is not None and tls.ssl_bump and bool(x.config.ssl_bump)


def step1(x: Exchange) -> None:
    """http_access allowed the CONNECT: ssl_bump's first step."""
    try:
        decision = bump.step1(x.config.ssl_bump, _checklist(x))
    except Pending as p:
        return x._look_up(p)            # the answer comes back through http_access and here again
    x.entry.bump_mode = decision.action
    if decision.next == bump.TUNNEL:
        return x._go_upstream(tunnel=True)
    if decision.next == bump.CLOSE:
        return _terminate(x, established=False)
    x.bump = BumpRole(step1=decision.action)
    _established(x)


def bump_to_deny(x: Exchange, verdict: Verdict, access_list: AccessList) -> bool:
    """A denied CONNECT: bump it to show the page inside TLS, if the port can."""
    tls = x.client.port_tls
    if tls is None:
        return False
    if not bump.bump_to_deny(tls.ssl_bump, x.config.ssl_bump, tls.ca is not None,
                             x.config.bump_denied_connect, 403):
        return False
    x.entry.result = "TCP_DENIED"
    x.entry.bump_mode = bump.BUMP
    x.bump = BumpRole(step1=bump.CLIENT_FIRST, denial=(verdict, access_list))
    _established(x)
    return True


def inner_url(bumped: BumpedInfo, head: RequestHead, path: str) -> str:
    """The URL of a request inside a bumped connection, as Squid builds it: from its Host
    header (with the CONNECT's port when Host names none), else the SNI, else the
    CONNECT host."""
    if head.host:
        host = head.host.decode("latin-1")
    else:
        host = bumped.sni or bumped.connect_host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
    if ":" in host.rsplit("]", 1)[-1]:
        authority = host
    else:
        authority = f"{host}:{bumped.connect_port}" if bumped.connect_port != 443 else host
    return f"https://{authority}{path or '/'}"


def tls_facts(ch: Checklist, entry: LogEntry, bumped: BumpedInfo) -> None:
    """What SslBump learnt, for the ACLs and the log of a bumped request; its user is
    the CONNECT's (auth.inherited)."""
    outcome = ch.auth = bumped.auth
    if outcome.user is not None:
        ch.user = entry.user_login = outcome.user
    ch.sni = bumped.sni
    ch.server_cert = bumped.server_cert
    ch.ssl_errors = bumped.ssl_errors
    ch.bump_step = bump.STEP3 if bumped.server_cert is not None else bump.STEP2
    entry.sni = bumped.sni
    entry.bump_mode = bumped.bump_mode
    entry.server_cert = bumped.server_cert
    entry.cert_errors = bumped.ssl_errors


def certificate_user(cert: x509.Certificate) -> str | None:
    """%us: the common name of a client certificate (https_port), as Squid logs it."""
    from cryptography.x509.oid import NameOID
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return names[0].value if names else None  # type: ignore[return-value]  # a commonName decodes to str


def answer_for_bumped(x: Exchange, bumped: BumpedInfo) -> bool:
    """The first request of a connection bumped to show a page gets it; then the
    connection closes (as in Squid, logged NONE_NONE, with no bump mode)."""
    if bumped.denial is not None or bumped.failure is not None:
        x.entry.bump_mode = None
    if bumped.denial is not None:
        verdict, access_list = bumped.denial
        bumped.denial = None
        x.keep_alive = False
        x.deny(verdict, access_list, result="NONE_NONE")
        return True
    if bumped.failure is not None:
        error, detail, status, tls = bumped.failure
        bumped.failure = None
        x.keep_alive = False
        x.entry.tls_failure = tls
        if tls is not None:
            x.entry.server_cert = tls.peer_cert
        x.fail(error, detail, status, result="NONE_NONE")
        return True
    return False


# ---------------------------------------------------------------- the steps

def _established(x: Exchange) -> None:
    """200 Connection established (not counted in the CONNECT's logged bytes, as in Squid),
    then the client's hello.  An intercepted connection was sent no CONNECT, so it gets
    no answer to one (logged /000, as Squid logs it)."""
    e = x.entry
    e.status = 0 if x.intercepted_tls else 200
    if e.result != "TCP_DENIED":
        e.result = "NONE_NONE"
    x.reply_started = True
    x.state = State.BUMP_CLIENT_HELLO
    if not x.intercepted_tls:
        x._emit(c.SendToClient(CONNECTION_ESTABLISHED))
    x._emit(c.ReadClientHello)


TLS, PEEK = "tls", "peek"


def _reached(x: Exchange, peer_ip: str | None, peer_port: int | None, seconds: float = 0.0,
             tls: TlsFacts | None = None) -> None:
    """SslBump's connection to the server is made: logged with the parent's hierarchy code
    when it runs through one, else as a connection to the origin (its original destination
    when intercepted); now step 3 decides."""
    x.reached(peer_ip, peer_port, seconds, tls)
    if x.peer is None:
        x.entry.hierarchy = "ORIGINAL_DST" if x.intercepted_tls else "HIER_DIRECT"
    x.state = State.BUMP_SERVER


@on([State.BUMP_CLIENT_HELLO], ev.ClientHelloRead, to=(State.BUMP_CLIENT_TLS,
                                                      State.SELECTING, State.CHECKING, State.CONNECTING,
                                                      State.VERIFYING_HOST, State.REWRITING))
def _client_hello(x: Exchange, event: ev.ClientHelloRead) -> None:
    from squidpy.tls.session import hello_facts     # session loads OpenSSL: a proxy that never bumps never does

    role = _role(x)
    if event.hello is None:
        x.entry.error_detail = event.problem
        return _terminate(x, established=True)
    role.hello = event.hello
    _checklist(x).sni = x.entry.sni = event.hello.server_name
    x.entry.client_tls = hello_facts(event.hello)
    if role.denial is not None or role.step1 in (bump.BUMP, bump.CLIENT_FIRST):
        return _mint_for_client(x)
    if role.step1 == bump.SERVER_FIRST:
        role.step2 = bump.BUMP
        return _connect_tls(x)
    _step2(x)


def _step2(x: Exchange) -> None:
    role = _role(x)
    role.redo = None
    try:
        decision = bump.step2(x.config.ssl_bump, _checklist(x))
    except Pending as p:
        role.redo = _step2
        return _look_up(x, p.fact)
    role.step2 = decision.action
    x.entry.bump_mode = decision.action
    if decision.next == bump.TUNNEL:
        return _splice(x)
    if decision.next == bump.CLOSE:
        return _terminate(x, established=True)
    if decision.next == bump.PEEK_AT_SERVER:
        return _peek(x)
    _connect_tls(x)           # bump or stare: our own TLS with the origin


def _server_name(x: Exchange) -> str:
    role = _role(x)
    return (role.hello.server_name if role.hello is not None and role.hello.server_name else None) \
        or _target(x).host


def _addresses(x: Exchange) -> list[str] | None:
    target = _target(x)
    return [target.host] if target.ip_literal else (_checklist(x).dst or None)


def _connect_tls(x: Exchange) -> None:
    _role(x).server = TLS
    _to_server(x)


def _peek(x: Exchange) -> None:
    _role(x).server = PEEK
    _to_server(x)


def _to_server(x: Exchange) -> None:
    """Squid forwards the CONNECT to reach the server at step 2 (FwdState): with cache_peer
    lines peer selection chooses where it goes (never_direct, always_direct,
    cache_peer_access ...), as for a spliced one; without, straight to the origin."""
    if x.shared.peers:
        return x._go_upstream()
    x._open(False)


def open_server(x: Exchange, timing: ConnectTiming) -> None:
    """The connection to the destination chosen (exchange._open): the origin, or a parent
    sent ``CONNECT host:port`` (with its login=) first, TLS or the peek running inside the
    tunnel (Squid's establishTunnelThruProxy).  A TLS parent gets no CONNECT in Squid
    and squidpy runs no TLS inside TLS: that candidate is skipped."""
    role, target, peer = _role(x), _target(x), x.peer
    if peer is None:
        where: dict[str, Any] = {"host": target.host, "port": target.port, "addresses": _addresses(x)}
    elif peer.tls is not None:
        x.upstream = None
        return x._next_destination(ev.ConnectFailed(
            "ERR_CANNOT_FORWARD", f"SslBump does not reach servers through the TLS cache_peer {peer.name}", 503))
    else:
        where = {"host": peer.host, "port": peer.http_port, "addresses": x.shared.peers.state(peer).addresses or None,
                 "peer": peer, "through": x.connect_head(peer), "bind": x.bind, "source": x.source}
    if role.server == TLS:
        x._emit(c.ConnectTls(server_name=_server_name(x), **where, **timing))
    else:
        x._emit(c.PeekServer(**where, **timing))


@on([State.CONNECTING], ev.ServerTlsReady, to=(State.BUMP_SERVER, State.BUMP_CLIENT_TLS))
def _server_tls_ready(x: Exchange, event: ev.ServerTlsReady) -> None:
    role, e, ch = _role(x), x.entry, _checklist(x)
    _reached(x, event.peer_ip, event.peer_port, event.seconds, event.tls)
    role.server_cert = ch.server_cert = e.server_cert = event.cert
    role.errors = ch.ssl_errors = e.cert_errors = event.errors
    if role.step2 == bump.STARE:
        return _step3(x)
    _mint_for_client(x)


@on([State.CONNECTING], ev.ServerHelloRead, to=(State.BUMP_SERVER, State.BUMP_CLIENT_TLS, State.TUNNEL))
def _server_hello(x: Exchange, event: ev.ServerHelloRead) -> None:
    role, e, ch = _role(x), x.entry, _checklist(x)
    _reached(x, event.peer_ip, event.peer_port)
    role.extra = [event.data]
    if event.hello is not None:
        from squidpy.tls.session import hello_facts     # session loads OpenSSL: a proxy that never bumps never does

        e.server_tls = hello_facts(event.hello)
    if event.hello is not None and event.hello.certificates:
        from cryptography import x509
        try:
            role.server_cert = ch.server_cert = e.server_cert = x509.load_der_x509_certificate(
                event.hello.certificates[0])
        except ValueError:
            pass
    if event.hello is None:
        e.error_detail = event.problem
    _step3(x)


def _step3(x: Exchange) -> None:
    role = _role(x)
    role.redo = None
    try:
        decision = bump.step3(x.config.ssl_bump, _checklist(x), role.step2)
    except Pending as p:
        role.redo = _step3
        return _look_up(x, p.fact)
    x.entry.bump_mode = decision.action
    if decision.next == bump.CLOSE:
        return _terminate(x, established=True)
    if decision.next == bump.TUNNEL:
        return _splice(x)
    _mint_for_client(x)


def no_server(x: Exchange, event: ev.ConnectFailed) -> None:
    """No destination could be reached (every candidate peer selection found failed, or
    there was none): a splice closes the client, bumping shows the error inside TLS."""
    if x.tunnel:
        return splice_failed(x, event)
    _server_failed(x, event)


def forwarding_denied(x: Exchange) -> None:
    """miss_access denies SslBump's connection to the server: a splice closes the client
    (NONE_NONE/403 0, as Squid 5.7 logs it); a bump shows ERR_FORWARDING_DENIED to the first
    request inside TLS (Squid 5.7 leaves that client waiting)."""
    e = x.entry
    if x.tunnel:
        e.result, e.status = "NONE_NONE", 403
        x.keep_alive = False
        x._emit(c.AbortClient)
        return x.finish()
    _server_failed(x, ev.ConnectFailed("ERR_FORWARDING_DENIED", "miss_access denies this request", 403))


def _server_failed(x: Exchange, event: ev.ConnectFailed) -> None:
    """TLS (or TCP) with the origin, or the parent's tunnel to it, failed: the client
    still gets a certificate (the name alone, signed trusted, as Squid does) and then the
    error on its first request, logged HIER_NONE as Squid logs it."""
    role, e = _role(x), x.entry
    x.upstream = None
    if event.tls is not None:
        role.errors = _checklist(x).ssl_errors = e.cert_errors = event.tls.errors
        e.server_cert = event.tls.peer_cert     # logged (%ssl::<cert_subject), not mimicked
    role.failure = (event.error, event.detail, event.status, event.tls)
    e.hierarchy, e.server_ip = "HIER_NONE", None
    _mint_for_client(x, failed=True)


def _mint_for_client(x: Exchange, failed: bool = False) -> None:
    """Answer the client's hello: a certificate mimicking the origin's when it was seen,
    else one made from the name (SNI, else the CONNECT host)."""
    from squidpy.tls.mint import SIGN_TRUSTED, CertProperties  # mint loads cryptography: bumping only

    role, ch, config = _role(x), _checklist(x), x.config
    name = _server_name(x)
    if role.server_cert is None or failed or role.denial is not None:
        props = CertProperties(name, sign=SIGN_TRUSTED, sign_hash=config.sslproxy_cert_sign_hash or "sha256")
    else:
        adapt = adaptations(config, ch, _target(x).host)
        common_name = adapt.get("setCommonName")
        props = CertProperties(common_name if isinstance(common_name, str) else name, mimic=role.server_cert,
                               set_valid_after=bool(adapt.get("setValidAfter")),
                               set_valid_before=bool(adapt.get("setValidBefore")),
                               set_common_name=isinstance(common_name, str),
                               sign=sign_algorithm(config, ch),
                               sign_hash=config.sslproxy_cert_sign_hash or "sha256")
    x.state = State.BUMP_CLIENT_TLS
    x._emit(c.StartClientTls(props))


@on([State.BUMP_CLIENT_TLS], ev.ClientTlsReady)
def _client_tls_ready(x: Exchange, event: ev.ClientTlsReady) -> None:
    """Bumped: the CONNECT is logged; its connection goes on as HTTP inside TLS."""
    role, e = _role(x), x.entry
    target = _target(x)
    info = BumpedInfo(target.host, target.port, role.hello.server_name if role.hello is not None else None,
                      role.server_cert, tuple(role.errors), e.bump_mode or bump.BUMP, role.failure, role.denial,
                      inherited(_checklist(x).auth))
    e.reply_header_size = e.reply_body_size = 0
    if event.tls is not None:
        e.client_tls = event.tls
    x.upstream = None
    x.keep_alive = True
    x._emit(c.Bumped(info))
    x.finish()


@on([State.BUMP_CLIENT_TLS], ev.ClientTlsFailed)
def _client_tls_failed(x: Exchange, event: ev.ClientTlsFailed) -> None:
    """The client refused our certificate (it does not trust the CA) or spoke no TLS."""
    e = x.entry
    e.tls_failure = event.failure
    e.error_detail = event.failure.detail()
    _drop(x)
    x.keep_alive = False
    x.finish()


def _splice(x: Exchange) -> None:
    """Spliced at step 2, Squid logs the CONNECT (NONE_NONE/200 0) and then the spliced
    tunnel (TCP_TUNNEL).  Spliced at step 3, after peeking at the server, it tunnels the
    connection its CONNECT made (through a parent too): one TCP_TUNNEL line."""
    role = _role(x)
    role.spliced = True
    e = x.entry
    if x.upstream != "open":
        first = _copy_entry(e)
        first.result, first.status, first.hierarchy, first.server_ip = "NONE_NONE", e.status, "HIER_NONE", None
        first.reply_header_size = first.reply_body_size = 0
        first.end = x.shared.now()
        x._emit(c.Log(first, x.checklist))
        e.start = first.end
    e.result = "TCP_TUNNEL"
    if x.upstream == "open":            # after a peek: the origin's first flight goes to the client
        e.status = 200
        x.tunnel = True
        x.state = State.TUNNEL
        x.upstream_started = x.shared.now()
        x._emit(c.StartTunnel(b"".join(role.extra)))
        return
    if x.intercepted_tls:
        return _second_connect(x)
    x._go_upstream(tunnel=True)


def _second_connect(x: Exchange) -> None:
    """An intercepted connection spliced at step 2: Squid's second CONNECT (its
    fakeAConnectRequest), named after the SNI (else the address) with the SNI as its Host.
    It is a request of its own: Host verification (the SNI must resolve to the address the
    client connected to, else 409), http_access again (a dstdomain denial of the SNI: 403),
    then the tunnel.  A refusal resets the client (exchange._reset_intercepted).  It gets a
    checklist of its own: the first CONNECT's, logged just before, keeps its facts."""
    old, client = _checklist(x), x.client
    sni = old.sni
    address = f"[{client.local_ip}]" if ":" in client.local_ip else client.local_ip
    name = (f"[{sni}]" if ":" in sni else sni) if sni else address
    x.entry.url = f"{name}:{client.local_port}"
    try:
        target, verdict = intercept.intercepted_request(
            "CONNECT", x.entry.url, name.encode("latin-1", "replace"), client.local_ip, client.local_port,
            x.shared.cached_addresses)
    except BadTarget:       # a server name no URL can hold names nothing: it resolves to nothing
        return x._host_checked(intercept.NOT_RESOLVING)
    x.target = target
    ch = x.checklist = x._checklist(target)
    ch.sni, ch.bump_step = old.sni, old.bump_step
    x._verify_host(verdict)


def splice_failed(x: Exchange, event: ev.ConnectFailed) -> None:
    """The origin of a spliced connection cannot be reached: the client, mid-TLS, is closed."""
    e = x.entry
    e.error, e.error_detail = event.error, event.detail
    if x.peer is not None:
        e.hierarchy = x._hierarchy_code()
    else:
        e.hierarchy = "HIER_NONE" if event.error == "ERR_DNS_FAIL" else "HIER_DIRECT"
    e.server_ip = event.server_ip
    x.keep_alive = False
    x._emit(c.AbortClient)
    x.finish()


def _terminate(x: Exchange, established: bool) -> None:
    """ssl_bump terminate (or a client that does not speak TLS): close both sides."""
    e = x.entry
    if not established:
        e.result, e.status = "NONE_NONE", 0
    _drop(x)
    x.keep_alive = False
    x._emit(c.AbortClient)
    x.finish()


def _drop(x: Exchange) -> None:
    if x.upstream is not None:
        if x.upstream != "connecting":
            x._emit(c.AbortUpstream)
        x.upstream = None


def _look_up(x: Exchange, fact: str) -> None:
    """A fact an ssl_bump ACL needs at step 2 or 3 (dst ...): looked up, then the step again."""
    name = x.client.client_ip if fact == "src_name" else _target(x).host
    x._emit(c.LookUp(fact, name))


@on([State.BUMP_CLIENT_HELLO, State.BUMP_SERVER], ev.FactKnown,
    to=(State.BUMP_CLIENT_TLS, State.TUNNEL, State.SELECTING, State.CHECKING, State.CONNECTING,
        State.VERIFYING_HOST, State.REWRITING))
def _fact_known(x: Exchange, event: ev.FactKnown) -> None:
    setattr(x.checklist, event.fact, event.value)
    role = _role(x)
    redo, role.redo = role.redo, None
    if redo is not None:
        redo(x)


def _role(x: Exchange) -> BumpRole:
    """The bump under way: every state past step 1 has one (step1, bump_to_deny)."""
    role = x.bump
    assert role is not None, "a bumping step without a BumpRole"
    return role


def _target(x: Exchange) -> Target:
    """The CONNECT's target: _start set it before http_access, so before any step."""
    target = x.target
    assert target is not None, "a bumping step before the target was parsed"
    return target


def _checklist(x: Exchange) -> Checklist:
    """The CONNECT's checklist: made before http_access, so before any step."""
    ch = x.checklist
    assert ch is not None, "a bumping step before the checklist was made"
    return ch


def _copy_entry(e: LogEntry) -> LogEntry:
    copy = LogEntry(e.start)
    copy.__dict__.update(e.__dict__)     # what was set; the rest are class defaults
    return copy


__all__ = ["BumpRole", "BumpedInfo", "answer_for_bumped", "bump_to_deny", "bumps", "inner_url", "splice_failed",
           "forwarding_denied", "no_server", "open_server", "step1", "tls_facts"]
