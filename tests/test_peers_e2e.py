"""squidpy through parents, end to end: real squidpy processes, real origins, raw sockets."""

from __future__ import annotations

import base64
import socket
import threading

import pytest

from tests.conftest import LOCAL_POLICY
from tests.origin import Origin, RawOrigin
from tests.proxyproc import wait_for
from tests.squidproc import get_through, wait_until_forwarding

# about 17 s of wall-clock time: on a fresh checkout (no timings in pytest's cache) it starts first
pytestmark = pytest.mark.slow


def child_of(make_proxy, peer_lines: list[str], extra: str = "", name: str = "child"):
    return make_proxy(LOCAL_POLICY + f"visible_hostname {name}.test\n" + "\n".join(peer_lines) + "\n" + extra,
                      name=name)


def parent(make_proxy, name: str = "parent", extra: str = ""):
    return make_proxy(LOCAL_POLICY + f"visible_hostname {name}.test\n" + extra, name=name)


def fields(proxy, needle: str) -> list[str]:
    line = proxy.log_line(needle)
    assert line, (needle, proxy.access_log.read_text() if proxy.access_log.exists() else "")
    return line.split()


def test_a_child_forwards_through_its_parent(make_proxy, origin):
    p = parent(make_proxy)
    c = child_of(make_proxy, [f"cache_peer 127.0.0.1 parent {p.port} 0 no-query name=head-office"],
                 "never_direct allow all\n")
    url = origin.url("/echo?chain")
    assert wait_until_forwarding(c.port, origin.url("/size/1?warm"))
    status, headers, body = get_through(c.port, url)
    assert status == 200
    assert b'"path": "/echo?chain"' in body
    assert b"X-Forwarded-For" in body and b"127.0.0.1, 127.0.0.1" in body      # each hop appended
    assert b"1.1 child.test (squidpy/" in body and b"1.1 parent.test (squidpy/" in body
    assert fields(c, url)[8] == "FIRSTUP_PARENT/127.0.0.1"
    assert fields(p, url)[8] == "HIER_DIRECT/127.0.0.1"


def test_post_and_connect_go_direct_unless_never_direct(make_proxy, origin):
    p = parent(make_proxy)
    c = child_of(make_proxy, [f"cache_peer 127.0.0.1 parent {p.port} 0 no-query"])
    assert wait_until_forwarding(c.port, origin.url("/size/1?warm"))
    conn = socket.create_connection(("127.0.0.1", c.port), timeout=10)
    conn.sendall(b"POST " + origin.url("/echo?post").encode() + b" HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: 2\r\nConnection: close\r\n\r\nhi")
    while conn.recv(65536):
        pass
    conn.close()
    assert fields(c, "/echo?post")[8] == "HIER_DIRECT/127.0.0.1"
    assert get_through(c.port, origin.url("/size/2?get"))[0] == 200
    assert fields(c, "/size/2?get")[8] == "FIRSTUP_PARENT/127.0.0.1"


class Echo(RawOrigin):
    """A TCP echo server: what a tunnel carries comes back."""

    def serve(self, conn):
        while data := conn.recv(65536):
            conn.sendall(data)


def echo_through(proxy_port: int, echo_port: int, payload: bytes) -> bytes | None:
    """CONNECT to the Echo server through the proxy and send ``payload``: what came back
    (the proxy's answer head when it was not 200, None when it closed first)."""
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as s:
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (echo_port, echo_port))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                return None
            head += chunk
        if not head.startswith(b"HTTP/1.1 200 "):
            return head
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        return got


