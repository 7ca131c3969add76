"""TLS origins on loopback whose certificates are good, expired, for another name,
self-signed, from an unknown CA, or not yet valid, all made by the test.

``TlsOrigin(cert_path, key_path)`` is :class:`tests.origin.Origin` (the same paths
and counters) behind TLS; the handshake happens in the connection's own thread,
so a client that stalls or fails its handshake holds up nobody else.
``OriginSet`` starts one origin per kind, signed by one test root CA whose
certificate a test hands to the proxy (``tls_outgoing_options cafile=``) or to
a client.
"""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

from tests.origin import Origin
from tests.tlscert import DAY, TestCA, write_pair

KINDS = ("good", "expired", "notyet", "wrongname", "selfsigned", "unknownca")


class TlsOrigin(Origin):
    def __init__(self, cert_path: Path, key_path: Path, host: str = "127.0.0.1", max_version=None,
                 alpn: tuple[str, ...] = ("http/1.1",), port: int = 0):
        super().__init__(host, port)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_path, key_path)
        if max_version is not None:
            self.context.maximum_version = max_version
        if alpn:
            self.context.set_alpn_protocols(list(alpn))
        self.socket = self.context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def url(self, path: str) -> str:
        return super().url(path).replace("http://", "https://", 1)

    def handle_error(self, request, client_address):
        """Clients that refuse our certificate are expected here: no traceback on stderr."""


class OriginSet:
    """One TLS origin per kind of certificate; ``names[kind]`` is the host name its
    certificate is for (resolve it to 127.0.0.1)."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.ca = TestCA()
        self.cafile = self.ca.write(directory / "test-root.pem")
        other_ca = TestCA("an unknown root")
        now = datetime.datetime.now(datetime.timezone.utc)
        self.names = {kind: f"{kind}.test" for kind in KINDS}
        certs = {
            "good": self.ca.issue(["good.test", "127.0.0.1"]),
            "expired": self.ca.issue(["expired.test"], not_before=now - 60 * DAY, not_after=now - 30 * DAY),
            "notyet": self.ca.issue(["notyet.test"], not_before=now + 30 * DAY, not_after=now + 60 * DAY),
            "wrongname": self.ca.issue(["another.test"]),
            "selfsigned": self.ca.issue(["selfsigned.test"], self_signed=True),
            "unknownca": other_ca.issue(["unknownca.test"]),
        }
        self.certs = {kind: cert for kind, (cert, _) in certs.items()}
        self.origins: dict[str, TlsOrigin] = {}
        for kind, (cert, key) in certs.items():
            cert_path, key_path = write_pair(directory, kind, cert, key)
            self.origins[kind] = TlsOrigin(cert_path, key_path).start()

    def port(self, kind: str) -> int:
        return self.origins[kind].port

    def stop(self) -> None:
        for origin in self.origins.values():
            origin.stop()
