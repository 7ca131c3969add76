"""Origin certificates checked as Squid checks them, with the reason in Squid's words.

:func:`client_context` makes the OpenSSL context for connections to origins
from ``tls_outgoing_options``: the system's trusted CAs unless
``default-ca=off``, plus ``cafile=``/``capath=``/``crlfile=``, ``options=`` and
``min-version=``, ``cipher=``, a client certificate (``cert=``/``key=``), and
no verification at all with ``flags=DONT_VERIFY_PEER``.

Each connection carries a :class:`Verification` (its app data).  OpenSSL asks
it about every certificate of the chain, as Squid's ``ssl_verify_cb`` is
asked: an OpenSSL error is recorded; the origin's own certificate must also
match the host asked for (Squid's name rules, :mod:`squidpy.tls.names`),
unless ``flags=DONT_VERIFY_DOMAIN``; an error that ``bypass`` allows
(``sslproxy_cert_error``) does not stop the handshake.  :meth:`Verification.failure`
then says why a handshake failed, as ERR_SECURE_CONNECT_FAIL tells it.
"""

from __future__ import annotations

import ssl
from typing import Callable

from cryptography import x509
from OpenSSL import SSL, crypto

from squidpy.tls.errors import (
    SQUID_TLS_ERR_CONNECT,
    SQUID_X509_V_ERR_DOMAIN_MISMATCH,
    CertError,
    TlsFailure,
)
from squidpy.tls.names import certificate_matches_host
from squidpy.tls.options import TlsOptions

Bypass = Callable[[CertError, "x509.Certificate | None"], bool]


class TlsSetupError(ValueError):
    """A file or setting the TLS context cannot use (a configuration error)."""


def client_context(options: TlsOptions, alpn: list[bytes] | None = None) -> SSL.Context:
    """An OpenSSL client context for origins, as ``tls_outgoing_options`` says.
    Raises TlsSetupError naming the file or setting that is wrong."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_options(options.openssl_options())
    if options.cipher:
        try:
            ctx.set_cipher_list(options.cipher.encode())
        except SSL.Error:
            raise TlsSetupError(f"cipher={options.cipher}: no cipher OpenSSL knows") from None
    if options.uses_default_ca(True):
        ctx.set_default_verify_paths()
    for cafile in options.cafiles:
        try:
            ctx.load_verify_locations(cafile)
        except SSL.Error:
            raise TlsSetupError(f"cafile={cafile}: cannot read CA certificates from it") from None
    if options.capath:
        try:
            ctx.load_verify_locations(None, options.capath)
        except SSL.Error:
            raise TlsSetupError(f"capath={options.capath}: not a directory of CA certificates") from None
    if options.crlfile:
        _load_crls(ctx, options)
    if options.certs:
        cert_file, key_file = options.certs[0]
        try:
            ctx.use_certificate_chain_file(cert_file)
            ctx.use_privatekey_file(key_file)
            ctx.check_privatekey()
        except SSL.Error:
            raise TlsSetupError(f"cert={cert_file} key={key_file}: not a certificate and its private key") from None
    if alpn:
        ctx.set_alpn_protos(alpn)
    if options.verify_peer:
        ctx.set_verify(SSL.VERIFY_PEER, _verify_callback)
    else:
        ctx.set_verify(SSL.VERIFY_NONE, _no_verify_callback)
    return ctx


def _load_crls(ctx: SSL.Context, options: TlsOptions) -> None:
    try:
        with open(options.crlfile, "rb") as f:
            data = f.read()
        crls = x509.load_pem_x509_crls(data) if hasattr(x509, "load_pem_x509_crls") else [
            x509.load_pem_x509_crl(data)]
    except (OSError, ValueError):
        raise TlsSetupError(f"crlfile={options.crlfile}: cannot read certificate revocation lists from it") from None
    store = ctx.get_cert_store()
    for crl in crls:
        store.add_crl(crl)
    flags = crypto.X509StoreFlags.CRL_CHECK
    if "VERIFY_CRL_ALL" in options.flags:
        flags |= crypto.X509StoreFlags.CRL_CHECK_ALL
    store.set_flags(flags)


class Verification:
    """One connection's certificate check: what was found and what was let through."""

    __slots__ = ("host", "check_domain", "bypass", "errors", "failed", "peer_cert", "__weakref__")

    def __init__(self, host: str | None, options: TlsOptions, bypass: Bypass | None = None):
        self.host = host                 # the name the certificate must carry (None: not known)
        self.check_domain = host is not None and options.verify_domain
        self.bypass = bypass
        self.errors: list[CertError] = []
        self.failed: CertError | None = None     # the first error not bypassed
        self.peer_cert: x509.Certificate | None = None

    def attach(self, conn: SSL.Connection) -> SSL.Connection:
        conn.set_app_data(self)
        if self.host and _is_name(self.host):
            conn.set_tlsext_host_name(self.host.encode("idna"))
        return conn

    def check(self, cert: x509.Certificate, errnum: int, depth: int, ok: bool) -> bool:
        """OpenSSL's question about one certificate; the answer lets the handshake go on."""
        if depth == 0:
            self.peer_cert = cert
        code = 0 if ok else errnum
        if ok and depth == 0 and self.check_domain and not certificate_matches_host(cert, self.host):
            ok, code = False, SQUID_X509_V_ERR_DOMAIN_MISMATCH
        if ok:
            return True
        error = CertError(code, cert, depth)
        if all(e.code != code or e.cert != cert for e in self.errors):
            self.errors.append(error)
        if self.bypass is not None and self.bypass(error, self.peer_cert):
            return True
        if self.failed is None:
            self.failed = error
        return False

    def failure(self, exc: BaseException | None = None) -> TlsFailure:
        """Why the handshake failed: the certificate error that stopped it, else the
        TLS library's complaint (SQUID_TLS_ERR_CONNECT)."""
        errors = tuple(self.errors)
        if self.failed is not None:
            broken = self.failed.cert if self.failed.code != SQUID_X509_V_ERR_DOMAIN_MISMATCH else self.peer_cert
            return TlsFailure(self.failed.code, errors, self.peer_cert, broken)
        return TlsFailure(SQUID_TLS_ERR_CONNECT, errors, self.peer_cert, None, library_reason(exc),
                          system_reason(exc))


