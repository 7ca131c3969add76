"""The TLS work of one bumped keep-alive request, alone: pyOpenSSL against the standard library.

    python benchmarks/tls_micro.py [--requests 20000] [--rounds 5] [--request-size 1024] [--reply-size 1200]

The proxy's part of a bumped miss is four TLS operations: the client side decrypts the
browser's request record and encrypts the reply; the origin side encrypts the request
and decrypts the origin's reply record (a hit is the first two).  Each is run here on
established TLS 1.3 sessions over memory BIOs (EC certificates, AES-256-GCM as both
libraries negotiate by default), with the peers' records encrypted before the clock
starts, for three implementations:

- ``squidpy``: squidpy.tls.session as it is (a ServerTlsSession on the client side, a
  ClientTlsSession on the origin side);
- ``pyOpenSSL``: the fewest pyOpenSSL calls that do the work (the same library, the
  least Python around it: a lower bound for tuning the current binding);
- ``ssl.SSLObject``: the standard library's ``SSLObject`` over ``MemoryBIO``.

Prints CPU microseconds per request (process time): compare rows of one run.
"""

from __future__ import annotations

import argparse
import os
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from OpenSSL import SSL  # noqa: E402


def make_cert(tmp: str):
    from squidpy.tls.ca import init_ca, load_ca
    from squidpy.tls.certcache import CertCache, Minter
    from squidpy.tls.mint import CertProperties
    pem, crt = init_ca(os.path.join(tmp, "ca"), "bench CA", key_type="ec")
    minted = Minter(load_ca(str(pem)), CertCache(1 << 20)).certificate(CertProperties("origin.test"))
    path = os.path.join(tmp, "leaf.pem")
    Path(path).write_bytes(minted.pem())
    return minted, path, str(crt)


# ------------------------------------------------------------ pyOpenSSL, raw
class RawPy:
    """pyOpenSSL over memory BIOs with the fewest calls: one bio_write, one recv per
    record, one bio_read per send; no exception in the steady state."""

    def __init__(self, ctx, server_side: bool):
        self.conn = SSL.Connection(ctx, None)
        (self.conn.set_accept_state if server_side else self.conn.set_connect_state)()

    def handshake_step(self, data: bytes) -> bytes:
        if data:
            self.conn.bio_write(data)
        try:
            self.conn.do_handshake()
        except SSL.WantReadError:
            pass
        return self.drain()

    def drain(self) -> bytes:
        try:
            return self.conn.bio_read(65536)
        except SSL.WantReadError:
            return b""

    def receive_record(self, record: bytes) -> bytes:
        self.conn.bio_write(record)
        return self.conn.recv(16384)

    def send(self, data: bytes) -> bytes:
        self.conn.send(data)
        return self.conn.bio_read(65536)


# ------------------------------------------------------------ stdlib
class RawStd:
    def __init__(self, ctx: ssl.SSLContext, server_side: bool):
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=server_side,
                                server_hostname=None if server_side else "origin.test")

    def handshake_step(self, data: bytes) -> bytes:
        if data:
            self.incoming.write(data)
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.outgoing.read()

    def drain(self) -> bytes:
        return self.outgoing.read()

    def receive_record(self, record: bytes) -> bytes:
        self.incoming.write(record)
        return self.obj.read(16384)

    def send(self, data: bytes) -> bytes:
        self.obj.write(data)
        return self.outgoing.read()


def handshake(client, server) -> None:
    to_server = client.handshake_step(b"")
    for _ in range(10):
        to_client = server.handshake_step(to_server)
        to_server = client.handshake_step(to_client)
        if not to_server and not to_client:
            return
    raise AssertionError("no handshake")


def settle(client, server) -> None:
    """TLS 1.3 session tickets arrive after the handshake: let the client read them."""
    record = server.send(b"x")
    assert client.receive_record(record) == b"x"
    record = client.send(b"y")
    assert server.receive_record(record) == b"y"


