"""TLS hello bytes for tests: built field by field, or captured from real TLS stacks.

``client_hello(...)`` writes a ClientHello the way RFC 8446 lays it out (so a
test can vary one field), ``records(message, sizes)`` cuts a handshake message
into records of the given sizes, ``openssl_client_hello(...)`` and
``openssl_server_flight(...)`` are what OpenSSL itself sends.
"""

from __future__ import annotations

import os

from OpenSSL import SSL


def u8(n: int) -> bytes:
    return n.to_bytes(1, "big")


def u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def u24(n: int) -> bytes:
    return n.to_bytes(3, "big")


def vec8(b: bytes) -> bytes:
    return u8(len(b)) + b


def vec16(b: bytes) -> bytes:
    return u16(len(b)) + b


def sni_extension(*names: bytes, name_type: int = 0) -> tuple[int, bytes]:
    return 0, vec16(b"".join(u8(name_type) + vec16(n) for n in names))


def alpn_extension(*protocols: bytes) -> tuple[int, bytes]:
    return 16, vec16(b"".join(vec8(p) for p in protocols))


def versions_extension(*versions: int) -> tuple[int, bytes]:
    return 43, vec8(b"".join(u16(v) for v in versions))


def client_hello(extensions=(), version: int = 0x0303, suites=(0x1301, 0xC02F), session: bytes = b"",
                 random: bytes = bytes(32), compression: bytes = b"\0", with_extensions: bool = True) -> bytes:
    """A ClientHello handshake message (type, length, body)."""
    body = u16(version) + random + vec8(session) + vec16(b"".join(u16(s) for s in suites)) + vec8(compression)
    if with_extensions:
        body += vec16(b"".join(u16(t) + vec16(b) for t, b in extensions))
    return u8(1) + u24(len(body)) + body


def records(message: bytes, sizes=None, version: int = 0x0301, ctype: int = 22) -> bytes:
    """``message`` in TLS records, cut after each of ``sizes`` bytes (one record by default)."""
    out, pos = [], 0
    for size in list(sizes or ()) + [len(message)]:
        part = message[pos:pos + size]
        if not part:
            break
        out.append(u8(ctype) + u16(version) + u16(len(part)) + part)
        pos += len(part)
    return b"".join(out)


def openssl_client_hello(server_name: str | None = "example.com", alpn=(b"h2", b"http/1.1"),
                         max_version: int | None = None) -> bytes:
    """What OpenSSL (as any client built on it: curl, Python) sends first."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    if max_version is not None:
        ctx.set_max_proto_version(max_version)
    if alpn:
        ctx.set_alpn_protos(list(alpn))
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    if server_name:
        conn.set_tlsext_host_name(server_name.encode())
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        pass
    return conn.bio_read(65536)


def openssl_server_flight(client_bytes: bytes, cert_pem: bytes, key_pem: bytes, max_version: int | None = None,
                          alpn_select: bytes | None = None) -> bytes:
    """What an OpenSSL server answers to ``client_bytes`` (its first flight)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.use_certificate(x509.load_pem_x509_certificate(cert_pem))
    ctx.use_privatekey(load_pem_private_key(key_pem, None))
    if max_version is not None:
        ctx.set_max_proto_version(max_version)
    if alpn_select is not None:
        ctx.set_alpn_select_callback(lambda conn, offered: alpn_select)
    conn = SSL.Connection(ctx, None)
    conn.set_accept_state()
    conn.bio_write(client_bytes)
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        pass
    return conn.bio_read(65536)


def random_bytes(n: int) -> bytes:
    return os.urandom(n)
