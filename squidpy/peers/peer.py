"""One ``cache_peer`` line: ``cache_peer HOST TYPE HTTP-PORT ICP-PORT [options]``.

Read as Squid 5.7's ``parse_peer`` reads it (src/cache_cf.cc): the host is
lower-cased while the peer's *name* keeps the spelling written (CARP hashes
the name), ``weight`` below 1 becomes 1, ``connect-fail-limit`` below 1
becomes 10, an unknown option is ignored with a warning, and the options
Squid refuses (``carp`` on a sibling, ``carp-key`` before ``carp``, a
``standby`` above ``max-conn``, a name used twice) are errors.  squidpy
refuses what it does not do rather than pretend: ``originserver`` (reverse
proxying), multicast ICP and HTCP.
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from squidpy.acl.access import AccessList
from squidpy.http.message import Fields, field_values
from squidpy.http.url import rfc1738_unescape
from squidpy.tls.options import TlsOptions

PARENT = "parent"
SIBLING = "sibling"

PEER_TYPES = {"parent": PARENT, "sibling": SIBLING, "neighbor": SIBLING, "neighbour": SIBLING}
TYPE_TEXT = {PARENT: "Parent", SIBLING: "Sibling"}   # Squid's neighborTypeStr, for cache_log

PEER_TCP_MAGIC_COUNT = 10      # Squid's default connect-fail-limit

# Options that only name a flag (attribute set to True).
FLAGS = {
    "proxy-only": "proxy_only",
    "no-query": "no_query",
    "background-ping": "background_ping",
    "no-digest": "no_digest",
    "closest-only": "closest_only",
    "default": "default",
    "round-robin": "round_robin",
    "weighted-round-robin": "weighted_round_robin",
    "no-netdb-exchange": "no_netdb_exchange",
    "sourcehash": "sourcehash",
    "userhash": "userhash",
    "allow-miss": "allow_miss",
    "no-tproxy": "no_tproxy",
    "no-delay": "no_delay",
}

# Accepted and without effect in squidpy, as Squid accepts them when built without the feature.
IGNORED = {
    "auth-no-keytab": "squidpy does not log in to peers with Kerberos",
}
IGNORED_PREFIXES = {
    "digest-url=": "squidpy does not fetch cache digests",
    "connection-auth": "squidpy does not pin connections for NTLM or Negotiate",
    "ttl=": "squidpy sends no multicast ICP queries",
}

REFUSED = {
    "originserver": "cache_peer ... originserver makes squidpy a reverse proxy (an accelerator), "
                    "which squidpy is not; forward to a parent proxy, or use a web server's own proxying",
    "multicast-responder": "multicast ICP is not implemented by squidpy",
    "multicast-siblings": "multicast ICP is not implemented by squidpy",
    "forceddomain=": "forceddomain= is an accelerator (reverse proxy) option, which squidpy is not",
    "front-end-https": "front-end-https is an accelerator (reverse proxy) option, which squidpy is not",
    "htcp": "HTCP is not implemented by squidpy yet: leave it out to query this peer with ICP",
}

CARP_KEY_PARTS = ("scheme", "host", "port", "path", "params")

@dataclass(frozen=True)
class CarpKey:
    """``carp-key=``: the parts of the URL CARP hashes instead of the whole URL."""

    scheme: bool = False
    host: bool = False
    port: bool = False
    path: bool = False
    params: bool = False


@dataclass
class CachePeer:
    """A configured peer.  Its runtime state lives in :mod:`squidpy.peers.health`."""

    host: str                   # lower case: what is connected to
    name: str                   # name= or the host as written: cache_peer_access, CARP, the logs
    type: str                   # PARENT or SIBLING
    http_port: int
    icp_port: int
    where: str = ""
    index: int = 0              # 1-based order in the configuration
    weight: int = 1
    basetime: int = 0
    proxy_only: bool = False
    no_query: bool = False
    background_ping: bool = False
    no_digest: bool = False
    closest_only: bool = False
    default: bool = False
    round_robin: bool = False
    weighted_round_robin: bool = False
    no_netdb_exchange: bool = False
    carp: bool = False
    carp_key: CarpKey | None = None
    sourcehash: bool = False
    userhash: bool = False
    allow_miss: bool = False
    no_tproxy: bool = False             # connect from squidpy's address even for a tproxy request
    no_delay: bool = False              # replies from this peer are not slowed by delay pools
    login: str | None = None            # unescaped
    connect_timeout: float | None = None   # seconds; None: peer_connect_timeout
    connect_fail_limit: int = PEER_TCP_MAGIC_COUNT
    max_conn: int = 0                   # 0: no limit
    standby: int = 0
    tls: TlsOptions | None = None
    access: AccessList = field(default_factory=lambda: AccessList("cache_peer_access", empty_allows=True))

    @property
    def type_text(self) -> str:
        return TYPE_TEXT[self.type]

    def __repr__(self) -> str:
        return f"<CachePeer {self.name} {self.type} {self.host}:{self.http_port}>"


def parse_cache_peer(args: list[str], warn: Callable[[str], None],
                     path: Callable[[str], str] = lambda p: p) -> CachePeer:
    """``HOST TYPE HTTP-PORT ICP-PORT [options]`` -> CachePeer; raises ValueError.
    ``warn(message)`` reports what is accepted but ignored; ``path`` makes file names
    absolute (relative to the configuration)."""
    if len(args) < 4:
        raise ValueError("expected: cache_peer HOST TYPE HTTP-PORT ICP-PORT [options]")
    host_text, type_text, http_text, icp_text = args[:4]
    peer_type = PEER_TYPES.get(type_text)
    if type_text == "multicast":
        raise ValueError("multicast peers are not implemented by squidpy (multicast ICP)")
    if peer_type is None:
        warn(f"Unknown neighbor type: {type_text} (taken as 'sibling', as Squid does)")
        peer_type = SIBLING
    http_port = _service(http_text, "tcp", "HTTP-PORT")
    if http_port == 0:
        raise ValueError("HTTP-PORT cannot be 0")
    peer = CachePeer(host=host_text.lower(), name=host_text, type=peer_type, http_port=http_port,
                     icp_port=_service(icp_text, "udp", "ICP-PORT"))
    for token in args[4:]:
        if token.startswith("#"):
            break
        _option(peer, token, warn, path)
    if peer.max_conn > 0 and peer.max_conn < peer.standby:
        raise ValueError(f"cache_peer {peer.host} max-conn={peer.max_conn} is lower than its "
                         f"standby={peer.standby}")
    peer.weight = max(peer.weight, 1)
    if peer.connect_fail_limit < 1:
        peer.connect_fail_limit = PEER_TCP_MAGIC_COUNT
    return peer


def _option(peer: CachePeer, token: str, warn: Callable[[str], None], path: Callable[[str], str]) -> None:
    name, eq, value = token.partition("=")
    if token in FLAGS:
        if token in ("sourcehash", "userhash") and peer.type != PARENT:
            raise ValueError(f"non-parent {token} peer {peer.host}/{peer.http_port}")
        setattr(peer, FLAGS[token], True)
        return
    if token == "carp":
        if peer.type != PARENT:
            raise ValueError(f"non-parent carp peer {peer.host}/{peer.http_port}")
        peer.carp = True
        return
    refused = REFUSED.get(token) or REFUSED.get(name + eq) or REFUSED.get(name) or (
        REFUSED["htcp"] if name == "htcp" or token.startswith("htcp-") else None)
    if refused:
        raise ValueError(refused)
    if token in IGNORED:
        warn(f"cache_peer option '{token}' is ignored: {IGNORED[token]}")
        return
    for prefix, why in IGNORED_PREFIXES.items():
        if token.startswith(prefix):
            warn(f"cache_peer option '{token}' is ignored: {why}")
            return
    if eq and name in ("weight", "basetime", "connect-timeout", "connect-fail-limit", "max-conn", "standby"):
        number = _integer(value, token)
        if name == "connect-timeout":
            peer.connect_timeout = float(number) if number > 0 else None
        else:
            setattr(peer, name.replace("-", "_"), number)
        return
    if name == "carp-key" and eq:
        if not peer.carp:
            raise ValueError(f"carp-key specified on non-carp peer {peer.host}/{peer.http_port} "
                             "(write 'carp' before 'carp-key=')")
        peer.carp_key = _carp_key(value)
        return
    if name == "login" and eq:
        peer.login = rfc1738_unescape(value)
        if not peer.login:
            raise ValueError("login= needs a value (user:password, *:password, PASS, PASSTHRU, "
                             "PROXYPASS or NEGOTIATE)")
        if peer.login.startswith("NEGOTIATE"):
            warn("cache_peer login=NEGOTIATE: squidpy cannot obtain Kerberos tickets, "
                 "so no credentials are sent to this peer")
        return
    if name == "name" and eq:
        if value:
            peer.name = value
        return
    if token.startswith("ssl"):
        return _tls(peer, token[3:], path, warn)
    if token.startswith("tls-"):
        return _tls(peer, token[4:], path, warn)
    if token.startswith("tls"):
        return _tls(peer, token[3:], path, warn)
    warn(f"Ignoring unknown cache_peer option '{token}'")


def _service(text: str, proto: str, what: str) -> int:
    """A port number or a service name from /etc/services, as Squid's GetService."""
    if not text.isdigit():
        try:
            return socket.getservbyname(text, proto)
        except OSError:
            raise ValueError(f"{what} '{text}' is neither a port number nor a known {proto} service") from None
    port = int(text)
    if port > 65535:
        raise ValueError(f"{what} {port} is out of range (0-65535)")
    return port


