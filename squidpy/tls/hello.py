"""TLS hello messages read from raw bytes, for SslBump's steps.

:func:`parse_client_hello` reads what a client sends first on a bumped
connection (after ``CONNECT``, or on an intercepting ``https_port``): the
records that carry its ClientHello, and in it the server name (SNI), the
protocols it offers (ALPN) and the versions it supports.  That is all
SslBump step 2 knows (``ssl::server_name`` matches the SNI).
:func:`parse_server_hello` reads the origin's first flight after a peek:
the version and protocol it chose and, before TLS 1.3, its certificates
(step 3).

Nothing here trusts a length: every length is checked against the bytes that
are there and against what contains it, and a handshake larger than
:data:`MAX_HANDSHAKE` is refused before it is buffered.  Both parsers are
called again with everything received so far and answer ``None`` until the
message is complete (as Squid's HandshakeParser does); bytes that cannot be
TLS raise :class:`NotTls`, TLS that breaks its own rules raises
:class:`MalformedHello`.  Leniency follows Squid's: the first ``host_name``
of the SNI extension is taken, unknown versions in ``supported_versions``
are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA = 20, 21, 22, 23
CLIENT_HELLO, SERVER_HELLO, CERTIFICATE, SERVER_HELLO_DONE = 1, 2, 11, 14
EXT_SERVER_NAME, EXT_ALPN, EXT_SUPPORTED_VERSIONS = 0, 16, 43

MAX_RECORD = 1 << 14          # RFC 8446 5.1: a plaintext fragment is at most 2^14 bytes
MAX_HANDSHAKE = 1 << 16       # a hello larger than this is refused (real ones are a few KB)
HELLO_RETRY_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")

VERSION_NAMES = {0x0002: "SSL/2.0", 0x0300: "SSL/3.0", 0x0301: "TLS/1.0", 0x0302: "TLS/1.1",
                 0x0303: "TLS/1.2", 0x0304: "TLS/1.3"}


class HelloError(ValueError):
    """The bytes are not a usable hello; ``str()`` says why, in words for cache_log."""


class NotTls(HelloError):
    """The peer does not speak TLS at all (plain HTTP on a bumped port, SSH ...)."""


class MalformedHello(HelloError):
    """TLS framing that breaks its own rules (lengths that do not add up ...)."""


def is_grease(value: int) -> bool:
    """RFC 8701 values (0x0A0A, 0x1A1A ... 0xFAFA) that clients send to keep servers honest."""
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF


def version_name(version: int | None) -> str:
    if version is None:
        return "-"
    return VERSION_NAMES.get(version, f"0x{version:04X}")


class _Reader:
    """Bytes read front to back; every read is checked against what is left."""

    __slots__ = ("data", "pos", "end", "what")

    def __init__(self, data: bytes, what: str, pos: int = 0, end: int | None = None):
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end
        self.what = what

    @property
    def left(self) -> int:
        return self.end - self.pos

    def take(self, n: int, field: str) -> bytes:
        if n > self.left:
            raise MalformedHello(f"{self.what}: {field} needs {n} bytes, {self.left} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self.take(size, field), "big")

    def vector(self, length_size: int, field: str, minimum: int = 0) -> "_Reader":
        """A length-prefixed part, read by its own reader bounded to that length."""
        n = self.uint(length_size, f"{field} length")
        if n < minimum:
            raise MalformedHello(f"{self.what}: {field} is shorter than {minimum} bytes")
        if n > self.left:
            raise MalformedHello(f"{self.what}: {field} claims {n} bytes, {self.left} left")
        sub = _Reader(self.data, f"{self.what} {field}", self.pos, self.pos + n)
        self.pos += n
        return sub

    def done(self, field: str) -> None:
        if self.left:
            raise MalformedHello(f"{self.what}: {self.left} stray bytes after {field}")


# ---------------------------------------------------------------- records

def _handshake_bytes(data: bytes, want_first: int, role: str) -> tuple[bytes, int, int] | None:
    """Join the handshake records at the start of ``data`` until one whole handshake
    message of type ``want_first`` is in.  Returns (message, record version, bytes
    used) or None when more bytes are needed."""
    joined = bytearray()
    pos = 0
    record_version = None
    while True:
        if len(data) - pos < 5:
            if pos == 0 and data:
                _first_bytes_are_tls(data, role)
            return None
        ctype, major, minor = data[pos], data[pos + 1], data[pos + 2]
        if pos == 0:
            _first_bytes_are_tls(data, role)
        if major != 3:
            raise MalformedHello(f"{role} record version {major}.{minor} is not TLS")
        length = int.from_bytes(data[pos + 3:pos + 5], "big")
        if length > MAX_RECORD:
            raise MalformedHello(f"{role} record of {length} bytes (at most {MAX_RECORD})")
        if ctype != HANDSHAKE:
            if ctype == ALERT:
                raise MalformedHello(f"{role} sent an alert instead of its hello")
            raise MalformedHello(f"{role} sent a record of type {ctype} before its hello was complete")
        if length == 0:
            raise MalformedHello(f"{role} sent an empty handshake record")
        if record_version is None:
            record_version = (major << 8) | minor
        if len(data) - pos - 5 < length:
            # the fragment is not all here yet, but its first bytes may already be wrong
            joined += data[pos + 5:]
            _check_message_start(joined, want_first, role)
            return None
        joined += data[pos + 5:pos + 5 + length]
        pos += 5 + length
        total = _check_message_start(joined, want_first, role)
        if total is not None and len(joined) >= total:
            return bytes(joined), record_version, pos


def _first_bytes_are_tls(data: bytes, role: str) -> None:
    first = data[0]
    if first == HANDSHAKE:
        return
    if first in (CHANGE_CIPHER_SPEC, ALERT, APPLICATION_DATA) and (len(data) == 1 or data[1] == 3):
        return          # TLS, but not a hello: _handshake_bytes says what is wrong
    if _looks_like_http(data):
        raise NotTls(f"{role} sent plain HTTP ({_printable(data[:20])}...) instead of TLS")
    raise NotTls(f"{role} does not speak TLS (first bytes {data[:8].hex()})")


def _check_message_start(joined: bytearray, want: int, role: str) -> int | None:
    """The total length of the first handshake message once its header is in."""
    if not joined:
        return None
    if joined[0] != want:
        name = "ClientHello" if want == CLIENT_HELLO else "ServerHello"
        raise MalformedHello(f"{role}'s first handshake message is of type {joined[0]}, not {name}")
    if len(joined) < 4:
        return None
    length = int.from_bytes(joined[1:4], "big")
    if length > MAX_HANDSHAKE:
        raise MalformedHello(f"{role} announces a hello of {length} bytes (at most {MAX_HANDSHAKE})")
    return 4 + length


_HTTP_STARTS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"CONNECT ", b"TRACE ",
                b"PATCH ", b"PRI * HTTP/2")


def _looks_like_http(data: bytes) -> bool:
    head = bytes(data[:12])
    return any(m.startswith(head) or head.startswith(m) for m in _HTTP_STARTS)


def _printable(data: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else "." for b in data)


# ---------------------------------------------------------------- ClientHello

@dataclass(frozen=True)
class ClientHello:
    """What a client's first flight says."""

    record_version: int                  # version field of the first record (0x0002 for SSLv2)
    legacy_version: int                  # ClientHello.legacy_version (client_version)
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: bytes
    extensions: tuple[tuple[int, bytes], ...]
    server_name: str | None              # SNI host_name, lower-case, no trailing dot; None: none usable
    sni_raw: bytes | None                # the host_name as sent (None: no SNI extension)
    alpn: tuple[str, ...]                # protocols offered, in the client's order
    supported_versions: tuple[int, ...]  # from the supported_versions extension (GREASE removed)
    size: int                            # bytes of the input the hello took (all its records)
    sslv2: bool = False                  # an SSLv2-compatible hello (no extensions possible)

    @property
    def version(self) -> int:
        """The highest version offered (supported_versions when the client sent it as
        RFC 8446 asks, with legacy_version 1.2; else legacy_version)."""
        if self.supported_versions and self.legacy_version == 0x0303:
            return max(self.supported_versions)
        return self.legacy_version

    @property
    def version_name(self) -> str:
        return version_name(self.version)

    def extension(self, ext_type: int) -> bytes | None:
        for t, body in self.extensions:
            if t == ext_type:
                return body
        return None


