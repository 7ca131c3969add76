"""The facts an ACL is matched against, as Squid's ACLChecklist holds them.

The proxy fills a :class:`Checklist` from the connection and the parsed
request; ACL types only read it.  Facts that need a lookup (``dst`` needs
DNS) start as ``None``; an ACL that needs one raises :class:`Pending` and the
caller fetches it and asks again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from squidpy.http.message import Fields, field_text
from squidpy.http.url import rfc1738_unescape
from squidpy.ip import ip_key

if TYPE_CHECKING:
    from cryptography import x509

    from squidpy.acl.access import Acl
    from squidpy.auth.decide import Outcome
    from squidpy.exchange.exchange import ClientInfo
    from squidpy.log.entry import LogEntry
    from squidpy.tls.errors import CertError


class Pending(Exception):
    """An ACL needs a fact that is not known yet (``"dst"``, ``"srcdomain"``,
    ``"auth"``: the credentials, checked by a helper if need be)."""

    def __init__(self, fact: str):
        super().__init__(fact)
        self.fact = fact


class ExternalPending(Pending):
    """An ``external`` ACL needs its helper's answer to ``line``."""

    def __init__(self, type_name: str, line: str):
        super().__init__("external")
        self.type_name = type_name
        self.line = line


class AuthRequired(Exception):
    """An authentication ACL met a request without valid credentials: the check
    ends here and the client is challenged (Squid's ACCESS_AUTH_REQUIRED).
    ``acl``: the ACL that raised it (set by the access list), Squid's deny_info key."""

    acl: Acl | None = None


class Undecided(Exception):
    """An ACL could not be evaluated (its external helper failed, timed out or is
    overloaded): the check ends here, denied (Squid's ACCESS_DUNNO); ``message``
    is shown on the error page as %o."""

    acl: Acl | None = None

    def __init__(self, message: str = ""):
        super().__init__(message)
        self.message = message


# What a fast check (access_log filters, cache, reply_body_max_size ...) treats as
# "does not match": a fact it cannot wait for, missing credentials, a failed helper.
UNDECIDED = (Pending, AuthRequired, Undecided)


