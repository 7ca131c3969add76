"""End to end: origin connections are pooled, reused, retired, and retried once when stale."""

from __future__ import annotations

import socket

from tests.conftest import LOCAL_POLICY, read_response
from tests.origin import RawOrigin
from tests.proxyproc import wait_for


class CountingOrigin(RawOrigin):
    """A raw keep-alive origin that can drop a connection instead of answering its
    Nth request (a stale pooled connection, seen from the proxy)."""

    def __init__(self, drop_on_request: int | None = None):
        self.requests = 0
        self.closed_by_proxy = 0
        self.drop_on_request = drop_on_request
        super().__init__()

    def serve(self, conn):
        f = conn.makefile("rb")
        while f.readline():
            while f.readline() not in (b"\r\n", b""):
                pass
            self.requests += 1
            if self.requests == self.drop_on_request:
                return          # close without answering
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.closed_by_proxy += 1

def get(port, url):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return read_response(s.makefile("rb"))


def test_origin_connection_is_reused(make_proxy):
    origin = CountingOrigin()
    proxy = make_proxy(LOCAL_POLICY)
    try:
        for _ in range(5):
            assert get(proxy.port, f"http://127.0.0.1:{origin.port}/")[2] == b"ok"
        assert origin.connections == 1
        assert origin.requests == 5
    finally:
        origin.stop()


def test_idle_origin_connection_is_retired(make_proxy):
    origin = CountingOrigin()
    proxy = make_proxy(LOCAL_POLICY + "server_idle_pconn_timeout 1 second\n")
    try:
        get(proxy.port, f"http://127.0.0.1:{origin.port}/")
        assert wait_for(lambda: origin.closed_by_proxy == 1, 10)        # idle for a second: closed
        get(proxy.port, f"http://127.0.0.1:{origin.port}/")
        assert origin.connections == 2
    finally:
        origin.stop()


def test_stale_pooled_connection_is_retried_once_for_get(make_proxy):
    origin = CountingOrigin(drop_on_request=2)
    proxy = make_proxy(LOCAL_POLICY)
    try:
        assert get(proxy.port, f"http://127.0.0.1:{origin.port}/a")[2] == b"ok"
        status, _, body = get(proxy.port, f"http://127.0.0.1:{origin.port}/b")
        assert (status, body) == (200, b"ok")
        assert origin.connections == 2 and origin.requests == 3
    finally:
        origin.stop()


def test_happy_eyeballs_a_silent_address_does_not_hold_the_request(make_proxy):
    """The origin's name has two addresses and the first never answers (its accept queue
    is full, so SYNs are dropped): the second is tried 250 ms later, alongside, and
    answers long before connect_timeout (60 s) would have given up on the first."""
    from tests.dnsserver import DnsServer
    from tests.origin import Origin

    origin = Origin(host="127.0.0.3").start()
    silent = socket.socket()
    silent.bind(("127.0.0.2", origin.port))
    silent.listen(0)
    filler = socket.create_connection(("127.0.0.2", origin.port), timeout=5)   # fills the queue
    dns = DnsServer({"dual.test": ["127.0.0.2", "127.0.0.3"]}).start()
    try:
        proxy = make_proxy(LOCAL_POLICY + f"dns_nameservers 127.0.0.1:{dns.port}\nconnect_timeout 60 seconds\n")
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            s.sendall(f"GET http://dual.test:{origin.port}/size/10 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status, _, body = read_response(s.makefile("rb"))
        assert status == 200 and len(body) == 10
        assert "HIER_DIRECT/127.0.0.3" in proxy.log_line("dual.test")
    finally:
        filler.close()
        silent.close()
        dns.stop()
        origin.stop()


def _pool(reactor):
    from squidpy.config import loader
    from squidpy.proxy.server_side import ServerPool
    return ServerPool(reactor, None, loader.load("/etc/squid/squid.conf", text=LOCAL_POLICY))


def _refuse(reactor, index):
    from twisted.internet.error import ConnectionRefusedError
    from twisted.python.failure import Failure
    host, port, factory, _timeout, _bind = reactor.tcpClients[index]
    factory.clientConnectionFailed(reactor.connectors[index], Failure(ConnectionRefusedError(111)))
    return host


def test_a_refused_only_address_is_answered_at_once():
    """One address, refused: the failure is known at once, as in Squid (happy eyeballs'
    attempt timer would have held it 250 ms with nothing left to try)."""
    from twisted.internet.testing import MemoryReactorClock

    from squidpy.proxy.server_side import UpstreamError
    reactor = MemoryReactorClock()
    failures = []
    _pool(reactor).connect(("http", "closed.test", 1), ["127.0.0.1"]).addErrback(failures.append)
    assert _refuse(reactor, 0) == "127.0.0.1"
    assert len(failures) == 1 and failures[0].check(UpstreamError)      # no clock advanced
    assert (failures[0].value.detail, failures[0].value.server_ip) == ("(111) Connection refused", "127.0.0.1")


def test_several_addresses_are_raced_and_all_refusals_reported():
    from twisted.internet.testing import MemoryReactorClock

    from squidpy.proxy.server_side import ATTEMPT_DELAY, UpstreamError
    reactor = MemoryReactorClock()
    failures = []
    _pool(reactor).connect(("http", "two.test", 1), ["127.0.0.2", "127.0.0.3"]).addErrback(failures.append)
    assert [c[0] for c in reactor.tcpClients] == ["127.0.0.2"]
    reactor.advance(ATTEMPT_DELAY)
    assert [c[0] for c in reactor.tcpClients] == ["127.0.0.2", "127.0.0.3"]    # tried alongside
    _refuse(reactor, 0)
    _refuse(reactor, 1)
    reactor.advance(ATTEMPT_DELAY)
    assert len(failures) == 1 and failures[0].check(UpstreamError)
