"""End to end: CONNECT tunnels (to a real TLS origin) and WebSocket-style upgrades."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess

from tests.conftest import raw_request, read_response
from tests.squidproc import SquidProcess

TUNNEL_POLICY = """
acl local src 127.0.0.0/8
acl SSL_ports port 443
acl tls_test port {port}
acl CONNECT method CONNECT
http_access deny CONNECT !SSL_ports !tls_test
http_access allow local
http_access deny all
"""


def test_connect_to_tls_origin_with_http_client(make_proxy, tls_origin):
    proxy = make_proxy(TUNNEL_POLICY.format(port=tls_origin.port))
    ctx = ssl.create_default_context(cafile=tls_origin.cafile)
    c = http.client.HTTPSConnection("127.0.0.1", proxy.port, context=ctx, timeout=10)
    c.set_tunnel("localhost", tls_origin.port)
    c.request("GET", "/echo")
    doc = json.loads(c.getresponse().read())
    assert doc["path"] == "/echo"
    c.request("GET", "/size/100000")
    assert c.getresponse().read() == b"x" * 100000
    c.close()
    line = proxy.log_lines(1)[-1].split()
    assert line[3] == "TCP_TUNNEL/200"
    assert line[5:7] == ["CONNECT", f"localhost:{tls_origin.port}"]
    assert line[8] == "HIER_DIRECT/127.0.0.1"
    assert int(line[4]) > 100000


def test_connect_with_curl(make_proxy, tls_origin):
    proxy = make_proxy(TUNNEL_POLICY.format(port=tls_origin.port))
    out = subprocess.run(
        ["curl", "-s", "--cacert", tls_origin.cafile, "-x", proxy.url,
         f"https://localhost:{tls_origin.port}/size/5000", "-o", "/dev/null", "-w", "%{http_code} %{size_download}"],
        capture_output=True, text=True, timeout=30)
    assert out.stdout == "200 5000"


def test_connect_to_port_not_allowed_is_denied(make_proxy, tls_origin):
    proxy = make_proxy(TUNNEL_POLICY.format(port=1))
    raw = raw_request(proxy.port, f"CONNECT localhost:{tls_origin.port} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    assert raw.startswith(b"HTTP/1.1 403")
    assert b"ERR_ACCESS_DENIED" in raw
    assert proxy.log_lines(1)[-1].split()[3] == "TCP_DENIED/403"


def test_connect_failure_is_503(make_proxy):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    proxy = make_proxy(TUNNEL_POLICY.format(port=closed_port))
    raw = raw_request(proxy.port, f"CONNECT 127.0.0.1:{closed_port} HTTP/1.1\r\n\r\n".encode())
    assert raw.startswith(b"HTTP/1.1 503")
    assert b"ERR_CONNECT_FAIL" in raw


def test_a_connect_that_fails_is_logged_as_squid_logs_it(make_proxy, tmp_path):
    """Squid 5.7 logs a tunnel that was never established NONE_NONE/503 (not TCP_TUNNEL,
    which monitoring counts as tunnels), with the address it tried."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    policy = TUNNEL_POLICY.format(port=closed_port)
    squid = SquidProcess(tmp_path, policy)
    try:
        proxy = make_proxy(policy)
        fields = []
        for p in (squid, proxy):
            assert raw_request(p.port, f"CONNECT 127.0.0.1:{closed_port} HTTP/1.1\r\n\r\n".encode()) \
                .startswith(b"HTTP/1.1 503")
            line = p.log_line(f"CONNECT 127.0.0.1:{closed_port}")
            assert line is not None
            words = line.split()
            fields.append((words[3], words[5], words[8]))
    finally:
        squid.stop()
    assert fields[0] == ("NONE_NONE/503", "CONNECT", "HIER_DIRECT/127.0.0.1")
    assert fields[1] == fields[0]