def _integer(text: str, token: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise ValueError(f"'{token}': '{text}' is not a whole number") from None


def _carp_key(spec: str) -> CarpKey:
    """Squid matches each comma-separated word by its prefix (``hostname`` counts as
    ``host``); an empty word or an unknown one is fatal."""
    parts = {}
    for word in spec.split(","):
        for part in ("scheme", "host", "port", "path", "params"):
            if word.startswith(part):
                parts[part] = True
                break
        else:
            raise ValueError(f"invalid carp-key '{word}' (use scheme, host, port, path, params)")
    return CarpKey(**parts)


def _tls(peer: CachePeer, option: str, path: Callable[[str], str], warn: Callable[[str], None]) -> None:
    """One ``tls-*`` option, read as Squid's Security::PeerOptions::parse reads it
    (squidpy.tls.options): ``tls`` alone or any known option turns TLS on,
    ``tls-disable`` turns it off, an unknown one is ignored.  The files named must
    exist."""
    tls = peer.tls or TlsOptions()
    name = option.partition("=")[0]

    def existing(value: str) -> str:
        value = path(value)
        if not os.path.exists(value):
            raise ValueError(f"tls-{name}={value}: no such file or directory")
        return value

    def unknown(token: str) -> None:
        warn(f"Ignoring unknown cache_peer option '{token}' (a TLS option)")
    if option and not tls.parse(option, warn, existing, unknown):
        return                          # TLS stays as it was
    peer.tls = None if tls.disabled else tls


def login_fields(login: str | None, request_headers: Fields, username: str | None) -> tuple[bool, bytes | None]:
    """What ``login=`` does to a request forwarded to a parent proxy (Squid's
    httpFixupAuthentication and its Proxy-Authorization copying rules).

    Returns ``(pass_client_proxy_authorization, proxy_authorization_to_send)``.
    The client's own Proxy-Authorization goes on only with PASS, PROXYPASS and
    PASSTHRU.  ``user:password`` sends those credentials (Basic); ``*:password``
    sends the client's user name (``-`` when unknown) with that password; PASS and
    PASSTHRU send nothing of their own.  NEGOTIATE needs Kerberos, which squidpy
    does not do: nothing is sent.  PROXYPASS without client credentials sends
    ``Basic`` of the word PROXYPASS itself, as Squid 5.7 does.
    """
    if login is None:
        return False, None
    passes = login in ("PASS", "PROXYPASS", "PASSTHRU")
    if passes and field_values(request_headers, b"proxy-authorization"):
        return True, None
    if login in ("PASS", "PASSTHRU") or login.startswith("NEGOTIATE"):
        return passes, None
    if login.startswith("*"):
        return False, _basic((username or "-") + login[1:])
    return passes, _basic(login)


def _basic(text: str) -> bytes:
    return b"Basic " + base64.b64encode(text.encode("latin-1", "replace"))
