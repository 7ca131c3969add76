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

One binding per side.  Where squidpy is the TLS server (a bumped client, an
https_port) a :class:`ServerTlsSession` uses the standard library's
``ssl.SSLObject`` over ``ssl.MemoryBIO``: every bumped request and reply passes
through it, and it costs a quarter of pyOpenSSL's per-call work
(benchmarks/tls_micro.py).  Where squidpy is the TLS client (origins,
cache_peers) a :class:`ClientTlsSession` uses pyOpenSSL, whose verify callback
lets squidpy see every certificate error and let some through
(sslproxy_cert_error), which the standard library cannot.  Certificates are
still minted with cryptography; a minted one reaches an ``SSLContext`` as a
PEM file written for the purpose.

:func:`bump_context` is the server side a bumped client sees: the minted
certificate and its chain, the port's TLS options, and ALPN answering
``http/1.1`` only (the exchange speaks HTTP/1.1; a client that offers only h2
gets no ALPN answer and falls back or gives up, as with Squid).
"""

from __future__ import annotations

import os
import ssl
import tempfile
import warnings
from dataclasses import dataclass

from cryptography import x509
from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from squidpy.tls.errors import SQUID_TLS_ERR_ACCEPT, SQUID_TLS_ERR_CONNECT, TlsFailure
from squidpy.tls.hello import HelloError, parse_client_hello, parse_server_hello, version_name
from squidpy.tls.options import TlsOptions
from squidpy.tls.verify import Verification, library_reason, system_reason

BUMP_ALPN = b"http/1.1"
READ_SIZE = 65536
RECORD_SIZE = 16384             # the most plaintext one TLS record carries


def _held(bio, data) -> int:
    """How many bytes a pyOpenSSL memory BIO holds (BIO_get_mem_data): pyOpenSSL asks
    OpenSSL only by reading, and an empty read costs an exception and a 64 KB buffer.
    The one place squidpy reaches into pyOpenSSL's privates (``Connection._into_ssl``,
    ``_from_ssl``, ``OpenSSL._util.lib``); tests/test_tls_session.py checks them."""
    return _lib.BIO_get_mem_data(bio, data)


def _server_context(options: TlsOptions | None, alpn: bytes | None) -> ssl.SSLContext:
    """A server SSLContext with OpenSSL's defaults (as pyOpenSSL and Squid have them,
    not Python's narrower cipher list) and the port's options and ALPN answer."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers(options.cipher if options is not None and options.cipher else "DEFAULT")
    if options is not None:
        with warnings.catch_warnings():      # OP_NO_TLSv1 and the like: Squid's way, deprecated in Python
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.options |= options.openssl_options()
    if alpn is not None:
        ctx.set_alpn_protocols([alpn.decode("latin-1")])
    return ctx


def bump_context(minted, options: TlsOptions | None = None, alpn: bytes | None = BUMP_ALPN) -> ssl.SSLContext:
    """The context for the client side of a bumped connection.  Raises ssl.SSLError
    for a certificate OpenSSL cannot use (or a cipher list it does not know)."""
    ctx = _server_context(options, alpn)
    fd, path = tempfile.mkstemp(prefix="squidpy-minted-", suffix=".pem")     # 0600, removed at once
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(minted.pem())
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)
    return ctx