def test_connect_through_a_parent(make_proxy):
    echo = Echo()
    try:
        p = parent(make_proxy, extra=f"acl echo port {echo.port}\n")
        c = child_of(make_proxy, [f"cache_peer 127.0.0.1 parent {p.port} 0 no-query login=tunnel:user"],
                     "never_direct allow all\n")
        assert wait_for(lambda: "Configuring Parent" in c.read_cache_log())

        ping = b"ping through two proxies"
        assert wait_for(lambda: echo_through(c.port, echo.port, ping) == ping, timeout=10)
        assert fields(c, f"CONNECT 127.0.0.1:{echo.port}")[3] == "TCP_TUNNEL/200"
        assert fields(c, f"CONNECT 127.0.0.1:{echo.port}")[8] == "FIRSTUP_PARENT/127.0.0.1"
        assert fields(p, f"CONNECT 127.0.0.1:{echo.port}")[8] == "HIER_DIRECT/127.0.0.1"
    finally:
        echo.stop()


def test_login_reaches_the_parent(make_proxy, origin):
    recorder = Origin().start()         # a "parent" that records what it is sent
    try:
        c = child_of(make_proxy, [f"cache_peer 127.0.0.1 parent {recorder.port} 0 no-query login=alice:s%3Acret"],
                     "never_direct allow all\n")
        assert wait_until_forwarding(c.port, "http://login.test/size/1")
        method, path, headers, _ = recorder.requests[-1]
        assert (method, path) == ("GET", "http://login.test/size/1")
        assert ("Proxy-Authorization", "Basic " + base64.b64encode(b"alice:s:cret").decode()) in headers
    finally:
        recorder.stop()


def test_carp_among_three_parents(make_proxy):
    """Each URL reaches the parent the CARP arithmetic names, and only that one."""
    recorders = [Origin().start() for _ in range(3)]
    try:
        c = child_of(make_proxy, [f"cache_peer 127.0.0.1 parent {r.port} 0 carp no-query name=node{i}"
                                  for i, r in enumerate(recorders)], "never_direct allow all\n")
        assert wait_until_forwarding(c.port, "http://carp.test/size/1?warm")
        from squidpy.config import loader
        from squidpy.peers.hashing import HashArray
        array = HashArray(loader.load(str(c.config_path)).cache_peer)
        for r in recorders:
            r.requests.clear()
        urls = [f"http://carp{i % 7}.test/size/1/{i}" for i in range(60)]
        for url in urls:
            assert get_through(c.port, url)[0] == 200
        for url in urls:
            expected = array.carp_ranking(url, "http", url.split("/")[2], 80, "/" + url.split("/", 3)[3])[0]
            got = [i for i, r in enumerate(recorders) if any(req[1] == url for req in r.requests)]
            assert got == [int(expected.name[-1])], url
        assert len({r.count() for r in recorders}) > 1 or all(r.count() for r in recorders)
        assert c.log_line(f"GET {urls[0]} - CARP/127.0.0.1")
    finally:
        for r in recorders:
            r.stop()


def test_a_dead_parent_is_skipped_and_with_never_direct_squids_502(make_proxy, origin):
    from tests.squidproc import free_port
    gone = free_port()
    p = parent(make_proxy)
    c = child_of(make_proxy, [f"cache_peer 127.0.0.1 parent {gone} 0 no-query name=gone",
                              f"cache_peer 127.0.0.1 parent {p.port} 0 no-query name=alive"],
                 "never_direct allow all\n")
    assert wait_until_forwarding(c.port, origin.url("/size/1?warm"))
    assert get_through(c.port, origin.url("/size/3?skip"))[0] == 200
    assert fields(c, "/size/3?skip")[8] == "FIRSTUP_PARENT/127.0.0.1"      # 'gone' never came up
    lonely = child_of(make_proxy, [f"cache_peer 127.0.0.1 parent {gone} 0 no-query name=gone"],
                      "never_direct allow all\n", name="lonely")
    status, headers, _ = get_through(lonely.port, origin.url("/size/3?nowhere"))
    assert (status, headers["x-squid-error"]) == (502, "ERR_READ_ERROR 0")
    assert fields(lonely, "/size/3?nowhere")[8] == "HIER_NONE/-"


