"""One transaction as the access log sees it (Squid's AccessLogEntry).

The proxy fills an entry as the transaction goes and hands it to the log
when it ends; :mod:`squidpy.log.logformat` turns it into a line.  Plain data:
no I/O, no formatting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509

    from squidpy.http.message import Fields
    from squidpy.tls.errors import CertError, TlsFailure
    from squidpy.tls.session import TlsFacts


class LogEntry:
    """Every field starts at its class default (what Squid logs when it is unknown);
    the exchange sets only what it learns, so making an entry costs little."""

    dns_time: float | None = None                # seconds spent in DNS, None if no lookup
    client_ip: str = "-"
    client_port: int = 0
    local_ip: str = "-"
    local_port: int = 0
    port_name: str = ""
    method: str = "NONE"                         # Squid logs NONE when no method was parsed
    url: str = "error:invalid-request"
    path: str = ""
    version: str = ""                            # e.g. "1.1"
    request_headers: Fields = ()                 # [(name bytes, value bytes)] as received
    request_header_size: int = 0
    request_body_size: int = 0
    result: str = "TCP_MISS"                     # Squid's %Ss
    hierarchy: str = "HIER_NONE"                 # Squid's %Sh
    status: int = 0                              # sent to the client (%>Hs)
    error: str | None = None                     # ERR_* page name, if one was served
    error_detail: str | None = None
    server_ip: str | None = None                 # origin address (%<a)
    server_port: int | None = None
    server_local_ip: str | None = None
    server_local_port: int | None = None
    upstream_status: int | None = None           # received from the origin (%<Hs)
    upstream_time: float | None = None           # seconds of server-side work (%<tt)
    upstream_bytes_in: int = 0
    upstream_bytes_out: int = 0
    reply_headers: Fields = ()                   # [(name bytes, value bytes)] as sent
    reply_header_size: int = 0
    reply_body_size: int = 0
    mime_type: str | None = None
    user_login: str | None = None                # authenticated user name (%ul)
    user_external: str | None = None             # user name from an external ACL helper (%ue)
    user_ident: str | None = None                # ident (RFC 1413) user name (%ui)
    user_ssl: str | None = None                  # TLS client certificate name (%us)
    tag: str | None = None                       # tag returned by an external ACL (%et)
    ext_log: str | None = None                   # log string returned by an external ACL (%ea)
    notes: Sequence[tuple[str, str]] = ()        # [(name, value)] annotations (%note)
    # TLS (Squid's %ssl:: codes)
    bump_mode: str | None = None                 # the ssl_bump action that applied (%ssl::bump_mode)
    sni: str | None = None                       # the client's TLS server name (%ssl::>sni)
    server_cert: x509.Certificate | None = None  # the origin's certificate, once SslBump saw it
    tls_failure: TlsFailure | None = None        # why ERR_SECURE_CONNECT_FAIL
    client_cert: x509.Certificate | None = None  # the client's certificate (https_port), %ssl::>cert_subject
    cert_errors: Sequence[CertError] = ()        # the origin certificate's problems let through (%ssl::<cert_errors)
    client_tls: TlsFacts | None = None           # the client connection's TLS
    server_tls: TlsFacts | None = None           # ... of the origin connection
    denied_by: tuple[str, str] | None = None     # the access line that denied it: (FILE:LINE, line)

    def __init__(self, start: float = 0.0):
        self.start = start
        self.end = start

    @property
    def elapsed_ms(self) -> int:
        return int((self.end - self.start) * 1000)

    @property
    def user(self) -> str | None:
        """Squid's %un: the first name known, in Squid's order of sources."""
        return self.user_login or self.user_external or self.user_ssl or self.user_ident

    @property
    def bytes_sent(self) -> int:
        """Bytes sent to the client, headers included (Squid's ``%<st``)."""
        return self.reply_header_size + self.reply_body_size

    @property
    def bytes_received(self) -> int:
        """Bytes received from the client, headers included (``%>st``)."""
        return self.request_header_size + self.request_body_size