def port_context(tls, alpn: bytes | None = BUMP_ALPN) -> ssl.SSLContext:
    """An https_port's context: its own certificate (and chain) and key, its options, and
    client certificates asked for when tls-cafile= or clientca= is given (required unless
    sslflags=CONDITIONAL_AUTH; DELAYED_AUTH and DONT_VERIFY_PEER ask for none), as Squid
    configures them.  Raises ssl.SSLError (or OSError) for files OpenSSL cannot use."""
    ctx = _server_context(tls, alpn)
    cert_file, key_file = tls.certs[0]
    ctx.load_cert_chain(cert_file, key_file)
    cas = list(tls.cafiles) + ([tls.clientca] if tls.clientca else [])
    flags = tls.flags
    if cas and not flags & {"DELAYED_AUTH", "DONT_VERIFY_PEER"}:
        for cafile in cas:
            ctx.load_verify_locations(cafile)
        ctx.verify_mode = ssl.CERT_OPTIONAL if "CONDITIONAL_AUTH" in flags else ssl.CERT_REQUIRED
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
    """What both sides share: the state, the peer's hello and the facts for the log.
    :class:`ServerTlsSession` and :class:`ClientTlsSession` move the bytes."""

    server_side = False

    def __init__(self):
        self.established = False
        self.closed = False
        self.unclean = False             # closed without close_notify
        self.failure: TlsFailure | None = None
        self._pending_plaintext: list[bytes] = []
        self.peer_hello = None           # the peer's parsed hello (squidpy.tls.hello), for the log
        self._hello_bytes: bytearray | None = bytearray()
        self._facts: TlsFacts | None = None

    def facts(self) -> TlsFacts:
        """What was negotiated (once established) and what the peer's hello said."""
        if self._facts is not None:
            return self._facts
        hello = hello_facts(self.peer_hello)
        if not self.established:
            return hello
        name = self.version                                 # "TLSv1.3"
        version = name.replace("TLSv", "TLS/").replace("SSLv", "SSL/") if name else None
        if version and "/" in version and "." not in version:
            version += ".0"                                 # OpenSSL says TLSv1 for 1.0
        self._facts = TlsFacts(version, self.cipher, hello.hello_version, hello.supported_version)
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

    def start(self) -> TlsOutput:
        """A client side's first flight (its ClientHello)."""
        out = TlsOutput()
        self._step(out)
        return out

    def _handshake_done(self, out: TlsOutput) -> None:
        self.established = out.handshake_done = True
        pending, self._pending_plaintext = self._pending_plaintext, []
        for chunk in pending:
            out.network += self.send(chunk)

    @property
    def version(self) -> str | None:
        """The negotiated protocol in OpenSSL's words (``TLSv1.3``), once established."""
        raise NotImplementedError

    @property
    def cipher(self) -> str | None:
        raise NotImplementedError

    def receive(self, data: bytes) -> TlsOutput:
        """Bytes from the network (b"" for EOF): the plaintext they carried and what to send."""
        out = TlsOutput()
        if self.failure is not None:
            out.failure = self.failure
            return out
        if data:
            if self._hello_bytes is not None:
                self._keep_hello(data)
            self._feed(data)
        else:
            self._feed_eof()
        self._step(out)
        return out

    def send(self, plaintext: bytes) -> bytes:
        raise NotImplementedError

    def _feed(self, data: bytes) -> None:
        """Hand received bytes to the TLS library."""
        raise NotImplementedError

    def _feed_eof(self) -> None:
        raise NotImplementedError

    def _step(self, out: TlsOutput) -> None:
        raise NotImplementedError


