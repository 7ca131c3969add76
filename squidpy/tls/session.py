"""TLS without sockets: one side of a TLS connection as bytes in, bytes out.

A bumped connection changes protocol in the middle: the proxy reads a CONNECT
(and, after a peek, the client's ClientHello) in the clear, then the same
bytes must go through TLS.  A :class:`TlsSession` is OpenSSL over memory
BIOs, so the connection keeps reading raw bytes as before and hands them to
the session: :meth:`TlsSession.receive` takes bytes from the network and
answers with the plaintext they carried and the bytes to send back;
:meth:`TlsSession.send` turns plaintext into bytes for the network.  The
ClientHello already read is simply the first bytes received.  Nothing here
touches a socket or a clock, so the I/O layer (Twisted) decides when to read,
write and give up, and tests drive sessions with real TLS stacks.

:func:`bump_context` is the server side a bumped client sees: the minted
certificate and its chain, the port's TLS options, and ALPN answering
``http/1.1`` only (the exchange speaks HTTP/1.1; a client that offers only h2
gets no ALPN answer and falls back or gives up, as with Squid).
"""

from __future__ import annotations

from dataclasses import dataclass

from OpenSSL import SSL

from squidpy.tls.errors import SQUID_TLS_ERR_ACCEPT, SQUID_TLS_ERR_CONNECT, TlsFailure
from squidpy.tls.hello import HelloError, parse_client_hello, parse_server_hello, version_name
from squidpy.tls.options import TlsOptions
from squidpy.tls.verify import Verification, library_reason, system_reason

BUMP_ALPN = b"http/1.1"
READ_SIZE = 65536


def bump_context(minted, options: TlsOptions | None = None, alpn: bytes | None = BUMP_ALPN) -> SSL.Context:
    """The context for the client side of a bumped connection (or an https_port)."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    if options is not None:
        ctx.set_options(options.openssl_options())
        if options.cipher:
            ctx.set_cipher_list(options.cipher.encode())
    ctx.use_certificate(minted.cert)
    for extra in minted.chain:
        ctx.add_extra_chain_cert(extra)
    ctx.use_privatekey(minted.key)
    ctx.check_privatekey()
    if alpn is not None:
        def select(conn, offered):
            return alpn if alpn in offered else SSL.NO_OVERLAPPING_PROTOCOLS
        ctx.set_alpn_select_callback(select)
    return ctx


def port_context(tls, alpn: bytes | None = BUMP_ALPN) -> SSL.Context:
    """An https_port's context: its own certificate (and chain) and key, its options, and
    client certificates asked for when tls-cafile= or clientca= is given (required unless
    sslflags=CONDITIONAL_AUTH; DELAYED_AUTH and DONT_VERIFY_PEER ask for none), as Squid
    configures them.  Raises SSL.Error for files OpenSSL cannot use."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_options(tls.openssl_options())
    if tls.cipher:
        ctx.set_cipher_list(tls.cipher.encode())
    cert_file, key_file = tls.certs[0]
    ctx.use_certificate_chain_file(cert_file)
    ctx.use_privatekey_file(key_file)
    ctx.check_privatekey()
    cas = list(tls.cafiles) + ([tls.clientca] if tls.clientca else [])
    flags = tls.flags
    if cas and not flags & {"DELAYED_AUTH", "DONT_VERIFY_PEER"}:
        for cafile in cas:
            ctx.load_verify_locations(cafile)
        ctx.load_client_ca((tls.clientca or tls.cafiles[0]).encode())
        mode = SSL.VERIFY_PEER
        if "CONDITIONAL_AUTH" not in flags:
            mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
        ctx.set_verify(mode, lambda conn, cert, errnum, depth, ok: bool(ok))
    if alpn is not None:
        def select(conn, offered):
            return alpn if alpn in offered else SSL.NO_OVERLAPPING_PROTOCOLS
        ctx.set_alpn_select_callback(select)
    return ctx


@dataclass(frozen=True)
class TlsFacts:
    """What a TLS connection negotiated, for the log (%ssl::>negotiated_version and the
    like), in Squid's words: versions as ``TLS/1.2``, the cipher by its OpenSSL name.
    ``hello_version``: the version of the record that carried the peer's hello (often
    TLS/1.0 from modern clients); ``supported_version``: the highest the peer's hello
    offered (a client) or chose (a server)."""

    version: str | None = None
    cipher: str | None = None
    hello_version: str | None = None
    supported_version: str | None = None


def hello_facts(hello) -> TlsFacts:
    """The hello half of the facts, from a parsed ClientHello or ServerHello."""
    if hello is None:
        return TlsFacts()
    record = getattr(hello, "record_version", None)
    return TlsFacts(hello_version=version_name(record) if record is not None else None,
                    supported_version=hello.version_name)


PEER_HELLO_LIMIT = 65536


@dataclass
class TlsOutput:
    """What one call produced: bytes for the network, plaintext for the application."""

    network: bytes = b""
    plaintext: bytes = b""
    handshake_done: bool = False         # the handshake finished during this call
    closed: bool = False                 # the peer ended the session (close_notify, or EOF once established)
    failure: TlsFailure | None = None    # the session is dead; why


