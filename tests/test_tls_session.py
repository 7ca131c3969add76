"""TLS over memory BIOs (squidpy.tls.session), driven by real TLS stacks on loopback: curl and
Python's ssl against the bumping server side (minted certificate, ALPN http/1.1), the
client side against good and bad origins, and the faults a bumped port meets (no TLS at all,
a truncated handshake, TLS 1.0, a ClientHello read before the session existed)."""

from __future__ import annotations

import select
import socket
import ssl
import subprocess
import threading
import time

import pytest
from OpenSSL import SSL

from squidpy.tls.ca import init_ca, load_ca
from squidpy.tls.certcache import CertCache, Minter
from squidpy.tls.hello import parse_client_hello
from squidpy.tls.mint import CertProperties
from squidpy.tls.options import outgoing_defaults
from squidpy.tls.session import ClientTlsSession, ServerTlsSession, bump_context
from squidpy.tls.verify import Verification, client_context

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello bump!"


@pytest.fixture(scope="module")
def minted(tmp_path_factory):
    d = tmp_path_factory.mktemp("session")
    pem, crt = init_ca(str(d / "ca"), "Session CA")
    minter = Minter(load_ca(str(pem)), CertCache(1 << 20))
    return minter.certificate(CertProperties("bumped.test")), crt


def serve_one(listener: socket.socket, context, prefix_hello: bool = False, deadline: float = 15):
    """Accept one connection and run a ServerTlsSession on it: answer one HTTP request.
    Returns (session, the request's plaintext, failure)."""
    conn, _ = listener.accept()
    conn.setblocking(False)
    end = time.monotonic() + deadline
    received = b""
    if prefix_hello:                     # read the ClientHello in the clear first, as a peek does
        while parse_client_hello(received) is None and time.monotonic() < end:
            select.select([conn], [], [], 0.2)
            try:
                received += conn.recv(65536)
            except BlockingIOError:
                pass
    session = ServerTlsSession(context)
    request = b""
    pending = received if prefix_hello else None
    try:
        while time.monotonic() < end:
            if pending is None:
                select.select([conn], [], [], 0.2)
                try:
                    pending = conn.recv(65536)
                except BlockingIOError:
                    continue
            out = session.receive(pending)
            pending = None
            if out.network:
                conn.sendall(out.network)
            request += out.plaintext
            if out.failure is not None:
                return session, request, out.failure
            if b"\r\n\r\n" in request:
                conn.setblocking(True)
                conn.sendall(session.send(RESPONSE) + session.close())
                return session, request, None
        raise TimeoutError("no request")
    finally:
        conn.close()


def in_thread(target, *args):
    result = {}

    def run():
        try:
            result["value"] = target(*args)
        except BaseException as e:          # the test thread reports it
            result["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


@pytest.fixture
def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(4)
    s.settimeout(20)
    yield s
    s.close()


def finish(thread, result):
    thread.join(30)
    assert not thread.is_alive()
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_curl_through_the_bumping_side(minted, listener):
    cert, ca_file = minted
    port = listener.getsockname()[1]
    thread, result = in_thread(serve_one, listener, bump_context(cert))
    curl = subprocess.run(["curl", "-s", "-v", "--cacert", str(ca_file), "--resolve", f"bumped.test:{port}:127.0.0.1",
                           f"https://bumped.test:{port}/path"], capture_output=True, timeout=30)
    session, request, failure = finish(thread, result)
    assert failure is None and curl.stdout == b"hello bump!"
    assert request.startswith(b"GET /path HTTP/1.1\r\n")
    assert session.alpn == "http/1.1" and session.server_name == "bumped.test"
    facts = session.facts()              # curl's hello comes in a TLS/1.0 record and offers TLS 1.3
    assert (facts.version, facts.hello_version, facts.supported_version) == ("TLS/1.3", "TLS/1.0", "TLS/1.3")
    assert b"ALPN: server accepted http/1.1" in curl.stderr or b"ALPN, server accepted" in curl.stderr


def test_the_clienthello_read_before_the_session(minted, listener):
    cert, ca_file = minted
    port = listener.getsockname()[1]
    thread, result = in_thread(serve_one, listener, bump_context(cert), True)
    ctx = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="bumped.test") as tls:
            tls.sendall(b"GET /peeked HTTP/1.1\r\nHost: bumped.test\r\n\r\n")
            body = tls.recv(4096)
    session, request, failure = finish(thread, result)
    assert failure is None and request.startswith(b"GET /peeked") and body.endswith(b"hello bump!")