class ServerTlsSession(TlsSession):
    """The TLS server side (a bumped client, an https_port) on ``ssl.SSLObject``.
    The hot loop raises nothing: plaintext is read while the incoming BIO holds bytes
    (a partial record ends it with one SSLWantReadError), records are taken from the
    outgoing BIO in one read."""

    server_side = True

    def __init__(self, context: ssl.SSLContext):
        super().__init__()
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self._in, self._out, server_side=True)

    @property
    def alpn(self) -> str | None:
        return self.obj.selected_alpn_protocol()

    @property
    def version(self) -> str | None:
        return self.obj.version() if self.established else None

    @property
    def cipher(self) -> str | None:
        found = self.obj.cipher()
        return found[0] if found else None

    @property
    def server_name(self) -> str | None:
        """The SNI the client sent (from its ClientHello, which squidpy parses itself)."""
        hello = self.peer_hello
        return hello.server_name if hello is not None else None

    def peer_certificate(self) -> x509.Certificate | None:
        der = self.obj.getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der) if der else None

    def _feed(self, data: bytes) -> None:
        self._in.write(data)

    def _feed_eof(self) -> None:
        self._in.write_eof()

    def send(self, plaintext: bytes) -> bytes:
        """Plaintext for the peer (once established): the bytes that carry it."""
        if not self.established:
            self._pending_plaintext.append(plaintext)
            return b""
        if plaintext:
            self.obj.write(plaintext)
        return self._out.read()

    def close(self) -> bytes:
        """close_notify, for a clean end."""
        if self.failure is not None or not self.established:
            return b""
        try:
            self.obj.unwrap()
        except ssl.SSLError:
            pass                         # SSLWantReadError: the peer's close_notify is not awaited
        return self._out.read()

    def _step(self, out: TlsOutput) -> None:
        obj, incoming = self.obj, self._in
        try:
            if not self.established:
                try:
                    obj.do_handshake()
                except ssl.SSLWantReadError:
                    out.network += self._out.read()
                    return
                self._handshake_done(out)
            chunks = []
            while incoming.pending or incoming.eof:
                try:
                    chunk = obj.read(READ_SIZE)
                except ssl.SSLWantReadError:
                    break
                if not chunk:            # close_notify
                    self.closed = out.closed = True
                    break
                chunks.append(chunk)
            if chunks:
                out.plaintext += chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except ssl.SSLZeroReturnError:
            self.closed = out.closed = True
        except (ssl.SSLEOFError, ssl.SSLSyscallError) as e:
            if not self.established:
                self.failure = out.failure = self._failure(e)
            else:                        # the peer went away without close_notify (common, and
                self.closed = out.closed = True     # harmless when the HTTP framing was complete)
                self.unclean = True
        except ssl.SSLError as e:
            self.failure = out.failure = self._failure(e)
        out.network += self._out.read()

    def _failure(self, exc: ssl.SSLError) -> TlsFailure:
        return TlsFailure(SQUID_TLS_ERR_ACCEPT, lib_error=library_reason(exc), system_error=system_reason(exc))


class ClientTlsSession(TlsSession):
    """The TLS client side (origins, cache_peers with ``tls``) on pyOpenSSL over memory
    BIOs, its certificates checked by a :class:`~squidpy.tls.verify.Verification`."""

    def __init__(self, context: SSL.Context, verification: Verification | None = None):
        super().__init__()
        self.conn = SSL.Connection(context, None)
        self.verification = verification
        if verification is not None:
            verification.attach(self.conn)
        self.conn.set_connect_state()
        self._into, self._from = self.conn._into_ssl, self.conn._from_ssl     # see _held
        self._data = _ffi.new("char **")
        self._eof = False

    @property
    def alpn(self) -> str | None:
        proto = self.conn.get_alpn_proto_negotiated()
        return proto.decode("latin-1") if proto else None

    @property
    def version(self) -> str | None:
        return self.conn.get_protocol_version_name() if self.established else None

    @property
    def cipher(self) -> str | None:
        return self.conn.get_cipher_name()

    def peer_certificate(self):
        return self.conn.get_peer_certificate(as_cryptography=True)

    def _feed(self, data: bytes) -> None:
        self.conn.bio_write(data)

    def _feed_eof(self) -> None:
        self.conn.bio_shutdown()
        self._eof = True

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

    def _step(self, out: TlsOutput) -> None:
        try:
            if not self.established:
                try:
                    self.conn.do_handshake()
                except SSL.WantReadError:
                    out.network += self._drain()
                    return
                self._handshake_done(out)
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
        """Records while the incoming BIO holds bytes (a partial record ends it with one
        WantReadError), at most one record's plaintext (16 KB) per call."""
        chunks = []
        recv, into, held, data = self.conn.recv, self._into, _held, self._data
        while held(into, data) or self._eof:
            try:
                chunk = recv(RECORD_SIZE)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self.closed = out.closed = True
                break
            if not chunk:
                break
            chunks.append(chunk)
        if not chunks:
            return b""
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _drain(self) -> bytes:
        """What the session has for the network, in one read of exactly that much."""
        size = _held(self._from, self._data)
        return self.conn.bio_read(size) if size else b""

    def _failure(self, exc: SSL.Error) -> TlsFailure:
        if self.verification is not None:
            return self.verification.failure(exc)
        return TlsFailure(SQUID_TLS_ERR_CONNECT, lib_error=library_reason(exc), system_error=system_reason(exc))
