"""Differential tests for issue 13: the same configuration, helper programs, origin and
requests through Squid 5.7 (tests/squidproc.py) and through squidpy; the 407 replies
(status, challenges, error name, whether the connection stays open), the user and
result columns of access.log, the rewriter's redirect and external ACL users must
agree."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import read_response
from tests.origin import Origin
from tests.proxyproc import ProxyProcess
from tests.squidproc import SquidProcess

VISIBLE = "visible_hostname squid-under-test\n"


@pytest.fixture
def shared_dir():
    """A directory both proxies can read (Squid runs as 'proxy' when the tests run as root)."""
    path = Path(tempfile.mkdtemp(prefix="squid-auth-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def both(tmp_path, squid_stops):
    """``both(config)`` -> (squid, squidpy); the Squids finish stopping in the background
    (conftest.squid_stops), their logs kept in tmp_path."""
    started = []

    def start(config: str):
        squid = SquidProcess(tmp_path / f"squid{len(started)}", config)
        started.append(squid)
        ours = ProxyProcess(tmp_path / f"squidpy{len(started)}", VISIBLE + config)
        started.append(ours)
        return squid, ours

    yield start
    squid_stops(*started[0::2])
    for ours in started[1::2]:
        ours.stop()


@pytest.fixture(scope="module")
def web():
    server = Origin().start()
    yield server
    server.stop()


@pytest.fixture
def passwd(shared_dir):
    path = shared_dir / "passwd"
    subprocess.run(["htpasswd", "-cbB", str(path), "alice", "wonder land"], check=True, capture_output=True)
    subprocess.run(["htpasswd", "-bm", str(path), "bob", "builder"], check=True, capture_output=True)
    os.chmod(path, 0o644)
    return path


def basic(credentials: str) -> str:
    return "Proxy-Authorization: Basic " + base64.b64encode(credentials.encode()).decode() + "\r\n"


def exchange(port: int, requests: list[str]) -> list[tuple[int, dict, bytes] | None]:
    """Send requests one after another on one connection; None where the proxy had
    closed it before the request could be answered."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        f = s.makefile("rb")
        for raw in requests:
            try:
                s.sendall(raw.encode("latin-1"))
                method = raw.split(" ", 1)[0]
                # (a CONNECT here is always refused: its reply has a body like any other)
                answers.append(read_response(f, "GET" if method == "CONNECT" else method))
            except (EOFError, OSError):
                answers.append(None)
    return answers


def request(method: str, target: str, extra: str = "", close: bool = False) -> str:
    return (f"{method} {target} HTTP/1.1\r\nHost: {target.split('/')[2] if '://' in target else target}\r\n"
            + ("Connection: close\r\n" if close else "") + extra + "\r\n")


def fields(proxy, needle: str) -> list[str]:
    line = proxy.log_line(needle)
    assert line is not None, f"no log line with {needle!r} in {proxy.access_log}"
    f = line.split()
    return [f[3], f[5], f[6], f[7], f[8].split("/")[0], f[9]]      # result/status method url user hierarchy type


def test_basic_407_replies_and_log_lines_agree(both, web, passwd):
    squid, ours = both(f"auth_param basic program /usr/lib/squid/basic_ncsa_auth {passwd}\n"
                       "auth_param basic realm Staff proxy\nauth_param basic children 2\n"
                       "acl users proxy_auth REQUIRED\nacl bobs proxy_auth bob\n"
                       "http_access deny bobs\nhttp_access allow users\nhttp_access deny all\n")
    cases = [
        ("none", ""), ("wrong", basic("alice:guess")), ("right", basic("alice:wonder land")),
        ("upper", basic("ALICE:wonder land")), ("garbage", "Proxy-Authorization: Basic !!!!\r\n"),
        ("scheme", "Proxy-Authorization: Bearer abc\r\n"), ("bob", basic("bob:builder")),
    ]
    for proxy in (squid, ours):
        for name, extra in cases:
            proxy.answers = getattr(proxy, "answers", {})
            proxy.answers[name] = exchange(proxy.port, [request("GET", web.url(f"/echo/{name}"), extra)])[0]
    for name, _ in cases:
        theirs, mine = squid.answers[name], ours.answers[name]
        assert mine[0] == theirs[0], name
        for header in ("proxy-authenticate", "x-squid-error"):
            assert mine[1].get(header) == theirs[1].get(header), (name, header)
        assert fields(ours, f"/echo/{name}") == fields(squid, f"/echo/{name}"), name
    assert b"proxy-authorization" not in ours.answers["right"][2].lower()
    assert b"proxy-authorization" not in squid.answers["right"][2].lower()


