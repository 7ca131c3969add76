"""One transaction as the access log sees it (Squid's AccessLogEntry).

The proxy fills an entry as the transaction goes and hands it to the log
when it ends; :mod:`squidpy.log.logformat` turns it into a line.  Plain data:
no I/O, no formatting.
"""

from __future__ import annotations


class LogEntry:
    """Every field starts at its class default (what Squid logs when it is unknown);
    the exchange sets only what it learns, so making an entry costs little."""

    dns_time = None          # seconds spent in DNS, None if no lookup
    client_ip = "-"
    client_port = 0
    local_ip = "-"
    local_port = 0
    port_name = ""
    method = "NONE"          # Squid logs NONE when no method was parsed
    url = "error:invalid-request"
    path = ""
    version = ""             # e.g. "1.1"
    request_headers = ()     # [(name bytes, value bytes)] as received
    request_header_size = 0
    request_body_size = 0
    result = "TCP_MISS"      # Squid's %Ss
    hierarchy = "HIER_NONE"  # Squid's %Sh
    status = 0               # sent to the client (%>Hs)
    error = None             # ERR_* page name, if one was served
    error_detail = None
    server_ip = None         # origin address (%<a)
    server_port = None
    server_local_ip = None
    server_local_port = None
    upstream_status = None   # received from the origin (%<Hs)
    upstream_time = None     # seconds of server-side work (%<tt)
    upstream_bytes_in = 0
    upstream_bytes_out = 0
    reply_headers = ()       # [(name bytes, value bytes)] as sent
    reply_header_size = 0
    reply_body_size = 0
    mime_type = None
    user_login = None        # authenticated user name (%ul)
    user_external = None     # user name from an external ACL helper (%ue)
    user_ident = None        # ident (RFC 1413) user name (%ui)
    user_ssl = None          # TLS client certificate name (%us)
    tag = None               # tag returned by an external ACL (%et)
    ext_log = None           # log string returned by an external ACL (%ea)
    notes = ()               # [(name, value)] annotations (%note)

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