class TlsSession:
    """One TLS connection (server or client side) over memory BIOs."""

    def __init__(self, context: SSL.Context, server_side: bool, verification: Verification | None = None):
        self.conn = SSL.Connection(context, None)
        self.server_side = server_side
        self.verification = verification
        if verification is not None:
            verification.attach(self.conn)
        if server_side:
            self.conn.set_accept_state()
        else:
            self.conn.set_connect_state()
        self.established = False
        self.closed = False
        self.unclean = False             # closed without close_notify
        self.failure: TlsFailure | None = None
        self._pending_plaintext: list[bytes] = []
        self.peer_hello = None           # the peer's parsed hello (squidpy.tls.hello), for the log
        self._hello_bytes: bytearray | None = bytearray()
        self._facts: TlsFacts | None = None

    # ------------------------------------------------------------ facts
    @property
    def alpn(self) -> str | None:
        proto = self.conn.get_alpn_proto_negotiated()
        return proto.decode("latin-1") if proto else None

    @property
    def version(self) -> str | None:
        return self.conn.get_protocol_version_name() if self.established else None

    @property
    def server_name(self) -> str | None:
        name = self.conn.get_servername()
        return name.decode("idna") if name else None

    def peer_certificate(self):
        return self.conn.get_peer_certificate(as_cryptography=True)

    def facts(self) -> TlsFacts:
        """What was negotiated (once established) and what the peer's hello said."""
        if self._facts is not None:
            return self._facts
        hello = hello_facts(self.peer_hello)
        if not self.established:
            return hello
        name = self.conn.get_protocol_version_name()        # "TLSv1.3"
        version = name.replace("TLSv", "TLS/").replace("SSLv", "SSL/") if name else None
        if version and "/" in version and "." not in version:
            version += ".0"                                 # OpenSSL says TLSv1 for 1.0
        self._facts = TlsFacts(version, self.conn.get_cipher_name(), hello.hello_version, hello.supported_version)
        return self._facts

    def _keep_hello(self, data: bytes) -> None:
        """Parse the peer's hello from the first bytes it sends (never more than 64 KB)."""
        buf = self._hello_bytes
        buf += data
        try:
            hello = parse_client_hello(buf) if self.server_side else parse_server_hello(buf)
        except HelloError:
            hello, buf = None, None
        if hello is not None or buf is None or len(buf) > PEER_HELLO_LIMIT:
            self.peer_hello = hello
            self._hello_bytes = None

    # ------------------------------------------------------------ bytes in, bytes out
    def start(self) -> TlsOutput:
        """A client side's first flight (its ClientHello)."""
        out = TlsOutput()
        self._step(out)
        return out

    def receive(self, data: bytes) -> TlsOutput:
        """Bytes from the network (b"" for EOF): the plaintext they carried and what to send."""
        out = TlsOutput()
        if self.failure is not None:
            out.failure = self.failure
            return out
        if data:
            if self._hello_bytes is not None:
                self._keep_hello(data)
            self.conn.bio_write(data)
        else:
            self.conn.bio_shutdown()
        self._step(out)
        return out

    def send(self, plaintext: bytes) -> bytes:
        """Plaintext for the peer (once established): the bytes that carry it."""
        if not self.established:
            self._pending_plaintext.append(plaintext)
            return b""
        conn, size = self.conn, len(plaintext)
        written = conn.send(plaintext) if 0 < size <= 16384 else 0     # one record: no view, no slices
        if written < size:
            view = memoryview(plaintext)[written:]
            while view:
                view = view[conn.send(view[:16384]):]
        return self._drain()

    def close(self) -> bytes:
        """close_notify, for a clean end."""
        if self.failure is not None or not self.established:
            return b""
        try:
            self.conn.shutdown()
        except SSL.Error:
            pass
        return self._drain()

    # ------------------------------------------------------------ inside
    def _step(self, out: TlsOutput) -> None:
        try:
            if not self.established:
                try:
                    self.conn.do_handshake()
                except SSL.WantReadError:
                    out.network += self._drain()
                    return
                self.established = True
                out.handshake_done = True
                pending, self._pending_plaintext = self._pending_plaintext, []
                for chunk in pending:
                    out.network += self.send(chunk)
            out.plaintext += self._read_plaintext(out)
        except SSL.ZeroReturnError:
            self.closed = out.closed = True
        except SSL.SysCallError as e:
            if not self.established:
                self.failure = out.failure = self._failure(e)
            else:                        # the peer went away without close_notify (common, and
                self.closed = out.closed = True     # harmless when the HTTP framing was complete)
                self.unclean = True
        except SSL.Error as e:
            self.failure = out.failure = self._failure(e)
        out.network += self._drain()

    def _read_plaintext(self, out: TlsOutput) -> bytes:
        chunks = []
        while True:
            try:
                chunk = self.conn.recv(READ_SIZE)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self.closed = out.closed = True
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def _drain(self) -> bytes:
        """What the session has for the network.  A memory BIO gives all it holds up to
        READ_SIZE, so a shorter read empties it (no second read to learn that: each
        empty read costs an exception)."""
        bio_read = self.conn.bio_read
        try:
            chunk = bio_read(READ_SIZE)
        except SSL.WantReadError:
            return b""
        if len(chunk) < READ_SIZE:
            return chunk
        chunks = [chunk]
        while True:
            try:
                chunk = bio_read(READ_SIZE)
            except SSL.WantReadError:
                break
            chunks.append(chunk)
            if len(chunk) < READ_SIZE:
                break
        return b"".join(chunks)

    def _failure(self, exc: SSL.Error) -> TlsFailure:
        if self.verification is not None:
            return self.verification.failure(exc)
        return TlsFailure(SQUID_TLS_ERR_ACCEPT if self.server_side else SQUID_TLS_ERR_CONNECT,
                          lib_error=library_reason(exc), system_error=system_reason(exc))