def parse_client_hello(data: bytes) -> ClientHello | None:
    """The ClientHello at the start of ``data`` (everything the client sent so far),
    or None until it is complete.  Raises :class:`NotTls` or :class:`MalformedHello`."""
    data = bytes(data)
    if not data:
        return None
    if data[0] & 0x80:
        if len(data) < 3:
            return None
        if _is_sslv2_hello(data):
            return _parse_sslv2_hello(data)
    found = _handshake_bytes(data, CLIENT_HELLO, "the client")
    if found is None:
        return None
    message, record_version, used = found
    r = _Reader(message, "ClientHello")
    r.take(1, "type")
    body = r.vector(3, "body")
    legacy_version = body.uint(2, "legacy_version")
    if legacy_version >> 8 != 3:
        raise MalformedHello(f"ClientHello: version 0x{legacy_version:04X} is not SSL 3 or TLS")
    random = body.take(32, "random")
    session_id = body.vector(1, "session_id")
    if session_id.left > 32:
        raise MalformedHello("ClientHello: session_id longer than 32 bytes")
    session = session_id.take(session_id.left, "session_id")
    suites_r = body.vector(2, "cipher_suites", minimum=2)
    if suites_r.left % 2:
        raise MalformedHello("ClientHello: cipher_suites of odd length")
    suites = tuple(suites_r.uint(2, "cipher suite") for _ in range(suites_r.left // 2))
    compression_r = body.vector(1, "compression_methods", minimum=1)
    compression = compression_r.take(compression_r.left, "compression_methods")
    extensions: list[tuple[int, bytes]] = []
    if body.left:                        # SSLv3-era hellos have no extensions at all
        ext_r = body.vector(2, "extensions")
        body.done("extensions")
        while ext_r.left:
            ext_type = ext_r.uint(2, "extension type")
            ext_body = ext_r.vector(2, f"extension {ext_type}")
            extensions.append((ext_type, ext_body.take(ext_body.left, f"extension {ext_type}")))
    r.done("the ClientHello")
    sni_raw, server_name, alpn, versions = None, None, (), ()
    for ext_type, ext_body in extensions:
        if ext_type == EXT_SERVER_NAME and sni_raw is None:
            sni_raw = _sni(ext_body)
            server_name = normalise_server_name(sni_raw)
        elif ext_type == EXT_ALPN and not alpn:
            alpn = _alpn(ext_body)
        elif ext_type == EXT_SUPPORTED_VERSIONS and not versions:
            versions = _client_versions(ext_body)
    return ClientHello(record_version, legacy_version, random, session, suites, compression, tuple(extensions),
                       server_name, sni_raw, alpn, versions, used)


def _sni(body: bytes) -> bytes:
    """RFC 6066 3: the first host_name of the ServerNameList (b"" if there is none)."""
    if not body:
        return b""
    r = _Reader(body, "server_name extension")
    names = r.vector(2, "ServerNameList")
    r.done("ServerNameList")
    while names.left:
        name_type = names.uint(1, "name_type")
        name = names.vector(2, "name")
        value = name.take(name.left, "name")
        if name_type == 0:
            return value
    return b""


def normalise_server_name(raw: bytes | None) -> str | None:
    """An SNI host name fit for ACLs and certificates: ASCII letters, digits, '-',
    '_' and '.', at most 253 characters; lower-case, trailing dot removed.
    Anything else is no usable name (None), as if the client had sent no SNI."""
    if not raw:
        return None
    if len(raw) > 254:
        return None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    text = text.lower()
    if text.endswith("."):
        text = text[:-1]
    if not text or text.startswith(".") or ".." in text:
        return None
    if not all(c.isalnum() and c.isascii() or c in "-_." for c in text):
        return None
    return text


def _alpn(body: bytes) -> tuple[str, ...]:
    r = _Reader(body, "ALPN extension")
    names = r.vector(2, "protocol_name_list", minimum=2)
    r.done("protocol_name_list")
    out = []
    while names.left:
        name = names.vector(1, "protocol name", minimum=1)
        out.append(name.take(name.left, "protocol name").decode("latin-1"))
    return tuple(out)


def _client_versions(body: bytes) -> tuple[int, ...]:
    r = _Reader(body, "supported_versions extension")
    versions = r.vector(1, "versions", minimum=2)
    r.done("versions")
    if versions.left % 2:
        raise MalformedHello("supported_versions of odd length")
    out = []
    while versions.left:
        v = versions.uint(2, "version")
        if not is_grease(v) and v >> 8 == 3:
            out.append(v)
    return tuple(out)


def _is_sslv2_hello(data: bytes) -> bool:
    """RFC 5246 E.2: a two-byte record header with the high bit set, then type 1."""
    return len(data) >= 3 and data[0] & 0x80 and data[2] == CLIENT_HELLO and (
        ((data[0] & 0x7F) << 8) | data[1]) > 0


def _parse_sslv2_hello(data: bytes) -> ClientHello | None:
    """An SSLv2-compatible ClientHello (old clients offering SSL 3/TLS 1.0): no SNI."""
    length = ((data[0] & 0x7F) << 8) | data[1]
    if len(data) < 2 + length:
        return None
    r = _Reader(data, "SSLv2 ClientHello", 2, 2 + length)
    r.take(1, "msg_type")
    version = r.uint(2, "version")
    cipher_len = r.uint(2, "cipher_specs length")
    session_len = r.uint(2, "session_id length")
    challenge_len = r.uint(2, "challenge length")
    if cipher_len % 3 or session_len > 32 or not 16 <= challenge_len <= 32:
        raise MalformedHello("SSLv2 ClientHello: impossible field lengths")
    specs = r.take(cipher_len, "cipher_specs")
    session = r.take(session_len, "session_id")
    challenge = r.take(challenge_len, "challenge")
    r.done("challenge")
    # RFC 5246 E.2: only 3-byte specs starting with 0 name TLS cipher suites
    suites = tuple(int.from_bytes(specs[i + 1:i + 3], "big") for i in range(0, len(specs), 3) if specs[i] == 0)
    return ClientHello(0x0002, version, challenge.rjust(32, b"\0"), session, suites, b"\0", (), None, None, (), (),
                       2 + length, sslv2=True)


# ---------------------------------------------------------------- the server's first flight

@dataclass(frozen=True)
class ServerHello:
    """What an origin's first flight says (after a peek or stare)."""

    legacy_version: int
    selected_version: int | None         # from supported_versions (TLS 1.3)
    cipher_suite: int
    alpn: str | None
    certificates: tuple[bytes, ...]      # DER, leaf first; empty from TLS 1.3 on (encrypted) or on resumption
    hello_retry: bool                    # a TLS 1.3 HelloRetryRequest
    size: int
    record_version: int | None = None    # version field of the first record

    @property
    def version(self) -> int:
        return self.selected_version or self.legacy_version

    @property
    def version_name(self) -> str:
        return version_name(self.version)


def parse_server_hello(data: bytes) -> ServerHello | None:
    """The origin's ServerHello and, before TLS 1.3, the Certificate message after it;
    None until the flight is complete enough to decide on (ServerHelloDone, or the
    first record that is not a plaintext handshake).  Raises like :func:`parse_client_hello`."""
    data = bytes(data)
    if not data:
        return None
    found = _handshake_bytes(data, SERVER_HELLO, "the server")
    if found is None:
        return None
    message, record_version, used = found
    r = _Reader(message, "ServerHello")
    r.take(1, "type")
    body = r.vector(3, "body")
    legacy_version = body.uint(2, "legacy_version")
    random = body.take(32, "random")
    session = body.vector(1, "session_id")
    if session.left > 32:
        raise MalformedHello("ServerHello: session_id longer than 32 bytes")
    cipher = body.uint(2, "cipher_suite")
    body.take(1, "compression_method")
    selected, alpn = None, None
    if body.left:
        ext_r = body.vector(2, "extensions")
        body.done("extensions")
        while ext_r.left:
            ext_type = ext_r.uint(2, "extension type")
            ext_body = ext_r.vector(2, f"extension {ext_type}")
            if ext_type == EXT_SUPPORTED_VERSIONS:
                selected = ext_body.uint(2, "selected_version")
                ext_body.done("selected_version")
            elif ext_type == EXT_ALPN:
                names = ext_body.vector(2, "protocol_name_list", minimum=2)
                ext_body.done("protocol_name_list")
                name = names.vector(1, "protocol name", minimum=1)
                names.done("the one protocol a server selects")
                alpn = name.take(name.left, "protocol name").decode("latin-1")
            else:
                ext_body.take(ext_body.left, "extension")
    hello_size = len(message) - r.left
    hello_retry = random == HELLO_RETRY_RANDOM
    if selected is not None and selected >= 0x0304:
        return ServerHello(legacy_version, selected, cipher, alpn, (), hello_retry, used, record_version)
    certificates = _certificates_after(message[hello_size:], data[used:])
    if certificates is None:
        return None
    certs, extra = certificates
    return ServerHello(legacy_version, selected, cipher, alpn, certs, hello_retry, used + extra, record_version)


def _certificates_after(rest: bytes, more: bytes) -> tuple[tuple[bytes, ...], int] | None:
    """The Certificate message of a TLS 1.2 flight: read handshake messages until
    ServerHelloDone or a non-handshake record (resumption: no certificates)."""
    buffered = bytearray(rest)
    used = 0
    certs: tuple[bytes, ...] = ()
    while True:
        while len(buffered) >= 4:
            msg_type = buffered[0]
            length = int.from_bytes(buffered[1:4], "big")
            if length > MAX_HANDSHAKE:
                raise MalformedHello(f"the server announces a handshake message of {length} bytes")
            if len(buffered) < 4 + length:
                break
            body = bytes(buffered[4:4 + length])
            del buffered[:4 + length]
            if msg_type == CERTIFICATE:
                certs = _certificate_list(body)
            elif msg_type == SERVER_HELLO_DONE:
                return certs, used
        if len(more) - used < 5:
            return None
        ctype, major = more[used], more[used + 1]
        length = int.from_bytes(more[used + 3:used + 5], "big")
        if major != 3 or length > MAX_RECORD + 2048:
            raise MalformedHello("the server's flight has a broken record header")
        if ctype != HANDSHAKE:
            return certs, used           # an abbreviated handshake (resumption) goes on with CCS
        if len(more) - used - 5 < length:
            return None
        buffered += more[used + 5:used + 5 + length]
        used += 5 + length
        if len(buffered) > MAX_HANDSHAKE:
            raise MalformedHello("the server's first flight is too large")


def _certificate_list(body: bytes) -> tuple[bytes, ...]:
    r = _Reader(body, "Certificate")
    chain = r.vector(3, "certificate_list")
    r.done("certificate_list")
    out = []
    while chain.left:
        cert = chain.vector(3, "certificate", minimum=1)
        out.append(cert.take(cert.left, "certificate"))
    return tuple(out)