def test_h2_only_client_gets_no_alpn(minted, listener):
    cert, ca_file = minted
    port = listener.getsockname()[1]
    thread, result = in_thread(serve_one, listener, bump_context(cert))
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="bumped.test") as tls:
            assert tls.selected_alpn_protocol() is None
            tls.sendall(b"GET / HTTP/1.1\r\nHost: bumped.test\r\n\r\n")
            tls.recv(4096)
    session, _, failure = finish(thread, result)
    assert failure is None and session.alpn is None


def test_plain_http_on_the_bumping_side(minted, listener):
    cert, _ = minted
    port = listener.getsockname()[1]
    thread, result = in_thread(serve_one, listener, bump_context(cert))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(4096)
    session, request, failure = finish(thread, result)
    assert failure is not None and failure.name == "SQUID_TLS_ERR_ACCEPT" and request == b""
    assert failure.detail().startswith("Failed to accept a secure connection: ")


def test_truncated_handshake(minted):
    cert, _ = minted
    session = ServerTlsSession(bump_context(cert))
    from tests.tlsbytes import openssl_client_hello
    hello = openssl_client_hello("bumped.test")
    assert session.receive(hello[:40]).failure is None           # half a hello: wait for more
    out = session.receive(b"")                                   # then the client goes away
    assert out.failure is not None and out.failure.name == "SQUID_TLS_ERR_ACCEPT"
    assert session.receive(b"more").failure is out.failure       # a dead session stays dead


def test_tls10_client_is_refused_cleanly(minted):
    """A TLS 1.0-only client: the handshake fails with a reason, nothing raises."""
    cert, _ = minted
    server = ServerTlsSession(bump_context(cert))
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_VERSION)
    ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    client = SSL.Connection(ctx, None)
    client.set_connect_state()
    try:
        client.do_handshake()
    except SSL.WantReadError:
        pass
    out = server.receive(client.bio_read(65536))
    assert out.failure is not None and out.failure.name == "SQUID_TLS_ERR_ACCEPT"
    assert "version" in out.failure.lib_error or "protocol" in out.failure.lib_error
    assert out.network                                           # an alert tells the client why


