"""Request and response heads as plain data, and how a proxy rewrites them.

Headers are kept as received: a list of ``(name, value)`` byte pairs in
order.  :class:`RequestHead` and :class:`ResponseHead` also note the fields
that decide framing and forwarding, found in one pass when the head is
complete.  The rewriting functions apply RFC 9110 section 7.6 (hop-by-hop
fields, Via) and RFC 9112 section 3.2.2 (Host from the target URI); they
return the bytes to send, and do no I/O.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

from squidpy import __version__

# RFC 9110 7.6.1 and RFC 9112 section 9.6: fields meant for one connection only.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"proxy-authorization", b"proxy-authenticate",
})

SERVER_NAME = f"squidpy/{__version__}"


def comma_tokens(values: list[bytes]) -> set[bytes]:
    """Lower-cased members of comma-separated field values."""
    tokens = set()
    for value in values:
        for part in value.split(b","):
            part = part.strip().lower()
            if part:
                tokens.add(part)
    return tokens


class RequestHead:
    __slots__ = (
        "method", "target", "version", "headers", "connection", "content_length",
        "chunked", "transfer_encoding", "upgrade", "expect_continue", "via",
        "forwarded_for", "max_forwards", "host", "size", "cache_fields",
    )

    def __init__(self, method: str, target: str, version: str, headers: list[tuple[bytes, bytes]], size: int = 0):
        self.method = method
        self.target = target
        self.version = version            # "1.0" or "1.1"
        self.headers = headers
        self.size = size                  # bytes of the head as received
        self.connection: set[bytes] = set()
        self.content_length: int | None = None
        self.transfer_encoding: list[bytes] = []
        self.chunked = False
        self.upgrade: bytes | None = None
        self.expect_continue = False
        self.via: list[bytes] = []
        self.forwarded_for: list[bytes] = []
        self.max_forwards: bytes | None = None
        self.host: bytes | None = None
        self.cache_fields = False       # any field a cache must look at (Cache-Control, If-*, Range)
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
                self.transfer_encoding.extend(comma_tokens([value]))
            elif key == 4:
                self.upgrade = value
            elif key == 5:
                self.expect_continue = value.strip().lower() == b"100-continue"
            elif key == 6:
                self.via.append(value)
            elif key == 7:
                self.forwarded_for.append(value)
            elif key == 8:
                self.max_forwards = value.strip()
            elif key == 9:
                self.host = value.strip()
            elif key == 10:
                connection_values.append(value)
            elif key == 11:
                self.cache_fields = True
        self.connection = comma_tokens(connection_values) if connection_values else set()
        self.chunked = bool(self.transfer_encoding) and self.transfer_encoding[-1] == b"chunked"
        if self.upgrade is not None and b"upgrade" not in self.connection:
            self.upgrade = None

    @property
    def keep_alive(self) -> bool:
        """RFC 9112 9.3: 1.1 persists unless 'close'; 1.0 only with keep-alive."""
        if self.version == "1.1":
            return b"close" not in self.connection
        return b"keep-alive" in self.connection

    def header(self, name: bytes) -> bytes | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


    @property
    def unknown_coding(self) -> bool:
        """RFC 9112 6.1: a request body coded with anything but chunked alone is refused
        (a server that does not understand a coding answers 501; a proxy cannot
        forward what it cannot frame, so squidpy answers 400)."""
        return bool(self.transfer_encoding) and self.transfer_encoding != [b"chunked"]


_INTERESTING = {
    b"connection": 1, b"content-length": 2, b"transfer-encoding": 3, b"upgrade": 4,
    b"expect": 5, b"via": 6, b"x-forwarded-for": 7, b"max-forwards": 8, b"host": 9,
    b"proxy-connection": 10,
    b"cache-control": 11, b"pragma": 11, b"if-none-match": 11, b"if-modified-since": 11,
    b"range": 11, b"if-range": 11, b"if-match": 11, b"if-unmodified-since": 11,
}


class ResponseHead:
    __slots__ = (
        "status", "reason", "version", "headers", "connection", "content_length",
        "chunked", "content_type", "has_date", "size",
    )

    def __init__(self, status: int, reason: bytes, version: str, headers: list[tuple[bytes, bytes]], size: int = 0):
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self.size = size
        self.content_length: int | None = None
        self.chunked = False
        self.content_type: bytes | None = None
        self.has_date = False
        connection_values = []
        for name, value in headers:
            lname = name.lower()
            if lname == b"content-length":
                self.content_length = int(value.strip())
            elif lname == b"transfer-encoding":
                self.chunked = value.strip().lower().endswith(b"chunked")
            elif lname == b"connection":
                connection_values.append(value)
            elif lname == b"content-type":
                self.content_type = value
            elif lname == b"date":
                self.has_date = True
        self.connection = comma_tokens(connection_values) if connection_values else set()

    @property
    def keep_alive(self) -> bool:
        if self.version == "1.1":
            return b"close" not in self.connection
        return b"keep-alive" in self.connection

    @property
    def mime_type(self) -> str | None:
        if self.content_type is None:
            return None
        return self.content_type.split(b";", 1)[0].strip().decode("latin-1") or None


def via_value(version: str, hostname: str) -> bytes:
    """RFC 9110 7.6.3: ``received-protocol received-by (comment)``."""
    return f"{version} {hostname} ({SERVER_NAME})".encode("latin-1")


def is_forwarding_loop(via_values: list[bytes], hostname: str) -> bool:
    """True when one of the Via entries was added by a proxy called ``hostname``."""
    name = hostname.lower().encode("latin-1")
    for value in via_values:
        for entry in value.split(b","):
            parts = entry.split()
            if len(parts) >= 2 and parts[1].lower() == name:
                return True
    return False


_date_cache = [0, b""]


def http_date(now: float | None = None) -> bytes:
    """IMF-fixdate, recomputed at most once a second."""
    now = int(time.time() if now is None else now)
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode("ascii")
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
) -> bytes:
    """The origin-form request squidpy sends upstream for ``req`` (plus ``extra``
    fields, without ``also_drop`` ones: a cache revalidating with its own validators)."""
    drop = HOP_BY_HOP
    if req.connection:
        drop = drop | req.connection
    if also_drop:
        drop = drop | also_drop
    out = [b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (
        req.method.encode("ascii"), path.encode("latin-1"), authority.encode("latin-1"))]
    append = out.append
    for name, value in req.headers:
        lname = name.lower()
        if lname in drop or lname in _REWRITTEN_REQUEST:
            continue
        append(b"%s: %s\r\n" % (name, value))
    if extra:
        for name, value in extra:
            append(b"%s: %s\r\n" % (name, value))
    if req.chunked:
        append(b"Transfer-Encoding: chunked\r\n")
    if req.upgrade is not None:
        append(b"Connection: Upgrade\r\nUpgrade: %s\r\n" % req.upgrade)
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


_REWRITTEN_REQUEST = frozenset({b"host", b"via", b"x-forwarded-for", b"max-forwards"})

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

    def __init__(self):
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


# How the body of a reply is framed towards the client.
LENGTH, CHUNKED, CLOSE, NO_BODY = "length", "chunked", "close", "none"


def response_head_for_client(
    resp: ResponseHead,
    framing: str,
    keep_alive: bool,
    client_version: str,
    via: bytes | None,
    x_cache: bytes | None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """The reply head squidpy sends to the client for the origin's ``resp``."""
    upgrading = resp.status == 101
    drop = HOP_BY_HOP
    if resp.connection:
        drop = drop | resp.connection
    if upgrading:
        drop = drop - {b"upgrade", b"connection"}
    out = [b"HTTP/1.1 %d %s\r\n" % (resp.status, resp.reason)]
    append = out.append
    for name, value in resp.headers:
        lname = name.lower()
        if lname in drop:
            continue
        if lname == b"content-length" and framing in (CHUNKED, CLOSE):
            continue
        append(b"%s: %s\r\n" % (name, value))
    if not resp.has_date:
        append(b"Date: %s\r\n" % http_date())
    if extra:
        for name, value in extra:
            append(b"%s: %s\r\n" % (name, value))
    if framing == CHUNKED:
        append(b"Transfer-Encoding: chunked\r\n")
    if via is not None:
        append(b"Via: %s\r\n" % via)
    if x_cache is not None:
        append(b"X-Cache: %s\r\n" % x_cache)
    if not upgrading:
        if not keep_alive:
            append(b"Connection: close\r\n")
        elif client_version == "1.0":
            append(b"Connection: keep-alive\r\n")
    append(b"\r\n")
    return b"".join(out)