def py_pair(minted, cafile):
    server_ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    server_ctx.use_certificate(SSL.X509.from_cryptography(minted.cert) if hasattr(SSL, "X509") else minted.cert)
    server_ctx.use_privatekey(minted.key)
    client_ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    client_ctx.load_verify_locations(cafile)
    return client_ctx, server_ctx


def std_pair(leaf_path, cafile):
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(leaf_path)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cafile)
    return client_ctx, server_ctx


def session_pair(minted, cafile):
    from squidpy.tls.session import ClientTlsSession, ServerTlsSession, bump_context
    client_ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    client_ctx.load_verify_locations(cafile)
    client = ClientTlsSession(client_ctx)
    server = ServerTlsSession(bump_context(minted))
    out = client.start()
    for _ in range(10):
        back = server.receive(out.network)
        out = client.receive(back.network)
        if client.established and server.established and not out.network:
            break
    assert client.established and server.established
    client.receive(server.send(b"x"))
    server.receive(client.send(b"y"))
    return client, server


def run(kind: str, minted, leaf, cafile, n: int, request: bytes, reply: bytes) -> dict[str, float]:
    """Per-request µs of: the client side (request in, reply out) and the origin side
    (request out, reply in), each on its own pair of sessions."""
    if kind == "squidpy":
        browser, proxy_client = session_pair(minted, cafile)
        proxy_server, origin = session_pair(minted, cafile)
        enc_req = [browser.send(request) for _ in range(n)]
        enc_rep = [origin.send(reply) for _ in range(n)]

        def client_side():
            for record in enc_req:
                out = proxy_client.receive(record)
                assert out.plaintext
                proxy_client.send(reply)

        def server_side():
            for record in enc_rep:
                proxy_server.send(request)
                out = proxy_server.receive(record)
                assert out.plaintext
    else:
        cls, pair = (RawPy, py_pair) if kind == "pyOpenSSL" else (RawStd, std_pair)
        if kind == "pyOpenSSL":
            client_ctx, server_ctx = pair(minted, cafile)
        else:
            client_ctx, server_ctx = pair(leaf, cafile)
        browser, proxy_client = cls(client_ctx, False), cls(server_ctx, True)
        proxy_server, origin = cls(client_ctx, False), cls(server_ctx, True)
        for c, s in ((browser, proxy_client), (proxy_server, origin)):
            handshake(c, s)
            settle(c, s)
        enc_req = [browser.send(request) for _ in range(n)]
        enc_rep = [origin.send(reply) for _ in range(n)]

        def client_side():
            for record in enc_req:
                assert proxy_client.receive_record(record)
                proxy_client.send(reply)

        def server_side():
            for record in enc_rep:
                proxy_server.send(request)
                assert proxy_server.receive_record(record)
    out = {}
    for name, fn in (("client side", client_side), ("origin side", server_side)):
        started = time.process_time()
        fn()
        out[name] = (time.process_time() - started) / n * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--request-size", type=int, default=1024)
    parser.add_argument("--reply-size", type=int, default=1200)
    args = parser.parse_args()
    request, reply = b"q" * args.request_size, b"r" * args.reply_size
    print(f"pyOpenSSL on {SSL.SSLeay_version(SSL.SSLEAY_VERSION).decode()}; ssl on {ssl.OPENSSL_VERSION}")
    with tempfile.TemporaryDirectory() as tmp:
        minted, leaf, cafile = make_cert(tmp)
        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for kind in ("squidpy", "pyOpenSSL", "ssl.SSLObject"):
                for side, value in run(kind, minted, leaf, cafile, args.requests, request, reply).items():
                    results.setdefault((kind, side), []).append(value)
        for (kind, side), values in results.items():
            print(f"{kind:<14} {side:<12} best {min(values):6.2f}  median {statistics.median(values):6.2f} us/request")


if __name__ == "__main__":
    main()