class Checklist:
    """One transaction's facts.  Reply facts stay ``None`` until a reply exists;
    looked-up facts (``dst``, ``dst_name``, ``src_name``) stay ``None`` until the
    lookup is done, and become ``[]``/``""`` when it failed.  TLS facts (``sni``,
    ``server_cert``, ``ssl_errors``, ``client_cert``) are ``None`` until SslBump
    learns them (squidpy.acl.tls)."""

    # Facts nobody has learnt yet are class defaults, so a request's checklist costs
    # only what it sets (one is made per request).
    dst: list[str] | None = None
    dst_name: str | None = None                 # reverse DNS of an IP-literal URL host
    dst_peer_name: str | None = None            # the cache_peer connected to, for tcp_outgoing_address (peername)
    src_name: str | None = None                 # reverse DNS of the client
    client_connections = 0
    reply_status: int | None = None
    reply_headers: Fields | None = None
    user: str | None = None
    auth: Outcome | None = None                 # the request's authentication outcome (squidpy.auth.decide), once examined
    # set by the exchange: fills ``auth`` (and ``user``) at once and returns True when the
    # credentials are known without a helper (the user cache), so the check goes on
    authenticate: Callable[[], bool] | None = None
    ext_user: str | None = None                 # user= from an external ACL helper
    tag: str | None = None                      # tag= from an external ACL helper
    user_ip_count = 0                           # addresses the user came from within authenticate_ip_ttl
    to_proxy = False                            # a request for the proxy itself (its own URL, cache_object://)
    _src_key: tuple[int, int] | None = None
    _url_unescaped: str | None = None
    _path_unescaped: str | None = None
    sni: str | None = None                      # the TLS ClientHello's server name (SslBump step 2 on)
    server_cert: x509.Certificate | None = None     # the origin's certificate, once SslBump has seen it
    ssl_errors: Sequence[CertError] | None = None   # CertErrors found verifying it
    client_cert: x509.Certificate | None = None     # a client certificate (https_port with tls-cafile)
    bump_step = "SslBump1"                      # at_step: not bumping counts as step 1, as in Squid
    client_encrypted = False                    # the request came over TLS (https_port, a bumped connection)
    connection: ClientInfo | None = None        # the client connection (its .notes: annotate_client), when there is one
    initiator = "client"
    random: Callable[[], float] | None = None   # a float source in [0, 1) for random ACLs (tests)
    entry: LogEntry | None = None               # the transaction's LogEntry, once it exists

    def __init__(
        self,
        src: str = "127.0.0.1",
        method: str = "GET",
        url: str = "",
        scheme: str = "http",
        host: str = "",
        port: int = 80,
        path: str = "/",
        request_headers: list[tuple[bytes, bytes]] | None = None,
        src_port: int = 0,
        local_ip: str = "127.0.0.1",
        local_port: int = 3128,
        port_name: str = "",
        dst: list[str] | None = None,
        now: float | None = None,
        ip_literal: bool = False,
    ):
        self.src = src
        self.src_port = src_port
        self.local_ip = local_ip
        self.local_port = local_port
        self.port_name = port_name
        self.method = method
        self.scheme = scheme
        self.host = host
        self.port = port
        self.path = path
        self.url = url
        self.request_headers = request_headers if request_headers is not None else []
        if dst is not None:
            self.dst = dst
        self.ip_literal = ip_literal    # the URL host is an IP address
        self.now = now
        self.notes: list[tuple[str, str]] = []     # annotations: helpers' (group=, log= ...) and annotate_* ACLs'
        self.external: dict[tuple[str, str], tuple[str, list[tuple[str, str]]]] = {}   # (type, line) -> (result, notes)

    def set_src(self, address: str) -> None:
        """Test ``address`` as the client from now on (follow_x_forwarded_for's indirect
        client): what was known of the previous one is forgotten."""
        self.src = address
        self._src_key = None
        self.src_name = None

    @property
    def hier_code(self) -> str:
        """How the reply was obtained (%Sh): HIER_NONE until the request is forwarded."""
        return self.entry.hierarchy if self.entry is not None else "HIER_NONE"

    @property
    def squid_error(self) -> str:
        """The error the transaction ended with, ERR_NONE while there is none."""
        entry = self.entry
        return (entry.error or "ERR_NONE") if entry is not None else "ERR_NONE"

    def retarget(self, url: str, scheme: str, host: str, port: int, path: str, ip_literal: bool) -> None:
        """The URL rewriter sent the request elsewhere: later checks see the new URL."""
        self.url, self.scheme, self.host, self.port, self.path = url, scheme, host, port, path
        self.ip_literal = ip_literal
        self.dst = self.dst_name = None
        self._url_unescaped = self._path_unescaped = None

    @property
    def src_key(self) -> tuple[int, int]:
        key = self._src_key
        if key is None:
            key = self._src_key = ip_key(self.src)
        return key

    @property
    def url_unescaped(self) -> str:
        """The URL as ``url_regex`` sees it: percent-escapes decoded, as Squid does."""
        text = self._url_unescaped
        if text is None:
            text = self._url_unescaped = rfc1738_unescape(self.url)
        return text

    @property
    def path_unescaped(self) -> str:
        """The path and query as ``urlpath_regex`` sees them (escapes decoded)."""
        text = self._path_unescaped
        if text is None:
            text = self._path_unescaped = rfc1738_unescape(self.path)
        return text

    def timestamp(self) -> float:
        if self.now is None:
            self.now = time.time()
        return self.now

    def request_header(self, name: bytes) -> str | None:
        """All values of a request header joined by ``, `` (``None`` if absent)."""
        return _header(self.request_headers, name)

    def reply_header(self, name: bytes) -> str | None:
        return _header(self.reply_headers or (), name)


_header = field_text


def authenticated_user(ch: Checklist) -> str | None:
    """The user an authentication ACL (or %LOGIN) matches: Pending until the credentials
    are examined, AuthRequired without valid ones; None inside a bumped connection whose
    CONNECT brought none (no match, never a 407 inside TLS)."""
    if ch.auth is None and (ch.authenticate is None or not ch.authenticate()):
        raise Pending("auth")
    if ch.user is None:
        from squidpy.auth.decide import ENCAPSULATED   # squidpy.auth.decide imports the ACL types
        if ch.auth is not None and ch.auth.kind == ENCAPSULATED:
            return None
        raise AuthRequired()
    return ch.user
