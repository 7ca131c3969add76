"""Request and response heads as plain data, and how a proxy rewrites them.

Headers are kept as received: a list of ``(name, value)`` byte pairs in
order.  :class:`RequestHead` and :class:`ResponseHead` also note the fields
that decide framing and forwarding, found in one pass when the head is
complete, and :func:`framing_of` decides once, from those, how the body is
delimited (:class:`Framing`).  The rewriting functions apply RFC 9110
section 7.6 (hop-by-hop fields, Via) and RFC 9112 section 3.2.2 (Host from
the target URI); they take the framing decision as input and write the
framing fields from it themselves, so no received field (a ``Connection``
token, a duplicate) can remove, change or repeat them.  They return the
bytes to send, and do no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from email.utils import formatdate
from http import HTTPStatus
from typing import cast

from squidpy import __version__

# RFC 9110 7.6.1 and RFC 9112 section 9.6: fields meant for one connection only.
# a message's fields as received: (name, value) byte pairs, in order
Fields = Sequence[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"proxy-authorization", b"proxy-authenticate",
})

# The fields that frame a body (RFC 9112 6.1, 6.2): never copied from a received head
# but written from the framing decision, so no received field can remove or repeat them.
FRAMING_FIELDS = frozenset({b"content-length", b"transfer-encoding"})

SERVER_NAME = f"squidpy/{__version__}"
APP_NAME = "squidpy"           # SERVER_NAME under httpd_suppress_version_string


def app_name(suppress_version: bool) -> str:
    """How squidpy names itself in Server, Via and error pages (httpd_suppress_version_string)."""
    return APP_NAME if suppress_version else SERVER_NAME


def field_values(headers: Fields | None, name: bytes) -> list[bytes]:
    """Every value of the field ``name`` (any case), in order."""
    name = name.lower()
    return [v for k, v in headers or () if k.lower() == name]


def field(headers: Fields | None, name: bytes) -> bytes | None:
    """The values of field ``name`` joined with ", " (RFC 9110 5.3), None when absent."""
    values = field_values(headers, name)
    return b", ".join(values) if values else None


def field_text(headers: Fields | None, name: bytes) -> str | None:
    """The same as text (Latin-1), as ACLs and logs see it."""
    value = field(headers, name)
    return value.decode("latin-1") if value is not None else None


def comma_tokens(values: list[bytes]) -> set[bytes]:
    """Lower-cased members of comma-separated field values."""
    tokens = set()
    for value in values:
        for part in value.split(b","):
            part = part.strip().lower()
            if part:
                tokens.add(part)
    return tokens


def token_list(value: bytes, into: list[bytes]) -> None:
    """Append the lower-cased members of one comma-separated value, in order."""
    for part in value.split(b","):
        part = part.strip().lower()
        if part:
            into.append(part)


# ------------------------------------------------------------ framing (RFC 9112 section 6)

# How a body is delimited.  INVALID: it cannot be told without guessing, so the
# message is refused (400 for a request, 502 for a reply) and never forwarded.
LENGTH, CHUNKED, CLOSE, NO_BODY, INVALID = "length", "chunked", "close", "none", "invalid"


class Framing:
    """How one message's body is delimited, decided once by :func:`framing_of`
    from the head as received, before anything is rewritten.  ``length`` is the
    Content-Length for LENGTH (and, for a reply to HEAD or a 304, the length the
    field announces); ``problem`` says why an INVALID message cannot be framed."""

    __slots__ = ("kind", "length", "problem")

    def __init__(self, kind: str, length: int | None = None, problem: str | None = None):
        self.kind = kind
        self.length = length
        self.problem = problem

    @property
    def has_body(self) -> bool:
        """Whether body bytes follow the head on the wire."""
        kind = self.kind
        return kind == CHUNKED or kind == CLOSE or (kind == LENGTH and bool(self.length))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Framing) and (self.kind, self.length) == (other.kind, other.length)

    def __hash__(self) -> int:
        return hash((self.kind, self.length))

    def __repr__(self) -> str:
        extra = f" {self.length}" if self.length is not None else ""
        return f"<Framing {self.kind}{extra}{' (' + self.problem + ')' if self.problem else ''}>"


BODILESS = Framing(NO_BODY)
CHUNKED_BODY = Framing(CHUNKED)
CLOSE_DELIMITED = Framing(CLOSE)
_CHUNKED_ONLY = [b"chunked"]


def framing_of(head: "RequestHead | ResponseHead", request_method: str | None = None) -> Framing:
    """RFC 9112 6.3: how the body of a received message is delimited: a request
    when ``request_method`` is None, else the reply to a request with that method.

    Decided from the framing fields alone, as llhttp (which cuts the body) reads
    them, so that what squidpy forwards is framed exactly as what it read; a
    ``Connection`` token never affects it.  Whatever llhttp would read one way
    and another recipient another way is INVALID: a transfer coding other than
    chunked alone (Squid refuses those too), Content-Length with
    Transfer-Encoding, a reply whose Connection field names a framing field
    (the origin asked for its own framing to be removed), an interim reply
    announcing a body."""
    te = head.transfer_encoding
    length = head.content_length
    if request_method is None:
        if te:
            if te != _CHUNKED_ONLY:
                return Framing(INVALID, problem="the request body uses a transfer coding other than chunked")
            if length is not None:
                return Framing(INVALID, problem="the request has both Content-Length and Transfer-Encoding")
            return CHUNKED_BODY
        return BODILESS if length is None else Framing(LENGTH, length)
    if head.connection and not head.connection.isdisjoint(FRAMING_FIELDS):
        return Framing(INVALID, problem="the reply's Connection field names its own framing fields")
    status = cast(ResponseHead, head).status        # a reply: request_method is given
    if status < 200:
        if (te or length is not None) and status != 101:
            return Framing(INVALID, problem="an interim (1xx) reply announces a body")
        return BODILESS
    if te and length is not None:
        return Framing(INVALID, problem="the reply has both Content-Length and Transfer-Encoding")
    if request_method == "CONNECT" and status < 300:
        return BODILESS         # RFC 9112 6.3: the connection is a tunnel after the head
    if request_method == "HEAD" or status == 304:
        return BODILESS if length is None else Framing(NO_BODY, length)
    if status == 204:
        return BODILESS
    if te:
        if te == _CHUNKED_ONLY:
            return CHUNKED_BODY
        if te == [b"identity"]:
            return CLOSE_DELIMITED      # the obsolete no-op coding: read until close, as Squid does
        return Framing(INVALID, problem="the reply uses a transfer coding other than chunked")
    return CLOSE_DELIMITED if length is None else Framing(LENGTH, length)


def client_framing(received: Framing, client_version: str) -> Framing:
    """How a reply's body goes to the client: as received when its length is known
    (or there is none), else chunked for HTTP/1.1 clients, which keeps them
    connected, and close-delimited for HTTP/1.0 ones."""
    kind = received.kind
    if kind == CHUNKED or kind == CLOSE:
        return CHUNKED_BODY if client_version == "1.1" else CLOSE_DELIMITED
    return received


def body_prelude(framing: Framing) -> bytes:
    """A request head carrying nothing but ``framing``: primes a parser to read a
    body framed so (the body of an Upgrade request, which httptools leaves unread)."""
    if framing.kind == CHUNKED:
        return b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert framing.length is not None, "a request body is chunked or has a length"
    return b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % framing.length


def framing_fields(framing: Framing) -> bytes:
    """The framing fields squidpy writes for ``framing`` (never copied from a received head)."""
    kind = framing.kind
    if kind == CHUNKED:
        return b"Transfer-Encoding: chunked\r\n"
    if framing.length is not None and (kind == LENGTH or kind == NO_BODY):
        return b"Content-Length: %d\r\n" % framing.length
    return b""


def reads_end_after_heads(tail: bytes, data: bytes, heads: int) -> bool:
    """Whether a read (``data``, after the last bytes ``tail`` of the previous read of
    the same reply) ends exactly where the ``heads`` reply heads completed in it end.

    For a reply without a body (to HEAD) llhttp is stopped after the head and cannot
    say how much it used; every head ends at its first CRLFCRLF (llhttp refuses bare
    LF), so one more CRLFCRLF, or bytes after the last, are bytes no head accounted
    for: the connection must not be reused."""
    buf = tail + data
    return buf.endswith(b"\r\n\r\n") and buf.count(b"\r\n\r\n") == heads


class RequestHead:
    # a field the request does not carry leaves its class default: one head is made per request
    connection: set[bytes] | frozenset[bytes] = frozenset()
    content_length: int | None = None
    transfer_encoding: list[bytes] = []         # only ever replaced, never appended to in place
    upgrade: bytes | None = None
    expect_continue = False
    via: list[bytes] = []                       # (the same)
    forwarded_for: list[bytes] = []             # (the same)
    max_forwards: bytes | None = None
    host: bytes | None = None
    cache_fields = False            # any field a cache must look at (Cache-Control, If-*, Range)
    proxy_authorization: bytes | None = None    # the first one, as Squid reads credentials

    def __init__(self, method: str, target: str, version: str, headers: list[tuple[bytes, bytes]], size: int = 0):
        self.method = method
        self.target = target
        self.version = version            # "1.0" or "1.1"
        self.headers = headers
        self.size = size                  # bytes of the head as received
        connection_values = []
        for name, value in headers:
            key = _INTERESTING.get(name.lower())
            if key is None:
                continue
            if key == 1:
                connection_values.append(value)
            elif key == 2:
                self.content_length = int(value.strip())
            elif key == 3:
                te = list(self.transfer_encoding)
                token_list(value, te)
                self.transfer_encoding = te
            elif key == 4:
                self.upgrade = value if self.upgrade is None else self.upgrade + b", " + value
            elif key == 5:
                self.expect_continue = value.strip().lower() == b"100-continue"
            elif key == 6:
                self.via = [*self.via, value]
            elif key == 7:
                self.forwarded_for = [*self.forwarded_for, value]
            elif key == 8:
                self.max_forwards = value.strip()
            elif key == 9:
                self.host = value.strip()
            elif key == 10:
                connection_values.append(value)
            elif key == 11:
                self.cache_fields = True
            elif key == 12:
                if self.proxy_authorization is None:
                    self.proxy_authorization = value
        if connection_values:
            self.connection = comma_tokens(connection_values)
        if self.upgrade is not None and b"upgrade" not in self.connection:
            self.upgrade = None
        self.framing = framing_of(self)

    @property
    def keep_alive(self) -> bool:
        """RFC 9112 9.3: 1.1 persists unless 'close'; 1.0 only with keep-alive."""
        if self.version == "1.1":
            return b"close" not in self.connection
        return b"keep-alive" in self.connection

    def header(self, name: bytes) -> bytes | None:
        return field(self.headers, name)


_INTERESTING = {
    b"connection": 1, b"content-length": 2, b"transfer-encoding": 3, b"upgrade": 4,
    b"expect": 5, b"via": 6, b"x-forwarded-for": 7, b"max-forwards": 8, b"host": 9,
    b"proxy-connection": 10, b"proxy-authorization": 12,
    b"cache-control": 11, b"pragma": 11, b"if-none-match": 11, b"if-modified-since": 11,
    b"range": 11, b"if-range": 11, b"if-match": 11, b"if-unmodified-since": 11,
}


_REPLY_INTERESTING = {b"content-length": 1, b"transfer-encoding": 2, b"connection": 3, b"content-type": 4,
                      b"date": 5}


class ResponseHead:
    # a field the reply does not carry leaves its class default: one head is made per reply
    connection: set[bytes] | frozenset[bytes] = frozenset()
    content_length: int | None = None
    transfer_encoding: list[bytes] = []         # only ever replaced, never appended to in place
    content_type: bytes | None = None
    has_date = False

    def __init__(self, status: int, reason: bytes, version: str, headers: list[tuple[bytes, bytes]],
                 size: int = 0, request_method: str = "GET"):
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self.size = size
        connection_values = []
        for name, value in headers:
            key = _REPLY_INTERESTING.get(name.lower())
            if key is None:
                continue
            if key == 1:
                self.content_length = int(value.strip())
            elif key == 2:
                te = list(self.transfer_encoding)
                token_list(value, te)
                self.transfer_encoding = te
            elif key == 3:
                connection_values.append(value)
            elif key == 4:
                self.content_type = value
            else:
                self.has_date = True
        if connection_values:
            self.connection = comma_tokens(connection_values)
        self.framing = framing_of(self, request_method)

    @property
    def keep_alive(self) -> bool:
        if self.version == "1.1":
            return b"close" not in self.connection
        return b"keep-alive" in self.connection

    def header(self, name: bytes) -> bytes | None:
        return field(self.headers, name)

    @property
    def mime_type(self) -> str | None:
        if self.content_type is None:
            return None
        return self.content_type.split(b";", 1)[0].strip().decode("latin-1") or None


def via_value(version: str, hostname: str, name: str = SERVER_NAME) -> bytes:
    """RFC 9110 7.6.3: ``received-protocol received-by (comment)``."""
    return f"{version} {hostname} ({name})".encode("latin-1")


def is_forwarding_loop(via_values: list[bytes], hostname: str) -> bool:
    """True when one of the Via entries was added by a proxy called ``hostname``."""
    name = hostname.lower().encode("latin-1")
    for value in via_values:
        for entry in value.split(b","):
            parts = entry.split()
            if len(parts) >= 2 and parts[1].lower() == name:
                return True
    return False


_date_cache: tuple[int, bytes] = (0, b"")      # (the second, its IMF-fixdate)


def http_date(now: float | None = None) -> bytes:
    """IMF-fixdate, recomputed at most once a second."""
    global _date_cache
    now = int(time.time() if now is None else now)
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode("ascii"))
    return _date_cache[1]


def forwarded_for(mode: str, existing: list[bytes], client_ip: str) -> bytes | None:
    """The X-Forwarded-For value to send for ``forwarded_for MODE``, None to send none."""
    if mode == "transparent":
        return b", ".join(existing) if existing else None
    if mode == "delete":
        return None
    me = client_ip.encode("ascii") if mode in ("on", "truncate") else b"unknown"
    if mode == "truncate" or not existing:
        return me
    return b", ".join(existing) + b", " + me


CONDITIONAL_FIELDS = frozenset({b"if-none-match", b"if-modified-since"})


def request_head_for_origin(
    req: RequestHead,
    path: str,
    authority: str,
    client_ip: str,
    via: bytes | None,
    xff_mode: str,
    max_forwards: int | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
    also_drop: frozenset[bytes] | None = None,
    upgrade: bytes | None = None,
    close: bool = False,
    proxy_authorization: bytes | None = None,
    keep_proxy_authorization: bool = False,
) -> bytes:
    """The request squidpy sends upstream for ``req``, with ``path`` as its target (the
    absolute URL when it goes to a parent proxy), plus ``extra`` fields, without
    ``also_drop`` ones (a cache revalidating with its own validators); ``upgrade``: the
    Upgrade offers http_upgrade_request_protocols lets through; ``close``: the
    connection is not kept, server_persistent_connections off.  To a peer, the
    client's Proxy-Authorization goes on with ``keep_proxy_authorization``, or
    ``proxy_authorization`` is sent (cache_peer login=).

    The body is framed as ``req.framing`` says, whatever the received fields or
    their Connection tokens: Host, the framing fields, Via and X-Forwarded-For
    are written here, never copied."""
    framing = req.framing
    if framing.kind == INVALID:
        raise ValueError(f"a request that cannot be framed is never forwarded: {framing.problem}")
    skip = _NOT_COPIED_REQUEST
    if req.connection:
        skip = skip | req.connection
    if also_drop:
        skip = skip | also_drop
    out = [b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (
        req.method.encode("ascii"), path.encode("latin-1"), authority.encode("latin-1"))]
    append = out.append
    for name, value in req.headers:
        if name.lower() not in skip:
            append(b"%s: %s\r\n" % (name, value))
    if extra:
        for name, value in extra:
            if name.lower() not in _NOT_COPIED_REQUEST:
                append(b"%s: %s\r\n" % (name, value))
    if keep_proxy_authorization:
        for value in field_values(req.headers, b"proxy-authorization"):
            append(b"Proxy-Authorization: %s\r\n" % value)
    elif proxy_authorization is not None:
        append(b"Proxy-Authorization: %s\r\n" % proxy_authorization)
    if framing is not BODILESS:
        append(framing_fields(framing))
    if upgrade is not None:
        append(b"Connection: upgrade\r\nUpgrade: %s\r\n" % upgrade)
    elif close:
        append(b"Connection: close\r\n")
    if max_forwards is not None:
        append(b"Max-Forwards: %d\r\n" % max_forwards)
    elif req.max_forwards is not None:
        append(b"Max-Forwards: %s\r\n" % req.max_forwards)
    if req.via:
        for value in req.via:
            append(b"Via: %s\r\n" % value)
    if via is not None:
        append(b"Via: %s\r\n" % via)
    xff = forwarded_for(xff_mode, req.forwarded_for, client_ip)
    if xff is not None:
        append(b"X-Forwarded-For: %s\r\n" % xff)
    append(b"\r\n")
    return b"".join(out)


# received request fields never copied upstream: hop-by-hop, framing, and those written anew
_NOT_COPIED_REQUEST = HOP_BY_HOP | FRAMING_FIELDS | {b"host", b"via", b"x-forwarded-for", b"max-forwards"}

MAX_HEADER_FIELDS = 256          # more fields than this in one head: refused (431 / 502)
CHUNK_HEADER_ALLOWANCE = 32      # bytes of framing a chunk may carry beyond its data
CHUNK_SLACK = 4096               # trailers and the last chunk


class ChunkMeter:
    """Bounds chunk extensions and padding (RFC 9112 7.1.1) on a streamed chunked body.

    httptools skips extensions without showing them, so the meter compares the
    bytes read while the body was in progress with the data they carried:
    beyond CHUNK_SLACK plus CHUNK_HEADER_ALLOWANCE per chunk, the body is
    refused.  A request body that starts and ends within one read (at most
    64 KB) is not measured, since pipelined requests may share that read.
    """

    __slots__ = ("active", "raw", "body", "chunks", "head_estimate", "_was_active", "completed")

    def __init__(self) -> None:
        self.active = False
        self.raw = self.body = self.chunks = self.head_estimate = 0
        self._was_active = False
        self.completed = 0

    def start(self, head_estimate: int) -> None:
        self.active = True
        self.raw = self.body = self.chunks = 0
        self.head_estimate = head_estimate

    def stop(self) -> None:
        self.active = False
        self.completed += 1

    def before_read(self, n: int) -> None:
        self._was_active = self.active
        self.completed = 0
        if self.active:
            self.raw += n

    def exceeded_after_read(self, n: int) -> bool:
        if not self.active:
            return False
        if not self._was_active and not self.completed:
            # the body began in this read, right after a head of about this size
            self.raw = n - self.head_estimate
        return self._exceeded()

    def exceeded_at_end(self, n: int) -> bool:
        """For a reply (nothing may follow it in the same read): the whole body
        may have come in the read that carried its head."""
        if self.active and not self._was_active and not self.completed:
            self.raw = n - self.head_estimate
        return self._exceeded()

    def _exceeded(self) -> bool:
        return self.raw - self.body > CHUNK_SLACK + CHUNK_HEADER_ALLOWANCE * self.chunks


def response_head_for_client(
    resp: ResponseHead,
    framing: Framing,
    keep_alive: bool,
    client_version: str,
    via: bytes | None,
    x_cache: bytes | None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """The reply head squidpy sends to the client for the origin's ``resp``, its
    body framed as ``framing`` (from :func:`client_framing`) says: the framing
    fields are written here, never copied."""
    if resp.framing.kind == INVALID:
        raise ValueError(f"a reply that cannot be framed is never forwarded: {resp.framing.problem}")
    upgrading = resp.status == 101
    skip = _NOT_COPIED_REPLY
    if resp.connection:
        skip = skip | resp.connection
    if upgrading:
        skip = skip - _UPGRADE_FIELDS
    out = [b"HTTP/1.1 %d %s\r\n" % (resp.status, resp.reason)]
    append = out.append
    for name, value in resp.headers:
        if name.lower() not in skip:
            append(b"%s: %s\r\n" % (name, value))
    if not resp.has_date or b"date" in skip:
        append(b"Date: %s\r\n" % http_date())
    if extra:
        for name, value in extra:
            if name.lower() not in FRAMING_FIELDS:
                append(b"%s: %s\r\n" % (name, value))
    if framing is not BODILESS:
        append(framing_fields(framing))
    return end_of_head(out, keep_alive, client_version, via, x_cache, connection=not upgrading)


_NOT_COPIED_REPLY = HOP_BY_HOP | FRAMING_FIELDS
_UPGRADE_FIELDS = frozenset({b"upgrade", b"connection"})


# ---------------------------------------------------------------- reply heads squidpy makes
# Every reply head to a client ends the same way (end_of_head): Via, X-Cache, and the
# Connection field that says whether the connection stays open.

def end_of_head(out: list[bytes], keep_alive: bool, client_version: str, via: bytes | None,
                x_cache: bytes | None, connection: bool = True) -> bytes:
    """Append Via, X-Cache and Connection and the blank line to ``out``; returns the head.
    (``connection`` False: a 101 keeps the origin's own Connection: upgrade.)"""
    if via is not None:
        out.append(b"Via: %s\r\n" % via)
    if x_cache is not None:
        out.append(b"X-Cache: %s\r\n" % x_cache)
    if not connection:
        out.append(b"\r\n")
    elif not keep_alive:
        out.append(b"Connection: close\r\n\r\n")
    elif client_version == "1.0":
        out.append(b"Connection: keep-alive\r\n\r\n")
    else:
        out.append(b"\r\n")
    return b"".join(out)


def local_reply_head(status: int, content_type: bytes | None, length: int,
                     extra: list[tuple[bytes, bytes]] | None, keep_alive: bool, client_version: str,
                     via: bytes | None, x_cache: bytes | None, now: float | None = None,
                     server: str = SERVER_NAME) -> bytes:
    """The head of a reply squidpy makes itself (error pages, its own pages)."""
    out = [b"HTTP/1.1 %d %s\r\nServer: %s\r\nMime-Version: 1.0\r\nDate: %s\r\n" % (
        status, reason_phrase(status), server.encode(), http_date(now))]
    if content_type is not None:
        out.append(b"Content-Type: %s\r\n" % content_type)
    out.append(b"Content-Length: %d\r\n" % length)
    if extra:
        out.extend(b"%s: %s\r\n" % kv for kv in extra)
    return end_of_head(out, keep_alive, client_version, via, x_cache)


def stored_reply_head(start: bytes, age: float, fields: bytes, keep_alive: bool, client_version: str,
                      via: bytes | None, x_cache: bytes | None) -> bytes:
    """The head of a reply from the cache: the stored status line and fields
    (``start``), the Age of this hit and per-hit ``fields`` (ranges)."""
    return end_of_head([start, b"Age: %d\r\n" % int(age), fields], keep_alive, client_version, via, x_cache)


def interim_head_for_client(resp: ResponseHead, via: bytes | None) -> bytes:
    """A 1xx reply passed on (RFC 9110 15.2): hop-by-hop fields dropped."""
    drop = HOP_BY_HOP | resp.connection if resp.connection else HOP_BY_HOP
    out = [b"HTTP/1.1 %d %s\r\n" % (resp.status, resp.reason)]
    out.extend(b"%s: %s\r\n" % kv for kv in resp.headers if kv[0].lower() not in drop)
    if via is not None:
        out.append(b"Via: %s\r\n" % via)
    out.append(b"\r\n")
    return b"".join(out)


# Where Squid 5.7 (http/StatusCode.cc) words a status differently from Python's table
_SQUID_PHRASES = {413: b"Payload Too Large", 414: b"URI Too Long", 416: b"Requested Range Not Satisfiable",
                  505: b"HTTP Version not supported"}


def reason_phrase(status: int) -> bytes:
    """The reason phrase of ``status`` for replies squidpy makes, worded as Squid words it."""
    phrase = _SQUID_PHRASES.get(status)
    if phrase is not None:
        return phrase
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b"Unknown"


def raw_request_head(head: RequestHead) -> bytes:
    """The request head as received (the body of a TRACE answered here)."""
    lines = [f"{head.method} {head.target} HTTP/{head.version}".encode("latin-1")]
    lines.extend(b"%s: %s" % kv for kv in head.headers)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def tunnel_refusal(status_line: bytes) -> int | None:
    """A parent's answer to our CONNECT, by its status line: None when the tunnel is
    open (200: Squid's Http::Tunneler takes no other), else the status to answer with:
    the parent's own error status, 502 for anything that is not one."""
    parts = status_line.split(None, 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1] == b"200":
        return None
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() and len(parts[1]) == 3 else 502
    return status if 400 <= status <= 599 else 502


# ---------------------------------------------------------------- body framing
LAST_CHUNK = b"0\r\n\r\n"


def chunk(data: bytes) -> tuple[bytes, bytes, bytes]:
    """One chunk of a chunked body (RFC 9112 7.1), as parts to write in sequence."""
    return (b"%x\r\n" % len(data), data, b"\r\n")


def content_range_fields(first: int, last: int, length: int) -> bytes:
    return b"Content-Range: bytes %d-%d/%d\r\nContent-Length: %d\r\n" % (first, last, length, last - first + 1)


def multipart_byteranges(body: bytes, ranges: list[tuple[int, int]], length: int, content_type: bytes | None,
                         boundary: bytes) -> tuple[bytes, bytes]:
    """RFC 9110 14.6: several ranges as one multipart/byteranges payload."""
    parts = []
    for first, last in ranges:
        parts.append(b"--%s\r\n" % boundary)
        if content_type:
            parts.append(b"Content-Type: %s\r\n" % content_type)
        parts.append(b"Content-Range: bytes %d-%d/%d\r\n\r\n" % (first, last, length))
        parts.append(body[first:last + 1])
        parts.append(b"\r\n")
    parts.append(b"--%s--\r\n" % boundary)
    return boundary, b"".join(parts)
