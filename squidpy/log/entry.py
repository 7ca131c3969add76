"""One transaction as the access log sees it (Squid's AccessLogEntry).

The proxy fills an entry as the transaction goes and hands it to the log
when it ends; :mod:`squidpy.log.logformat` turns it into a line.  Plain data:
no I/O, no formatting.
"""

from __future__ import annotations


class LogEntry:
    __slots__ = (
        # times: time.time() floats
        "start", "end", "dns_time",
        # client connection
        "client_ip", "client_port", "local_ip", "local_port", "port_name",
        # the request as received
        "method", "url", "path", "version", "request_headers",
        "request_header_size", "request_body_size",
        # what the proxy did
        "result", "hierarchy", "status", "error", "error_detail",
        "server_ip", "server_port", "server_local_ip", "server_local_port",
        "upstream_status", "upstream_time", "upstream_bytes_in", "upstream_bytes_out",
        # the reply as sent to the client
        "reply_headers", "reply_header_size", "reply_body_size", "mime_type",
        # who: Squid's %ul %ue %ui %us, and what external ACLs said (%et %ea)
        "user_login", "user_external", "user_ident", "user_ssl", "tag", "ext_log",
        "notes",
        # the http_access (or http_reply_access) line that denied it: (FILE:LINE, the line)
        "denied_by",
    )

    def __init__(self, start: float = 0.0):
        self.start = start
        self.end = start
        self.dns_time = None          # seconds spent in DNS, None if no lookup
        self.client_ip = "-"
        self.client_port = 0
        self.local_ip = "-"
        self.local_port = 0
        self.port_name = ""
        self.method = "NONE"          # Squid logs NONE when no method was parsed
        self.url = "error:invalid-request"
        self.path = ""
        self.version = ""             # e.g. "1.1"
        self.request_headers = ()     # [(name bytes, value bytes)] as received
        self.request_header_size = 0
        self.request_body_size = 0
        self.result = "TCP_MISS"      # Squid's %Ss
        self.hierarchy = "HIER_NONE"  # Squid's %Sh
        self.status = 0               # sent to the client (%>Hs)
        self.error = None             # ERR_* page name, if one was served
        self.error_detail = None
        self.server_ip = None         # origin address (%<a)
        self.server_port = None
        self.server_local_ip = None
        self.server_local_port = None
        self.upstream_status = None   # received from the origin (%<Hs)
        self.upstream_time = None     # seconds of server-side work (%<tt)
        self.upstream_bytes_in = 0
        self.upstream_bytes_out = 0
        self.reply_headers = ()       # [(name bytes, value bytes)] as sent
        self.reply_header_size = 0
        self.reply_body_size = 0
        self.mime_type = None
        self.user_login = None        # authenticated user name (%ul)
        self.user_external = None     # user name from an external ACL helper (%ue)
        self.user_ident = None        # ident (RFC 1413) user name (%ui)
        self.user_ssl = None          # TLS client certificate name (%us)
        self.tag = None               # tag returned by an external ACL (%et)
        self.ext_log = None           # log string returned by an external ACL (%ea)
        self.notes = ()               # [(name, value)] annotations (%note)
        self.denied_by = None

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
