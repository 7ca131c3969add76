"""The fleet (docs/fleet.md): HAProxy in front of three squidpy nodes that share one cache by CARP.

HAProxy spreads client connections over the nodes' front ports, with a PROXY header
(version 2) and health checks.  Each node lists the three nodes' fleet ports as CARP
parents (``proxy-only``): a request arriving at any front port goes to the node CARP
names (itself included), whose fleet port always fetches direct and keeps the one copy
of the object.  So each URL reaches the origin once for the whole fleet, each object is
stored once, every node's access log shows the clients' own addresses, and all three
send their lines to one collector (``access_log tcp://``).

The clients come from 127.0.0.21-28 (loopback addresses of their own), so a logged
127.0.0.2x can only have come from the PROXY header.
"""

from __future__ import annotations

import http.client
import random
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from squidpy.config import loader
from squidpy.http.url import parse_target
from squidpy.peers.hashing import HashArray
from squidpy.proxyp import encode_v2
from tests.haproxyproc import HAProxyProcess
from tests.origin import Origin
from tests.proxyproc import ProxyProcess, wait_for
from tests.squidproc import free_port

# about 10 s of wall-clock time: on a fresh checkout (no timings in pytest's cache) it starts first
pytestmark = pytest.mark.slow

CLIENTS = [f"127.0.0.{21 + i}" for i in range(8)]
NODES = 3


class Collector:
    """A TCP log collector: keeps every line the nodes send."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn):
        buffered = b""
        conn.settimeout(1)
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buffered += chunk
                *whole, buffered = buffered.split(b"\n")
                with self._lock:
                    self.lines.extend(line.decode() for line in whole if line)

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def stop(self):
        self._stop.set()
        self.sock.close()


def node_config(n: int, front: int, fleet: list[int], collector: int) -> str:
    peers = "\n".join(f"cache_peer 127.0.0.1 parent {port} 0 carp no-query no-digest proxy-only "
                      f"connect-fail-limit=1 name=node{i + 1}" for i, port in enumerate(fleet))
    return f"""