class Faulty(RawOrigin):
    """A parent that misbehaves as ``mode`` says."""

    def __init__(self, mode: str):
        self.mode = mode
        super().__init__()

    def serve(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        if self.mode == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()
        elif self.mode == "garbage":
            conn.sendall(b"\x00\x01garbage that is no HTTP\r\n\r\n")
        elif self.mode == "hang":
            threading.Event().wait(8)
        elif self.mode == "502":
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope")
        elif self.mode == "500":
            conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops")


@pytest.mark.parametrize("mode, retried", [("reset", True), ("garbage", True), ("hang", True), ("502", True),
                                           ("500", False)])
def test_a_faulty_parent_and_the_next_one(make_proxy, origin, mode, retried):
    bad = Faulty(mode)
    try:
        p = parent(make_proxy)
        c = child_of(make_proxy, [f"cache_peer 127.0.0.1 parent {bad.port} 0 no-query name=bad",
                                  f"cache_peer 127.0.0.1 parent {p.port} 0 no-query name=good"],
                     "never_direct allow all\nread_timeout 2 seconds\n")
        assert wait_for(lambda: c.read_cache_log().count("Configuring Parent") == 2)
        url = origin.url(f"/size/4?{mode}")
        status, _, body = get_through(c.port, url, timeout=20)
        if retried:
            assert (status, body) == (200, b"xxxx")
            assert fields(c, url)[8] == "ANY_OLD_PARENT/127.0.0.1"
            assert fields(p, url)[8] == "HIER_DIRECT/127.0.0.1"
        else:
            assert (status, body) == (500, b"oops")
            assert fields(c, url)[8] == "FIRSTUP_PARENT/127.0.0.1"
    finally:
        bad.stop()


def test_a_loop_between_peers_is_caught_by_via(make_proxy, origin):
    from tests.squidproc import free_port
    port_a, port_b = free_port(), free_port()
    a = make_proxy(LOCAL_POLICY + f"visible_hostname a.test\ncache_peer 127.0.0.1 parent {port_b} 0 no-query\n"
                   "never_direct allow all\n", listen=f"127.0.0.1:{port_a}", name="a")
    b = make_proxy(LOCAL_POLICY + f"visible_hostname b.test\ncache_peer 127.0.0.1 parent {port_a} 0 no-query\n"
                   "never_direct allow all\n", listen=f"127.0.0.1:{port_b}", name="b")
    url = origin.url("/size/1?loop")

    def answered():
        status, headers, _ = get_through(a.port, url)
        return status == 403 and (status, headers)
    assert wait_for(answered, timeout=15)
    assert origin.count("/size/1?loop") == 0
    assert b.log_line("TCP_DENIED/403") or a.log_line("TCP_DENIED/403")


@pytest.mark.parametrize("options, works", [
    ("tls tls-cafile={ca}", True),
    ("tls tls-flags=DONT_VERIFY_PEER", True),
    ("tls", False),                                 # a self-signed certificate no system CA vouches for
    ("tls tls-cafile={ca} tls-domain=other.test", False),
])
def test_a_parent_over_tls(make_proxy, tls_origin, options, works):
    """The TLS origin of the test suite answers absolute-form requests: a parent over TLS."""
    c = child_of(make_proxy, [f"cache_peer localhost parent {tls_origin.port} 0 no-query "
                              + options.format(ca=tls_origin.cafile)], "never_direct allow all\n")
    assert wait_for(lambda: "Configuring Parent localhost" in c.read_cache_log())
    url = f"http://tls-parent.test/size/6?{len(options)}{works}"

    def answer():
        status, _, body = get_through(c.port, url)
        return status, body
    if works:
        assert wait_for(lambda: answer() == (200, b"xxxxxx"), timeout=10)
        assert fields(c, url)[8] == "FIRSTUP_PARENT/127.0.0.1"
    else:
        status, body = answer()
        assert status >= 500 and body != b"xxxxxx"


def test_a_tls_failure_to_a_parent_is_its_connect_failure_and_the_next_parent_serves(make_proxy, tls_origin, origin):
    """A parent whose certificate does not carry tls-domain is failed as a connection to it
    fails (counted towards connect-fail-limit, logged), and the next parent is tried."""
    p = parent(make_proxy)
    c = child_of(make_proxy, [f"cache_peer localhost parent {tls_origin.port} 0 no-query name=wrong-name "
                              f"tls tls-cafile={tls_origin.cafile} tls-domain=other.test connect-fail-limit=1",
                              f"cache_peer 127.0.0.1 parent {p.port} 0 no-query name=plain"],
                 "never_direct allow all\n")
    assert wait_for(lambda: c.read_cache_log().count("Configuring Parent") == 2)
    url = origin.url("/size/3?tls-fallback")
    assert wait_for(lambda: get_through(c.port, url)[:3:2] == (200, b"xxx"), timeout=10)
    assert fields(p, url)[3] == "TCP_MISS/200"
    log = c.read_cache_log()
    assert f"TCP connection to localhost/{tls_origin.port} failed" in log
    assert "Detected DEAD Parent: wrong-name" in log


def test_connect_through_a_parent_over_tls(make_proxy, tmp_path):
    """A CONNECT tunnel inside the TLS connection to a parent (an https_port of another squidpy)."""
    from tests.tlscert import make_self_signed
    cert, key = make_self_signed(tmp_path, "localhost")
    echo = Echo()
    try:
        p = parent(make_proxy, extra=f"https_port 127.0.0.1:0 tls-cert={cert} tls-key={key}\n")
        assert wait_for(lambda: p.https_ports)
        c = child_of(make_proxy, [f"cache_peer localhost parent {p.https_ports[0]} 0 no-query tls tls-cafile={cert}"],
                     "never_direct allow all\n")
        assert wait_for(lambda: "Configuring Parent" in c.read_cache_log())

        ping = b"ping inside TLS to the parent"
        assert wait_for(lambda: echo_through(c.port, echo.port, ping) == ping, timeout=10)
        assert fields(c, f"CONNECT 127.0.0.1:{echo.port}")[8] == "FIRSTUP_PARENT/127.0.0.1"
        assert fields(p, f"CONNECT 127.0.0.1:{echo.port}")[3] == "TCP_TUNNEL/200"
    finally:
        echo.stop()


class CountingParent(RawOrigin):
    """A parent answering each request with 200 on persistent connections, counting the
    connections open at once; ``sources``: each connection's source address, in the
    order accepted, ``served``: how many requests each carried, ``still_open``: the
    sources of the connections open now."""

    def __init__(self, gate: threading.Event | None = None):
        """``gate``: each answer waits until the test sets it (at most 20 seconds)."""
        self.open, self.most = 0, 0
        self.gate = gate
        self.sources: list[str] = []
        self.served: list[int] = []
        self.still_open: dict[int, str] = {}
        self.heads = 0          # request heads read (before the gate)
        self._lock = threading.Lock()
        super().__init__()

    def serve(self, conn):
        with self._lock:
            self.open += 1
            self.most = max(self.most, self.open)
            index = len(self.sources)
            self.sources.append(conn.getpeername()[0])
            self.served.append(0)
            self.still_open[index] = self.sources[index]
        try:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                data = data.split(b"\r\n\r\n", 1)[1]
                with self._lock:
                    self.heads += 1
                if self.gate is not None:
                    self.gate.wait(20)
                with self._lock:
                    self.served[index] += 1
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Control: no-store\r\n\r\nok")
        finally:
            with self._lock:
                self.open -= 1
                del self.still_open[index]


def test_standby_connections_wait_open_for_requests(make_proxy):
    p = CountingParent()
    try:
        c = child_of(make_proxy, [f"cache_peer 127.0.0.1 parent {p.port} 0 no-query standby=2"],
                     "never_direct allow all\n")
        assert wait_for(lambda: p.open == 2, timeout=10)
        before = p.connections
        assert get_through(c.port, "http://standby.test/a")[2] == b"ok"
        assert wait_for(lambda: p.open == 2, timeout=10)        # the used one went back idle, or was replaced
        assert p.connections - before <= 1
    finally:
        p.stop()


def test_standby_connections_come_from_tcp_outgoing_address_and_carry_requests(make_proxy):
    """Squid opens standby connections from the address tcp_outgoing_address picks, as
    every connection to the peer; a request sent from that address takes one.  (The
    peer's first TCP probe, opened and closed before the peer is up, is not one.)"""
    p = CountingParent()
    try:
        c = child_of(make_proxy, [f"cache_peer 127.0.0.1 parent {p.port} 0 no-query standby=2"],
                     "never_direct allow all\ntcp_outgoing_address 127.0.0.7\n")
        assert wait_for(lambda: p.open == 2, timeout=10)
        assert sorted(p.still_open.values()) == ["127.0.0.7", "127.0.0.7"]
        standby = sorted(p.still_open)
        assert get_through(c.port, "http://standby.test/b")[2] == b"ok"
        assert sum(p.served[i] for i in standby) == 1, (p.sources, p.served)   # not on a new connection
        assert {p.sources[i] for i, n in enumerate(p.served) if n} == {"127.0.0.7"}
    finally:
        p.stop()


class ParentAt:
    """A parent on a given loopback port (it can be stopped and started again there):
    answers requests with 200; ``seen``: each connection's source address and whether
    it sent anything (a TCP probe sends nothing)."""

    def __init__(self, port: int):
        self.port = port
        self.seen: list[tuple[str, bool]] = []
        self.sock: socket.socket | None = None

    def start(self) -> "ParentAt":
        sock = self.sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(16)
        sock.settimeout(0.2)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, args=(sock, self._stopping), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Closed once its accept loop is out (a socket closed under a blocked accept()
        would still take connections until it returns)."""
        if self.sock is not None:
            self._stopping.set()
            self._thread.join(5)
            self.sock.close()
            self.sock = None

    def _accept(self, sock: socket.socket, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                conn, (source, _) = sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn, source), daemon=True).start()

    def _serve(self, conn: socket.socket, source: str) -> None:
        with conn:
            conn.settimeout(10)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.seen.append((source, bool(data)))
                if data:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            except OSError:
                self.seen.append((source, bool(data)))


def test_probes_of_a_dead_parent_come_from_tcp_outgoing_address(make_proxy, origin):
    """Squid's peerProbeConnect asks tcp_outgoing_address too, without a request (the peer's
    name and address decide): the probes that bring a dead parent back connect from the
    address given, like the requests sent to it."""
    from tests.squidproc import free_port
    back = ParentAt(free_port()).start()
    try:
        c = child_of(make_proxy, [f"cache_peer 127.0.0.1 parent {back.port} 0 no-query connect-fail-limit=1 name=back"],
                     "acl to_back peername back\nacl options method OPTIONS\n"
                     "tcp_outgoing_address 127.0.0.3 options\ntcp_outgoing_address 127.0.0.2 to_back\n")
        assert wait_for(lambda: back.seen, timeout=10)                     # the first probe, at start
        assert get_through(c.port, "http://probe.test/up")[2] == b"ok"
        assert fields(c, "http://probe.test/up")[8] == "FIRSTUP_PARENT/127.0.0.1"
        back.stop()
        assert get_through(c.port, origin.url("/size/2?down"))[0] == 200    # refused, then direct
        assert wait_for(lambda: "Detected DEAD Parent: back" in c.read_cache_log(), timeout=10)
        back.seen.clear()
        back.start()

        def revived() -> bool:          # each request asks whether the parent is up: a probe
            get_through(c.port, origin.url("/size/1?again"))
            return "Detected REVIVED Parent: back" in c.read_cache_log()
        assert wait_for(revived, timeout=15, interval=0.5)
        assert back.seen and {source for source, _ in back.seen} == {"127.0.0.2"}, back.seen
        assert (("127.0.0.2", False)) in back.seen          # the probe: connected, sent nothing
    finally:
        back.stop()


def test_max_conn_sends_the_overflow_elsewhere(make_proxy):
    gate = threading.Event()
    slow, spare = CountingParent(gate=gate), CountingParent()
    try:
        c = child_of(make_proxy, [f"cache_peer 127.0.0.1 parent {slow.port} 0 no-query max-conn=1 name=slow",
                                  f"cache_peer 127.0.0.1 parent {spare.port} 0 no-query name=spare"],
                     "never_direct allow all\nserver_idle_pconn_timeout 0 seconds\n")
        assert wait_for(lambda: c.read_cache_log().count("Configuring Parent") == 2)
        # each parent's first probe (a connection opened and closed: a configured peer is
        # probed at once) is over before the requests, so that it is not counted with them
        assert wait_for(lambda: all(p.sources and not p.open for p in (slow, spare)), 10)
        slow.most = spare.most = 0
        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(get_through(c.port, f"http://mc.test/{i}")))
                   for i in range(3)]
        # each request starts once the one before reached its parent: the slow parent's one
        # connection is open and counted (max-conn counts connections made, as Squid's
        # conn_open does; a request is sent only on a connection the proxy saw open); the
        # slow parent answers only once all three arrived
        for t, reached in zip(threads, (lambda: slow.heads, lambda: spare.heads == 1, lambda: spare.heads == 2)):
            t.start()
            assert wait_for(reached, 10)
        gate.set()
        for t in threads:
            t.join(20)
        assert [r[2] for r in results] == [b"ok"] * 3
        assert slow.most == 1, (slow.sources, slow.served)       # requests per connection (0: a probe)
        assert spare.connections >= 2
    finally:
        slow.stop()
        spare.stop()


def test_reconfigure_changes_the_parents(make_proxy, origin):
    import signal
    first, second = Origin().start(), Origin().start()
    try:
        c = child_of(make_proxy, [f"cache_peer 127.0.0.1 parent {first.port} 0 no-query name=first"],
                     "never_direct allow all\n")
        assert wait_until_forwarding(c.port, "http://reconf.test/size/1?a")
        assert first.count() and not second.count()
        c.config_path.write_text(c.config_path.read_text().replace(
            f"parent {first.port} 0 no-query name=first", f"parent {second.port} 0 no-query name=second"))
        c.signal(signal.SIGHUP)
        assert wait_for(lambda: "Reconfigured" in c.read_cache_log())
        assert wait_until_forwarding(c.port, "http://reconf.test/size/1?b")
        assert wait_for(lambda: any(r[1] == "http://reconf.test/size/1?b" for r in second.requests))
        assert not any(r[1] == "http://reconf.test/size/1?b" for r in first.requests)
    finally:
        first.stop()
        second.stop()


def test_icp_without_its_socket_queries_nobody(make_proxy, origin):
    """An icp_port that cannot be opened (taken) is reported; peers are then not queried
    and requests do not wait for replies that cannot come."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    try:
        p = parent(make_proxy)
        c = child_of(make_proxy, [f"cache_peer 127.0.0.1 sibling {p.port} 3130",
                                  f"cache_peer 127.0.0.1 parent {p.port} 0 no-query name=p"],
                     f"icp_port {taken.getsockname()[1]}\nudp_incoming_address 127.0.0.1\nicp_query_timeout 5000\n")
        assert wait_for(lambda: "cannot open icp_port" in c.read_cache_log())
        url = origin.url("/size/2?noicp")
        assert wait_until_forwarding(c.port, url)
        assert fields(c, url)[8] in ("FIRSTUP_PARENT/127.0.0.1", "HIER_DIRECT/127.0.0.1")
        assert not fields(c, url)[8].startswith("TIMEOUT_")
    finally:
        taken.close()
