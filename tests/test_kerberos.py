"""A test Kerberos realm (MIT krb5-kdc, tests/kdc.py) and Squid's
negotiate_kerberos_auth through the helper manager: curl --negotiate makes a
real SPNEGO token for HTTP/proxy.example.test (against a loopback server that
asks for Negotiate and records what it gets), and the helper accepts it (AF
token user).  The proxy's 407 round trip with curl --proxy-negotiate is in
tests/test_auth_e2e.py."""

from __future__ import annotations

import http.server
import os
import subprocess
import threading

import pytest

from tests import kdc as kdcmod
from tests.test_helper_processes import run

HELPER = "/usr/lib/squid/negotiate_kerberos_auth"


@pytest.fixture(scope="module")
def kdc(tmp_path_factory):
    assert os.path.exists("/usr/sbin/krb5kdc"), "krb5-kdc is missing: .ci/run installs it"
    server = kdcmod.Kdc(str(tmp_path_factory.mktemp("kdc"))).start()
    yield server
    server.stop()


def negotiate_token(kdc) -> str:
    """The token curl --negotiate sends to a server that answers 401 Negotiate."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            value = self.headers.get("Authorization")
            if value:
                seen.append(value)
                self.send_response(200)
            else:
                self.send_response(401)
                self.send_header("WWW-Authenticate", "Negotiate")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        subprocess.run(["curl", "-s", "-o", "/dev/null", "--negotiate", "-u", ":", "--max-time", "20",
                        "--resolve", f"{kdcmod.SERVICE_HOST}:{port}:127.0.0.1",
                        f"http://{kdcmod.SERVICE_HOST}:{port}/"],
                       env={**os.environ, **kdc.env}, check=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert seen and seen[0].startswith("Negotiate "), seen
    return seen[0].split(" ", 1)[1]


def test_kinit_against_the_test_realm(kdc):
    assert kdc.kinit("wrong password").returncode != 0
    assert kdc.kinit().returncode == 0


def test_negotiate_kerberos_auth_accepts_a_real_ticket(kdc):
    assert kdc.kinit().returncode == 0
    token = negotiate_token(kdc)
    answers, _ = run({"command": [HELPER, "-s", f"HTTP/{kdcmod.SERVICE_HOST}@{kdcmod.REALM}"],
                      "children": "1", "stateful": True,
                      "requests": [{"line": f"YR {token}"}, {"line": "YR bm90IGEgdG9rZW4="}]},
                     env=kdc.env)
    ok, bad = answers
    assert ok["result"] == "OK" and dict(ok["notes"])["user"] == f"{kdcmod.USER}@{kdcmod.REALM}"
    assert bad["result"] in ("BH", "ERR")