visible_hostname node{n}.fleet.test
via off
http_port 127.0.0.1:{front} require-proxy-header name=front
http_port 127.0.0.1:{fleet[n - 1]} name=fleet
acl balancer src 127.0.0.1
proxy_protocol_access allow balancer
acl local src 127.0.0.0/8
acl from_fleet myportname fleet
http_access allow local
http_access deny all
always_direct allow from_fleet
never_direct allow all
{peers}
logformat fleet node{n} %lp %>a %Ss/%03>Hs %rm %ru %Sh/%<a
access_log tcp://127.0.0.1:{collector} fleet
access_log {{dir}}/access.log squid
"""


class Fleet:
    def __init__(self, root, origin: Origin):
        self.root = root
        self.collector = Collector()
        self.fronts = [free_port() for _ in range(NODES)]
        self.fleet_ports = [free_port() for _ in range(NODES)]
        self.configs = [node_config(n + 1, self.fronts[n], self.fleet_ports, self.collector.port)
                        for n in range(NODES)]
        self.nodes: list[ProxyProcess | None] = [self.start_node(n) for n in range(NODES)]
        self.haproxy = HAProxyProcess(root / "haproxy", [("127.0.0.1", p) for p in self.fronts], proxy="v2",
                                      check=True)
        self.array = HashArray(loader.load(str(self.nodes[0].config_path)).cache_peer)
        self.runs = 0

    def start_node(self, n: int) -> ProxyProcess:
        self.runs = getattr(self, "runs", 0) + 1
        directory = self.root / f"node{n + 1}-{self.runs}"
        directory.mkdir(parents=True)
        return ProxyProcess(directory, self.configs[n].replace("{dir}", str(directory)))

    def owner(self, url: str, alive=range(NODES)) -> int:
        """The node CARP gives ``url`` to, among the nodes ``alive``."""
        t = parse_target("GET", url)
        for peer in self.array.carp_ranking(t.url, t.scheme, t.host, t.port, t.path):
            n = int(peer.name[-1]) - 1
            if n in alive:
                return n
        raise AssertionError("no node")

    def get(self, url: str, client: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.haproxy.port, timeout=20, source_address=(client, 0))
        try:
            conn.request("GET", url, headers={"Host": url.split("/")[2]})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def fetch_all(self, urls: list[str]) -> list[tuple[str, int, bytes]]:
        rnd = random.Random(len(urls))
        jobs = [(url, rnd.choice(CLIENTS)) for url in urls]
        with ThreadPoolExecutor(8) as pool:
            return [(url, *answer) for (url, _), answer in zip(jobs, pool.map(lambda j: self.get(*j), jobs))]

    def fleet_lines(self, since: int = 0) -> list[list[str]]:
        """The collector's lines (from the ``since``-th on) written by fleet ports: a node
        fetching for the fleet."""
        return [line.split() for line in self.collector.snapshot()[since:]
                if int(line.split()[1]) in self.fleet_ports]

    def stop(self):
        self.haproxy.stop()
        for node in self.nodes:
            if node is not None:
                node.stop()
        self.collector.stop()


@pytest.fixture
def fleet(tmp_path):
    origin = Origin().start()
    f = Fleet(tmp_path, origin)
    f.origin = origin
    yield f
    f.stop()
    origin.stop()


def ready(fleet, alive=range(NODES)) -> bool:
    """Every live node, asked directly (with a PROXY header), hands a URL of each live
    owner to that owner: every node sees every peer up."""
    origin, asked = fleet.origin, {}
    for front in alive:
        for owner in alive:
            i = 0
            while True:
                url = origin.url(f"/obj/ready-{front}-{owner}-{random.random()}-{i}?cc=no-store")
                if fleet.owner(url, alive) == owner:
                    break
                i += 1
            asked[url] = owner
            with socket.create_connection(("127.0.0.1", fleet.fronts[front]), timeout=10) as s:
                s.sendall(encode_v2((CLIENTS[0], 40000), ("127.0.0.1", fleet.haproxy.port)) +
                          f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                answer = b""
                while chunk := s.recv(65536):
                    answer += chunk
            if not answer.startswith(b"HTTP/1.1 200 "):
                return False

    def owners_seen() -> bool:
        seen = {line[5]: int(line[0][-1]) - 1 for line in fleet.fleet_lines() if line[5] in asked}
        return len(seen) == len(asked) and seen
    seen = wait_for(owners_seen, timeout=5)
    return bool(seen) and seen == asked


def check_bodies(results, served: dict[str, int]) -> None:
    for url, status, body in results:
        assert status == 200, (url, status, body[:200])
        name = url.split("/obj/")[1].split("?")[0]
        assert body == f"{name} served {served.get(url, 1)}\n".encode(), (url, body)


def test_the_fleet(fleet):
    origin = fleet.origin
    assert wait_for(lambda: ready(fleet), timeout=30)

    # ---- a few thousand requests: every URL twice, from many clients
    urls = [origin.url(f"/obj/u{i}?cc=max-age%3D3600") for i in range(1200)]
    results = fleet.fetch_all(urls + urls[::-1])
    check_bodies(results, {})
    assert all(origin.count(u.split(str(origin.port))[1]) == 1 for u in urls), "a URL reached the origin twice"
    known = set(urls)
    assert wait_for(lambda: len(fleet.fleet_lines()) >= len(urls), timeout=10)
    for line in fleet.fleet_lines():
        node, url = int(line[0][-1]) - 1, line[5]
        if url in known:
            assert node == fleet.owner(url), line
    by_owner = [sum(1 for u in urls if fleet.owner(u) == n) for n in range(NODES)]
    assert all(250 < share < 550 for share in by_owner), by_owner
    fronts = [line.split() for line in fleet.collector.snapshot() if int(line.split()[1]) not in fleet.fleet_ports]
    assert {line[2] for line in fronts if line[5] in known} == set(CLIENTS)      # the clients' own addresses
    assert {line.split()[0] for line in fleet.collector.snapshot()} == {"node1", "node2", "node3"}

    # ---- node3 dies: only its share moves, and no new request fails
    fleet.nodes[2].proc.kill()
    fleet.nodes[2].stop()
    fleet.nodes[2] = None
    assert wait_for(lambda: ready(fleet, alive=(0, 1)), timeout=30)
    before = {u: origin.count(u.split(str(origin.port))[1]) for u in urls}
    mark = len(fleet.collector.snapshot())
    results = fleet.fetch_all(urls)
    refetched = {u for u in urls if origin.count(u.split(str(origin.port))[1]) > before[u]}
    check_bodies(results, {u: 2 for u in refetched})
    owned_by_3 = {u for u in urls if fleet.owner(u) == 2}
    assert owned_by_3 <= refetched
    assert len(refetched - owned_by_3) <= 16, "URLs of live nodes moved"     # in flight while node3 was found dead
    moved = [line for line in fleet.fleet_lines(mark) if line[5] in owned_by_3 and line[3].startswith("TCP_MISS")]
    assert sum(int(line[0][-1]) - 1 == fleet.owner(line[5], alive=(0, 1)) for line in moved) >= len(moved) - 16

    # ---- node3 comes back: the split is what it was
    fleet.nodes[2] = fleet.start_node(2)
    assert wait_for(lambda: ready(fleet) and all("Detected REVIVED Parent: node3" in fleet.nodes[n].read_cache_log()
                                                 for n in (0, 1)), timeout=30)
    fresh = [origin.url(f"/obj/v{i}?cc=max-age%3D3600") for i in range(600)]
    results = fleet.fetch_all(fresh + fresh)
    check_bodies(results, {})
    assert all(origin.count(u.split(str(origin.port))[1]) == 1 for u in fresh)
    new = set(fresh)

    def fetchers() -> dict:
        found = {line[5]: int(line[0][-1]) - 1 for line in fleet.fleet_lines()
                 if line[5] in new and line[3].startswith("TCP_MISS")}
        return found if len(found) == len(fresh) else None
    assert wait_for(fetchers, timeout=10) == {u: fleet.owner(u) for u in fresh}


def test_the_recipe_in_docs_fleet_md_is_the_configuration_tested_here():
    """docs/fleet.md's node configuration loads as written and differs from node_config's
    only in addresses, ports, names and log destinations (so the fleet test runs the recipe)."""
    import re
    from pathlib import Path
    doc = (Path(__file__).parent.parent / "docs" / "fleet.md").read_text()
    [recipe] = [b for b in re.findall(r"```\n(.*?)```", doc, re.S) if b.startswith("# squidpy.conf of node 1")]
    documented = loader.load(text=recipe)
    tested = loader.load(text=node_config(1, 3128, [3129, 3130, 3131], 5140).replace("{dir}", "/tmp"))

    def words(text: str) -> list[str]:
        return sorted({line.split()[0] for line in text.splitlines() if line.strip() and not line.startswith("#")})

    assert words(recipe) == words(node_config(1, 1, [2, 3, 4], 5))
    assert [p.name for p in documented.cache_peer] == [p.name for p in tested.cache_peer]
    for doc_peer, test_peer in zip(documented.cache_peer, tested.cache_peer):
        assert (doc_peer.carp, doc_peer.no_query, doc_peer.proxy_only, doc_peer.connect_fail_limit) == (
            test_peer.carp, test_peer.no_query, test_peer.proxy_only, test_peer.connect_fail_limit)
    assert [p.require_proxy_header for p in documented.http_port] == [True, False]
    assert documented.via is tested.via is False