def test_a_challenged_request_keeps_the_connection_like_squid(both, web, passwd):
    squid, ours = both(f"auth_param basic program /usr/lib/squid/basic_ncsa_auth {passwd}\n"
                       "acl users proxy_auth REQUIRED\nhttp_access allow users\nhttp_access deny all\n")
    for target, method in ((web.url("/echo/ka"), "GET"), (f"127.0.0.1:{web.port}", "CONNECT")):
        got = []
        for proxy in (squid, ours):
            answers = exchange(proxy.port, [request(method, target),
                                            request("GET", web.url("/echo/after"), basic("alice:wonder land"))])
            got.append([a[0] if a else None for a in answers])
        assert got[0] == got[1] == [407, 200], (method, got)


def test_challenges_in_squid_s_order_with_utf8_and_digest(both, web, passwd, shared_dir):
    digest_users = shared_dir / "digest_users"
    digest_users.write_text("alice:secret\n")
    os.chmod(digest_users, 0o644)
    squid, ours = both(f"auth_param digest program /usr/lib/squid/digest_file_auth {digest_users}\n"
                       "auth_param digest realm Digest realm\n"
                       f"auth_param basic program /usr/lib/squid/basic_ncsa_auth {passwd}\n"
                       "auth_param basic utf8 on\n"
                       "acl users proxy_auth REQUIRED\nhttp_access allow users\nhttp_access deny all\n")
    views = []
    for proxy in (squid, ours):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=15) as s:
            s.sendall(request("GET", web.url("/echo/order"), close=True).encode())
            head = s.makefile("rb").read().split(b"\r\n\r\n")[0].decode("latin-1")
        values = [line.split(": ", 1)[1] for line in head.split("\r\n") if line.lower().startswith("proxy-authenticate:")]
        views.append([v.split(", nonce=")[0] if v.startswith("Digest") else v for v in values])
    assert views[0] == views[1]


def test_rewriter_redirect_and_external_users_agree(both, web, shared_dir):
    rewriter = shared_dir / "rewriter.py"
    rewriter.write_text("import sys\nfor line in sys.stdin:\n"
                        "    url = line.split()[0]\n"
                        "    print('OK status=302 url=http://block.test/' if 'bad' in url else 'ERR', flush=True)\n")
    external = shared_dir / "external.py"
    external.write_text("import sys\nfor line in sys.stdin:\n"
                        "    who = line.split()[0]\n"
                        "    print(('OK user=' + who) if who != 'nobody' else 'ERR', flush=True)\n")
    for path in (rewriter, external):
        os.chmod(path, 0o755)
    python = "/usr/bin/python3"        # Squid's helpers run as its user, who cannot reach our venv
    squid, ours = both(f"url_rewrite_program {python} {rewriter}\n"
                       f"external_acl_type who ttl=60 %>ha{{X-Who}} {python} {external}\n"
                       "acl known external who\nhttp_access allow known\nhttp_access deny all\n")
    for proxy in (squid, ours):
        proxy.answers = {
            "bad": exchange(proxy.port, [request("GET", web.url("/echo/bad"), "X-Who: ann\r\n")])[0],
            "good": exchange(proxy.port, [request("GET", web.url("/echo/good"), "X-Who: ann\r\n")])[0],
            "nobody": exchange(proxy.port, [request("GET", web.url("/echo/nobody"), "X-Who: nobody\r\n")])[0],
        }
    assert squid.answers["bad"][0] == ours.answers["bad"][0] == 302
    assert squid.answers["bad"][1]["location"] == ours.answers["bad"][1]["location"] == "http://block.test/"
    assert squid.answers["bad"][1]["content-length"] == ours.answers["bad"][1]["content-length"] == "0"
    for name in ("bad", "good", "nobody"):
        assert ours.answers[name][0] == squid.answers[name][0], name
        assert fields(ours, f"/echo/{name}") == fields(squid, f"/echo/{name}"), name
