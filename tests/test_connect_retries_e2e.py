"""connect_retries end to end: the real proxy connects to a loopback port that refuses
(bound, not listening); a raw socket counts the proxy's SYNs to it, so the number of
tries is seen on the wire, and a port that starts listening at the first SYN shows a
retry reaching the server.  Needs root for the raw socket (CI runs as root)."""

from __future__ import annotations

import ctypes
import os
import select
import socket
import struct
import subprocess
import threading

import pytest

from tests.conftest import LOCAL_POLICY, assert_no_tracebacks
from tests.proxyproc import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a raw socket needs root (CI runs as root)")


SO_ATTACH_FILTER = 26


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _only_to_port(raw: socket.socket, port: int) -> None:
    """A classic BPF filter: the raw socket gets only TCP segments to ``port``, so the
    host's other traffic (other tests' large loopback segments) cannot overflow its
    buffer and hide a SYN."""
    program = [(0xB1, 0, 0, 0),          # x = 4 * (ip[0] & 0xf): the IP header's length
               (0x48, 0, 0, 2),          # a = the half-word at x + 2: the destination port
               (0x15, 0, 1, port),       # a == port ?
               (0x06, 0, 0, 0xFFFF),     # keep
               (0x06, 0, 0, 0)]          # drop
    code = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(code)
    fprog = _SockFprog(len(program), ctypes.addressof(buffer))
    raw.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(memoryview(fprog)))    # type: ignore[arg-type]


class RefusingPort:
    """A loopback port bound but not listening (connects are refused), the SYNs to it
    counted; with ``listen_at`` it starts listening when that many SYNs were seen and
    answers one request."""

    def __init__(self, listen_at: int | None = None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
        _only_to_port(self.raw, self.port)
        self.listen_at = listen_at
        self.syns = 0
        self.served = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        listening = None
        while not self.stopping:
            ready, _, _ = select.select([self.raw] + ([listening] if listening else []), [], [], 0.2)
            if self.raw in ready:
                packet = self.raw.recv(65535)
                ihl = (packet[0] & 0x0F) * 4
                dport = struct.unpack("!H", packet[ihl + 2:ihl + 4])[0]
                flags = packet[ihl + 13]
                if dport == self.port and flags & 0x02 and not flags & 0x10:      # SYN, not SYN-ACK
                    self.syns += 1
                    if self.listen_at is not None and self.syns == self.listen_at and listening is None:
                        self.sock.listen(8)
                        listening = self.sock
            if listening is not None and listening in ready:
                conn, _ = listening.accept()
                with conn:
                    conn.settimeout(5)
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                self.served += 1

    def close(self) -> None:
        self.stopping = True
        self.thread.join(5)
        self.raw.close()
        self.sock.close()


def curl(proxy, url: str) -> tuple[int, bytes]:
    run = subprocess.run(["curl", "-s", "--max-time", "20", "-x", proxy.url, "-o", "-", "-w", "\n%{http_code}",
                          url], capture_output=True, timeout=30)
    body, _, code = run.stdout.rpartition(b"\n")
    return int(code), body


@pytest.mark.parametrize("setting, tries", [("", 1), ("connect_retries 1\n", 1), ("connect_retries 3\n", 3)])
def test_a_refusing_port_is_tried_as_often_as_squid_tries_it(make_proxy, setting, tries):
    proxy = make_proxy(LOCAL_POLICY + setting)
    port = RefusingPort()
    try:
        code, _ = curl(proxy, f"http://127.0.0.1:{port.port}/x")
        assert code == 503
        assert wait_for(lambda: port.syns >= tries, 5)
        line = proxy.log_line(f"127.0.0.1:{port.port}/x")
        assert line is not None and "TCP_MISS/503" in line
        assert port.syns == tries
    finally:
        port.close()
    assert_no_tracebacks(proxy)


def test_a_retry_reaches_a_port_that_started_listening(make_proxy):
    proxy = make_proxy(LOCAL_POLICY + "connect_retries 10\n")
    port = RefusingPort(listen_at=1)
    try:
        code, body = curl(proxy, f"http://127.0.0.1:{port.port}/x")
        assert (code, body) == (200, b"ok")
        assert port.syns >= 2 and port.served == 1
    finally:
        port.close()
    assert_no_tracebacks(proxy)


def test_without_retries_the_same_port_gives_503(make_proxy):
    proxy = make_proxy(LOCAL_POLICY)
    port = RefusingPort(listen_at=1)
    try:
        code, _ = curl(proxy, f"http://127.0.0.1:{port.port}/x")
        assert code == 503 and port.served == 0
    finally:
        port.close()