def drive_client(session: ClientTlsSession, port: int, request: bytes, deadline: float = 10):
    """A ClientTlsSession over a real socket: handshake, one request, the whole reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=deadline) as s:
        s.setblocking(False)
        out = session.start()
        s.sendall(out.network)
        sent = False
        reply = b""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if session.established and not sent:
                s.sendall(session.send(request))
                sent = True
            select.select([s], [], [], 0.2)
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            out = session.receive(data)
            if out.network:
                s.sendall(out.network)
            reply += out.plaintext
            if out.failure is not None or not data or out.closed:
                return out.failure, reply
        raise TimeoutError("no reply")


def test_client_side_to_origins(tls_origins):
    options = outgoing_defaults()
    options.cafiles.append(str(tls_origins.cafile))
    ctx = client_context(options, [b"http/1.1"])
    good = ClientTlsSession(ctx, Verification("good.test", options))
    failure, reply = drive_client(good, tls_origins.port("good"),
                                  b"GET /size/5 HTTP/1.1\r\nHost: good.test\r\nConnection: close\r\n\r\n")
    assert failure is None and reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"xxxxx")
    assert good.alpn == "http/1.1" and good.version in ("TLSv1.2", "TLSv1.3")
    assert good.peer_certificate() == tls_origins.certs["good"]
    facts = good.facts()                 # what %ssl::<negotiated_version and the like log, in Squid's words
    assert facts.version in ("TLS/1.2", "TLS/1.3") and facts.cipher
    assert facts.hello_version == "TLS/1.2" and facts.supported_version == facts.version
    bad = ClientTlsSession(ctx, Verification("expired.test", options))
    failure, reply = drive_client(bad, tls_origins.port("expired"), b"GET / HTTP/1.1\r\n\r\n")
    assert failure.name == "X509_V_ERR_CERT_HAS_EXPIRED" and reply == b""


def session_pair(minted):
    """An established ClientTlsSession (pyOpenSSL) and ServerTlsSession (ssl.SSLObject),
    talking through memory only, the client trusting the minted certificate's CA."""
    cert, ca_file = minted
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.load_verify_locations(str(ca_file))
    client, server = ClientTlsSession(ctx), ServerTlsSession(bump_context(cert))
    to_server = client.start().network
    for _ in range(10):
        out = server.receive(to_server)
        to_server = client.receive(out.network).network
        if client.established and server.established and not to_server:
            break
    assert client.established and server.established
    assert server.receive(client.send(b"ping")).plaintext == b"ping"     # TLS 1.3 tickets read on the way
    assert client.receive(server.send(b"pong")).plaintext == b"pong"
    return client, server


@pytest.mark.parametrize("direction", ["to the server side", "to the client side"])
def test_records_split_joined_and_large(minted, direction):
    """A record cut in two gives its plaintext with the second half, two records in one
    read give both, a reply larger than one record arrives whole."""
    client, server = session_pair(minted)
    sender, receiver = (client, server) if direction == "to the server side" else (server, client)
    record = sender.send(b"GET /one HTTP/1.1\r\n\r\n")
    first = receiver.receive(record[:7])
    assert first.plaintext == b"" and first.failure is None
    assert receiver.receive(record[7:]).plaintext == b"GET /one HTTP/1.1\r\n\r\n"
    both = sender.send(b"first") + sender.send(b"second")
    assert receiver.receive(both).plaintext == b"firstsecond"
    big = bytes(range(256)) * 300                                    # 76800 bytes: five records
    wire = sender.send(big)
    assert len(wire) > len(big)
    assert receiver.receive(wire[:30000]).plaintext + receiver.receive(wire[30000:]).plaintext == big


@pytest.mark.parametrize("direction", ["to the server side", "to the client side"])
def test_close_notify_and_a_bare_eof(minted, direction):
    client, server = session_pair(minted)
    sender, receiver = (client, server) if direction == "to the server side" else (server, client)
    out = receiver.receive(sender.send(b"last") + sender.close())
    assert out.plaintext == b"last" and out.closed and not receiver.unclean and out.failure is None
    client, server = session_pair(minted)
    sender, receiver = (client, server) if direction == "to the server side" else (server, client)
    assert receiver.receive(sender.send(b"cut")).plaintext == b"cut"
    out = receiver.receive(b"")                                      # EOF without close_notify
    assert out.closed and receiver.unclean and out.failure is None


def test_the_pyopenssl_privates_the_client_side_reads(minted):
    """ClientTlsSession asks a memory BIO how much it holds through pyOpenSSL's privates
    (Connection._into_ssl and _from_ssl, OpenSSL._util.lib.BIO_get_mem_data): an
    upgrade that changes them fails here."""
    from squidpy.tls import session as module
    client, _ = session_pair(minted)
    assert module._held(client._into, client._data) == 0 and module._held(client._from, client._data) == 0
    client.conn.bio_write(b"\x17\x03\x03")
    assert module._held(client._into, client._data) == 3
    client.conn.send(b"x")
    assert module._held(client._from, client._data) > 0
