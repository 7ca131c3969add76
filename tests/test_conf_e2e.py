"""End to end through the real proxy: header rules, follow_x_forwarded_for, miss_access,
tcp_outgoing_address, hosts_file/append_domain, persistence and the client timeouts, and
error pages in the client's language, with real clients (raw sockets, curl) and a real origin."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest

from squidpy.errors import LANGPACK_DIR
from tests.conftest import LOCAL_POLICY, read_response
from tests.proxyproc import wait_for


def ask(port: int, target: str, headers: dict | None = None, method: str = "GET", close: bool = True):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        host = target.split("/")[2] if "://" in target else target
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
        if close:
            lines.append("Connection: close")
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return read_response(s.makefile("rb"), method)


def echoed(answer) -> tuple[dict, dict]:
    status, headers, body = answer
    assert status == 200, (status, body[:300])
    doc = json.loads(body)
    return doc, {k.lower(): v for k, v in doc["headers"]}


# ------------------------------------------------------------ header rules

HEADER_RULES = LOCAL_POLICY + """
acl local_net src 127.0.0.0/8
request_header_access Cookie deny all
request_header_access User-Agent deny all
request_header_replace User-Agent Nutscrape/1.0 (CP/M; 8-bit)
request_header_access Via deny all
request_header_add X-Client "%>a:%>p" local_net
request_header_add X-Tag tagged
request_header_access Content-Length deny all
reply_header_access Server deny all
reply_header_access Transfer-Encoding deny all
reply_header_access X-Cache deny all
reply_header_add X-Filtered "by %{Host}>h"
"""


def test_header_rules_shape_what_the_origin_and_the_client_see(shared_proxy, origin):
    proxy = shared_proxy(HEADER_RULES)
    doc, seen = echoed(ask(proxy.port, origin.url("/echo"), {"Cookie": "id=secret", "User-Agent": "curl/8",
                                                              "X-Other": "kept"}))
    assert "cookie" not in seen and "via" not in seen
    assert seen["user-agent"] == "Nutscrape/1.0 (CP/M; 8-bit)" and seen["x-other"] == "kept"
    assert seen["x-client"].startswith("127.0.0.1:") and seen["x-tag"] == "tagged"
    status, headers, body = ask(proxy.port, origin.url("/size/100"))
    assert status == 200 and body == b"x" * 100
    assert "server" not in headers and "x-cache" not in headers
    assert headers["x-filtered"] == f"by 127.0.0.1:{origin.port}" and headers["content-length"] == "100"
    assert "Content-Length" in proxy.read_cache_log()          # the warning about the ignored rule


def test_a_rule_naming_transfer_encoding_cannot_break_a_chunked_reply(shared_proxy, origin):
    proxy = shared_proxy(HEADER_RULES)
    out = subprocess.run(["curl", "-s", "-x", proxy.url, "-D", "-", origin.url("/chunked/5000")],
                         capture_output=True, timeout=20)
    head, body = out.stdout.split(b"\r\n\r\n", 1)
    assert out.returncode == 0 and body == b"c" * 5000
    assert b"Transfer-Encoding: chunked" in head and b"X-Filtered:" in head


def test_a_posted_body_still_reaches_the_origin_whole(shared_proxy, origin):
    proxy = shared_proxy(HEADER_RULES)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(f"POST {origin.url('/echo')} HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n"
                  "Connection: close\r\n\r\nhello world".encode())
        doc, seen = echoed(read_response(s.makefile("rb")))
    assert doc["body"] == "hello world" and seen["content-length"] == "11"


def test_reply_rules_apply_to_hits_and_to_squidpys_own_pages(make_proxy, origin):
    proxy = make_proxy(HEADER_RULES + "reply_header_add X-Mine mine\n")
    url = origin.url("/obj/rules-hit?cc=max-age%3D600")
    ask(proxy.port, url)
    status, headers, _ = ask(proxy.port, url)
    assert headers.get("x-mine") == "mine" and "server" not in headers
    assert proxy.log_line("TCP_MEM_HIT") is not None
    status, headers, _ = ask(proxy.port, "http://127.0.0.1:1/", {"Host": "x"})      # refused by the origin
    assert status == 503 and headers.get("x-mine") == "mine" and "server" not in headers


def test_httpd_suppress_version_string_hides_the_version(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "httpd_suppress_version_string on\n")
    status, headers, body = ask(proxy.port, "http://127.0.0.1:1/")
    assert headers["server"] == "squidpy" and "(squidpy)" in headers["via"] and b"squidpy/" not in body
    doc, seen = echoed(ask(proxy.port, origin.url("/echo")))
    assert seen["via"].endswith("(squidpy)")


# ------------------------------------------------------------ follow_x_forwarded_for

XFF = """
acl lb src 127.0.0.1
follow_x_forwarded_for allow lb
acl office src 10.20.0.0/16
http_access allow office
http_access deny all
"""


def test_the_indirect_client_is_tested_and_logged(make_proxy, origin):
    proxy = make_proxy(XFF)
    doc, seen = echoed(ask(proxy.port, origin.url("/echo"), {"X-Forwarded-For": "10.20.3.4"}))
    assert seen["x-forwarded-for"] == "10.20.3.4, 127.0.0.1"
    assert proxy.log_line("/echo").split()[2] == "10.20.3.4"
    assert ask(proxy.port, origin.url("/echo"))[0] == 403                           # no header: the direct client
    assert ask(proxy.port, origin.url("/echo"), {"X-Forwarded-For": "192.0.2.1"})[0] == 403


def test_an_untrusted_client_cannot_claim_an_address(make_proxy, origin):
    proxy = make_proxy(XFF.replace("acl lb src 127.0.0.1", "acl lb src 127.0.0.9"))
    assert ask(proxy.port, origin.url("/echo"), {"X-Forwarded-For": "10.20.3.4"})[0] == 403


# ------------------------------------------------------------ miss_access

def test_miss_access_refuses_fetches_but_serves_hits(make_proxy, origin):
    url = origin.url("/obj/miss-access?cc=max-age%3D600")
    proxy = make_proxy(LOCAL_POLICY + "acl fetchers src 127.0.0.1\nmiss_access allow fetchers\nmiss_access deny all\n")
    assert ask(proxy.port, url)[0] == 200                                  # 127.0.0.1 may fetch
    before = origin.count()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10, source_address=("127.0.0.2", 0)) as s:
        s.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\nGET {origin.url('/size/5')} HTTP/1.1\r\nHost: x\r\n"
                  "Connection: close\r\n\r\n".encode())
        f = s.makefile("rb")
        hit, refused = read_response(f), read_response(f)
    assert hit[0] == 200 and hit[1]["x-cache"].startswith("HIT")
    assert refused[0] == 403 and refused[1]["x-squid-error"] == "ERR_FORWARDING_DENIED 0"
    assert origin.count() == before
    assert "TCP_MISS/403" in proxy.log_line("/size/5")


# ------------------------------------------------------------ tcp_outgoing_address

def test_origin_connections_come_from_the_chosen_address(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "acl two src 127.0.0.2\ntcp_outgoing_address 127.0.0.3 two\n"
                       "tcp_outgoing_address 127.0.0.4\n")
    doc, _ = echoed(ask(proxy.port, origin.url("/echo")))
    assert doc["client"] == "127.0.0.4"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10, source_address=("127.0.0.2", 0)) as s:
        s.sendall(f"GET {origin.url('/echo')} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        doc, _ = echoed(read_response(s.makefile("rb")))
    assert doc["client"] == "127.0.0.3"


def test_an_address_that_is_not_ours_fails_to_connect(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "tcp_outgoing_address 192.0.2.77\n")
    status, headers, _ = ask(proxy.port, origin.url("/echo"))
    assert status == 503 and headers["x-squid-error"] == "ERR_CONNECT_FAIL 0"


# ------------------------------------------------------------ hosts_file and append_domain

def test_hosts_file_and_append_domain(make_proxy, origin, tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 intranet\n127.0.0.5 shared.test\n127.0.0.1 shared.test\n")
    proxy = make_proxy(f"hosts_file {hosts}\nappend_domain .corp.test\nacl corp dstdomain intranet.corp.test\n"
                       "acl shared dstdomain shared.test\nhttp_access allow corp\nhttp_access allow shared\n"
                       "http_access deny all\n")
    doc, seen = echoed(ask(proxy.port, f"http://intranet:{origin.port}/echo"))
    assert seen["host"] == f"intranet.corp.test:{origin.port}"
    assert f"http://intranet.corp.test:{origin.port}/echo" in proxy.log_line("/echo")
    # shared.test: both lines' addresses, in order (nothing listens on 127.0.0.5, the next one answers)
    doc, _ = echoed(ask(proxy.port, f"http://shared.test:{origin.port}/echo"))
    assert doc["path"] == "/echo"


# ------------------------------------------------------------ persistence

def test_client_persistent_connections_off(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "client_persistent_connections off\n")
    status, headers, _ = ask(proxy.port, origin.url("/size/3"), close=False)
    assert status == 200 and headers["connection"] == "close"


def test_server_persistent_connections_off(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "server_persistent_connections off\n")
    doc, seen = echoed(ask(proxy.port, origin.url("/echo")))
    assert seen["connection"] == "close"


def test_persistent_connection_after_error_off(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "persistent_connection_after_error off\n")
    assert ask(proxy.port, origin.url("/status/404"), close=False)[1]["connection"] == "close"
    assert "connection" not in ask(proxy.port, origin.url("/size/3"), close=False)[1]


# ------------------------------------------------------------ client timeouts

def closed_within(s: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the proxy closed ``s`` within ``seconds`` (and what it sent first)."""
    s.settimeout(seconds)
    got = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return True, got
            got += chunk
    except socket.timeout:
        return False, got
    except ConnectionResetError:
        return True, got