def test_tunnel_half_close(make_proxy, origin):
    proxy = make_proxy(TUNNEL_POLICY.format(port=origin.port))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1\r\n\r\n".encode())
        f = s.makefile("rb")
        assert f.readline() == b"HTTP/1.1 200 Connection established\r\n"
        assert f.readline() == b"\r\n"
        s.sendall(b"GET /size/10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        status, headers, body = read_response(f)
        assert (status, body) == (200, b"x" * 10)


def test_websocket_upgrade_becomes_a_tunnel_when_allowed(make_proxy, origin):
    proxy = make_proxy(TUNNEL_POLICY.format(port=443) + "http_upgrade_request_protocols websocket allow local\n")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall((f"GET {origin.url('/ws')} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n").encode())
        f = s.makefile("rb")
        status, headers, _ = read_response(f)
        assert status == 101
        assert headers["upgrade"].lower() == "websocket"
        for message in (b"ping", b"x" * 70000):
            s.sendall(message)
            got = b""
            while len(got) < len(message):
                got += f.read1(65536)
            assert got == message


def test_upgrade_declined_keeps_http(proxy, origin):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall((f"GET {origin.url('/echo')} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                   f"GET {origin.url('/size/4')} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").encode())
        f = s.makefile("rb")
        status, _, body = read_response(f)
        assert status == 200 and json.loads(body)["path"] == "/echo"
        status, _, body = read_response(f)
        assert (status, body) == (200, b"xxxx")


def _pipes(pid: int) -> int:
    import os
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:")
        except OSError:
            pass
    return count


def test_large_tunnel_transfer_both_ways_is_intact_and_counted(make_proxy, origin):
    """The tunnel moves to splice(2) (two pipes appear); bytes arrive intact both ways."""
    import hashlib
    proxy = make_proxy(TUNNEL_POLICY.format(port=origin.port))
    pipes_before = _pipes(proxy.proc.pid)
    n = 50 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as s:
        s.sendall(f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1\r\n\r\n".encode())
        f = s.makefile("rb")
        assert f.readline().startswith(b"HTTP/1.1 200")
        f.readline()
        s.sendall(f"GET /big/{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, headers, body = read_response(f)
        assert status == 200 and len(body) == n
        block = bytes(range(256)) * 256
        assert hashlib.sha256(body).hexdigest() == hashlib.sha256(block * (n // len(block))).hexdigest()
        # the move happens at a moment when nothing waits in Python's buffers; on a loaded
        # machine the download may end without one: a small exchange on the idle tunnel gives it
        for _ in range(5):
            if _pipes(proxy.proc.pid) >= pipes_before + 4 - 1:     # (a pipe of the idle proxy may come and go)
                break
            s.sendall(b"GET /size/1 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(f)[0] == 200
        during = _pipes(proxy.proc.pid)
        assert during >= pipes_before + 4 - 1
        upload = bytes(range(251)) * 80000
        s.sendall(f"POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: {len(upload)}\r\n\r\n".encode() + upload)
        status, _, body = read_response(f)
        assert json.loads(body) == {"length": len(upload), "sha256": hashlib.sha256(upload).hexdigest()}
        f.close()
    line = proxy.log_line("CONNECT").split()
    assert line[3] == "TCP_TUNNEL/200"
    assert int(line[4]) > n
    assert wait_for_pipes_closed(proxy.proc.pid, during - 4)       # two pipes, one per direction, gone


def wait_for_pipes_closed(pid, expected):
    from tests.proxyproc import wait_for
    return wait_for(lambda: _pipes(pid) == expected, 5)


def test_idle_tunnel_times_out(make_proxy, origin):
    """read_timeout 1 second closes it within the client's 10-second deadline (the default,
    15 minutes, would not)."""
    proxy = make_proxy(TUNNEL_POLICY.format(port=origin.port) + "read_timeout 1 second\n")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1\r\n\r\n".encode())
        f = s.makefile("rb")
        assert f.readline().startswith(b"HTTP/1.1 200")
        f.readline()
        s.sendall(b"GET /size/10 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(f)[2] == b"x" * 10
        assert f.read() == b""                   # closed for idleness