def _verify_callback(conn: SSL.Connection, cert, errnum: int, depth: int, ok: int) -> bool:
    state = conn.get_app_data()
    if not isinstance(state, Verification):
        return bool(ok)
    return state.check(cert.to_cryptography(), errnum, depth, bool(ok))


def _no_verify_callback(conn, cert, errnum, depth, ok) -> bool:
    return True


def _is_name(host: str) -> bool:
    """SNI carries names only, never addresses (RFC 6066 3)."""
    import ipaddress
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True
    return False


def system_reason(exc: BaseException | None) -> str | None:
    """``(104) Connection reset by peer`` when the socket itself failed (Squid's %E)."""
    if isinstance(exc, SSL.SysCallError) and len(exc.args) >= 2 and isinstance(exc.args[0], int) \
            and exc.args[0] > 0:
        return f"({exc.args[0]}) {exc.args[1]}"
    return None


def library_reason(exc: BaseException | None) -> str:
    """OpenSSL's words for a failed handshake (``error:0A000410:SSL routines::sslv3 alert
    handshake failure``), or what happened to the connection."""
    if exc is None:
        return "[No Error]"
    if isinstance(exc, SSL.SysCallError):
        errno, text = (exc.args + (None, None))[:2]
        if errno in (-1, 0) or errno is None:
            return "the server closed the connection during the TLS handshake"
        return f"({errno}) {text}"
    if isinstance(exc, SSL.ZeroReturnError):
        return "the server closed the TLS connection during the handshake"
    if isinstance(exc, ssl.SSLError):
        return _stdlib_reason(exc)
    if isinstance(exc, SSL.Error) and exc.args and isinstance(exc.args[0], list):
        parts = []
        for entry in exc.args[0]:
            if isinstance(entry, tuple) and len(entry) == 3:
                lib, func, reason = entry
                parts.append(f"{lib}::{reason}" if lib else str(reason))
        if parts:
            return "; ".join(parts)
    return str(exc) or type(exc).__name__


def _stdlib_reason(exc: ssl.SSLError) -> str:
    """The same words for the standard library's ssl errors (``[SSL: HTTP_REQUEST] http
    request (_ssl.c:1006)`` becomes ``SSL routines::http request``)."""
    if isinstance(exc, ssl.SSLEOFError):
        return "the peer closed the connection during the TLS handshake"
    if isinstance(exc, ssl.SSLZeroReturnError):
        return "the peer closed the TLS connection during the handshake"
    text = exc.args[1] if len(exc.args) >= 2 and isinstance(exc.args[1], str) else str(exc)
    if text.startswith("[") and "] " in text:
        text = text.split("] ", 1)[1]
    if text.endswith(")") and " (_ssl.c:" in text:
        text = text.rsplit(" (_ssl.c:", 1)[0]
    library = getattr(exc, "library", None)
    return f"{library} routines::{text}" if library == "SSL" else f"{library}::{text}" if library else text