def response_framing(request_method: str, resp: ResponseHead, client_version: str) -> str:
    """How to frame ``resp``'s body to the client (RFC 9112 6.3)."""
    status = resp.status
    if request_method == "HEAD" or status < 200 or status in (204, 304):
        return NO_BODY
    if resp.chunked:
        return CHUNKED if client_version == "1.1" else CLOSE
    if resp.content_length is not None:
        return LENGTH
    # close-delimited from the origin: chunk it for 1.1 clients to keep them alive
    return CHUNKED if client_version == "1.1" else CLOSE


# ---------------------------------------------------------------- reply heads squidpy makes
# Every reply head to a client ends the same way (end_of_head): Via, X-Cache, and the
# Connection field that says whether the connection stays open.

def end_of_head(out: list[bytes], keep_alive: bool, client_version: str, via: bytes | None,
                x_cache: bytes | None) -> bytes:
    """Append Via, X-Cache and Connection and the blank line to ``out``; returns the head."""
    if via is not None:
        out.append(b"Via: %s\r\n" % via)
    if x_cache is not None:
        out.append(b"X-Cache: %s\r\n" % x_cache)
    if not keep_alive:
        out.append(b"Connection: close\r\n\r\n")
    elif client_version == "1.0":
        out.append(b"Connection: keep-alive\r\n\r\n")
    else:
        out.append(b"\r\n")
    return b"".join(out)


def local_reply_head(status: int, content_type: bytes | None, length: int,
                     extra: list[tuple[bytes, bytes]] | None, keep_alive: bool, client_version: str,
                     via: bytes | None, x_cache: bytes | None, now: float | None = None) -> bytes:
    """The head of a reply squidpy makes itself (error pages, its own pages)."""
    out = [b"HTTP/1.1 %d %s\r\nServer: %s\r\nMime-Version: 1.0\r\nDate: %s\r\n" % (
        status, reason_phrase(status), SERVER_NAME.encode(), http_date(now))]
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


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase of ``status`` (RFC 9110 15), for replies squidpy makes."""
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b"Unknown"


def raw_request_head(head: RequestHead) -> bytes:
    """The request head as received (the body of a TRACE answered here)."""
    lines = [f"{head.method} {head.target} HTTP/{head.version}".encode("latin-1")]
    lines.extend(b"%s: %s" % kv for kv in head.headers)
    return b"\r\n".join(lines) + b"\r\n\r\n"


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