def test_request_start_timeout_closes_a_silent_connection(make_proxy):
    proxy = make_proxy(LOCAL_POLICY + "request_start_timeout 1 second\n")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        started = time.monotonic()
        closed, got = closed_within(s, 8)
    assert closed and got == b"" and time.monotonic() - started >= 0.9


def test_client_lifetime_gives_up_a_request_that_lasts_too_long(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "client_lifetime 1 second\n")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(f"GET {origin.url('/slow/4')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        closed, got = closed_within(s, 3.5)
    assert closed and got == b""
    assert "_ABORTED" in proxy.log_line("/slow/4", timeout=6)
    assert "client_lifetime" in proxy.read_cache_log()


def test_pconn_lifetime_closes_an_idle_client_connection_that_is_old(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "pconn_lifetime 1 second\nclient_idle_pconn_timeout 1 minute\n")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(f"GET {origin.url('/size/3')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        f = s.makefile("rb")
        assert read_response(f)[0] == 200
        closed, _ = closed_within(s, 5)
    assert closed


def test_write_timeout_gives_up_a_client_that_reads_nothing(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "write_timeout 1 second\n")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        s.connect(("127.0.0.1", proxy.port))
        s.sendall(f"GET {origin.url('/big/60000000')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        line = wait_for(lambda: "write_timeout" in proxy.read_cache_log(), timeout=20)
        assert line, proxy.read_cache_log()[-2000:]
    finally:
        s.close()
    assert "_ABORTED" in proxy.log_line("/big/", timeout=6)


@pytest.mark.parametrize("half_closed, closes", [("off", True), ("on", False)])
def test_an_eof_in_the_middle_of_a_body(make_proxy, origin, half_closed, closes):
    proxy = make_proxy(LOCAL_POLICY + f"half_closed_clients {half_closed}\nread_timeout 3 seconds\n")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(f"POST {origin.url('/echo')} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf".encode())
        time.sleep(0.2)
        s.shutdown(socket.SHUT_WR)
        closed, got = closed_within(s, 1.5)
    assert closed == closes


# ------------------------------------------------------------ error pages in the client's language

needs_langpack = pytest.mark.skipif(not os.path.isdir(os.path.join(LANGPACK_DIR, "de")),
                                    reason="Debian's squid-langpack is not installed (.ci/run installs it)")


@needs_langpack
def test_error_pages_speak_the_client_s_language(make_proxy):
    proxy = make_proxy(LOCAL_POLICY)
    status, headers, body = ask(proxy.port, "http://127.0.0.1:1/", {"Accept-Language": "xx-yy, de-CH;q=0.8"})
    assert status == 503 and headers["content-language"] == "de-ch" and headers["vary"] == "Accept-Language"
    assert "Verbindung" in body.decode() or "FEHLER" in body.decode()
    status, headers, body = ask(proxy.port, "http://127.0.0.1:1/", {"Accept-Language": "en-GB"})
    assert headers["content-language"] == "en-gb" and b'<html lang="en">' in body
    assert "Error Pages Missing Language: xx-yy" in proxy.read_cache_log()


@needs_langpack
def test_error_default_language(make_proxy):
    proxy = make_proxy(LOCAL_POLICY + "error_default_language fr\n")
    status, headers, body = ask(proxy.port, "http://127.0.0.1:1/")
    assert headers["content-language"] == "fr" and "ERREUR" in body.decode()
