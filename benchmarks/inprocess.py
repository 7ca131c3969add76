"""The hot path in one process, no sockets: what one request costs squidpy's code.

    python benchmarks/inprocess.py [--requests 20000] [--rounds 5]

A real :class:`~squidpy.proxy.service.ProxyService` (real configuration, access
log, cache, counters) serves requests fed as bytes into a real
:class:`~squidpy.proxy.client_side.ClientConnection` over a transport that only
keeps what is written; the origin is a real
:class:`~squidpy.proxy.server_side.ServerConnection` taken from the pool and fed
its reply bytes.  Three paths: a memory hit of a 1 KB object, and a 1 KB miss
(``no-store``), and the same hit with Basic credentials the user cache already
holds (Squid's basic_ncsa_auth asked once, when it primes the cache).  With
``--bumped``: the hit and the miss inside a bumped (SslBump) connection, TLS on
both sides through the real sessions; the benchmark's own TLS peers (a browser
and an origin session, which only encrypt) are timed apart.  Prints CPU microseconds per request (process time, so other
processes on the machine disturb it less than wall time): compare
two checkouts on the same machine, never across machines; on a busy machine
trust the best round more than the median.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.address import IPv4Address  # noqa: E402

BODY = b"x" * 1024
HIT_URL = b"http://origin.test/hit.bin"
MISS_URL = b"http://origin.test/miss.bin"


class Transport:
    """Enough of a TCP transport for the connection classes: writes are counted and dropped."""

    def __init__(self, local_port: int, peer_port: int):
        self.host = IPv4Address("TCP", "127.0.0.1", local_port)
        self.peer = IPv4Address("TCP", "127.0.0.1", peer_port)
        self.connected = True
        self.disconnecting = False
        self.producer = None
        self.written = 0
        self.kept: list[bytes] | None = None    # what was written, while a TLS handshake needs it

    def getPeer(self):
        return self.peer

    def getHost(self):
        return self.host

    def setTcpNoDelay(self, _on):
        pass

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None

    def write(self, data):
        self.written += len(data)
        if self.kept is not None:
            self.kept.append(data)

    def writeSequence(self, parts):
        for part in parts:
            self.write(part)

    def take(self) -> bytes:
        kept, self.kept = self.kept, []
        return b"".join(kept or ())


    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def loseConnection(self):
        self.connected = False

    abortConnection = loseConnection


def reply(cache_control: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nCache-Control: " + cache_control
            + b"\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY)


AUTH_USER, AUTH_PASSWORD = b"bench", b"bench password"
AUTHORIZATION = b"Proxy-Authorization: Basic " + __import__("base64").b64encode(AUTH_USER + b":" + AUTH_PASSWORD)


def auth_policy(tmp: str) -> str | None:
    """Basic through Squid's basic_ncsa_auth and a bcrypt htpasswd file, as benchmarks/run.py's
    auth path; None without them."""
    import shutil
    import subprocess
    helper = "/usr/lib/squid/basic_ncsa_auth"
    if not os.path.exists(helper) or not shutil.which("htpasswd"):
        return None
    passwd = os.path.join(tmp, "passwd")
    subprocess.run(["htpasswd", "-cbB", passwd, AUTH_USER, AUTH_PASSWORD], check=True, capture_output=True)
    return (f"auth_param basic program {helper} {passwd}\nauth_param basic children 1\n"
            "acl users proxy_auth REQUIRED\nhttp_access allow users\n")


def _service(tmp: str, policy: str, ports: str):
    """A ProxyService (cache, access log, every name at 127.0.0.1) for ``policy`` and
    ``ports`` with the lines every benchmark configuration shares."""
    from twisted.internet import reactor

    from squidpy.config.loader import load
    from squidpy.log.access_log import AccessLog
    from squidpy.proxy.service import ProxyService

    config = load(text=policy + f"""
acl local src 127.0.0.0/8
http_access allow local
http_access deny all
{ports}
access_log {tmp}/access.log squid
cache_log {tmp}/cache.log
pid_filename none
visible_hostname bench.test
""", path=os.path.join(tmp, "squidpy.conf"))
    service = ProxyService(config, reactor)
    service.cache = service._open_cache(config)
    service.access_log = AccessLog.from_config(config, on_fatal=None)
    service.dns.cached = lambda host: ["127.0.0.1"]
    return service


def build(tmp: str, policy: str = ""):
    from squidpy.proxy.client_side import ClientConnection
    from squidpy.proxy.server_side import ServerConnection

    service = _service(tmp, policy, "http_port 127.0.0.1:3128")
    if policy:
        service._start_helpers(service.config)

    client = ClientConnection(service, "")
    client.makeConnection(Transport(3128, 40000))

    server = ServerConnection(service.pool, ("http", "origin.test", 80))
    server.makeConnection(Transport(50000, 80))
    return service, client, server


def build_bumped(tmp: str):
    """The same over SslBump: a CONNECT bumped (client-first, so that no origin is asked
    while bumping), then given the origin's certificate as server-first bumping
    (bump_bench's ``peek step1, stare step2, bump all``) would have; the origin is an
    https ServerConnection whose TLS peer is a session in this process.  Returns
    (service, client, server, browser, origin): browser and origin are the peers' TLS
    sessions, which only encrypt (what the proxy sends them is counted and dropped)."""
    from OpenSSL import SSL

    from squidpy.proxy.client_side import ClientConnection, ClientFactory
    from squidpy.proxy.server_side import ServerConnection
    from squidpy.tls.ca import init_ca, load_ca
    from squidpy.tls.certcache import CertCache, Minter
    from squidpy.tls.mint import CertProperties
    from squidpy.tls.session import ClientTlsSession, ServerTlsSession, bump_context

    bump_pem, _ = init_ca(os.path.join(tmp, "bump-ca"), "bench bump CA", key_type="ec")
    origin_pem, origin_crt = init_ca(os.path.join(tmp, "origin-ca"), "bench origin CA", key_type="ec")
    origin_cert = Minter(load_ca(str(origin_pem)), CertCache(1 << 20)).certificate(CertProperties("origin.test"))
    service = _service(tmp, "", f"http_port 127.0.0.1:3128 ssl-bump tls-cert={bump_pem} generate-host-certificates=on\n"
                                f"ssl_bump bump all\ntls_outgoing_options cafile={origin_crt}")
    config = service.config

    client = ClientConnection(service, config.http_port[0].name)
    client.factory = ClientFactory(service, config.http_port[0])
    transport = Transport(3128, 40000)
    client.makeConnection(transport)
    browser_context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    browser_context.set_alpn_protos([b"http/1.1"])
    browser = ClientTlsSession(browser_context)
    browser.conn.set_tlsext_host_name(b"origin.test")
    transport.kept = []
    client.dataReceived(b"CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\n\r\n")
    assert transport.take().startswith(b"HTTP/1.1 200"), "the CONNECT was not answered"
    _browser_handshake(browser, client, transport)
    assert client.info.bumped is not None, "the connection did not bump"
    transport.kept = None
    client.info.bumped.server_cert = origin_cert.cert

    server_transport = Transport(50000, 443)
    server_transport.kept = []
    server = ServerConnection(service.pool, ("https", "origin.test", 443),
                              service.tls.origin_session("origin.test", None))
    server.makeConnection(server_transport)
    origin = ServerTlsSession(bump_context(origin_cert))
    _origin_handshake(server, server_transport, origin)
    server_transport.kept = None
    return service, client, server, browser, origin


def _browser_handshake(browser, client, transport: Transport) -> None:
    """The browser's TLS handshake with the bumping client side, a bounded number of rounds."""
    to_proxy = browser.start().network
    for _ in range(10):
        if to_proxy:
            client.dataReceived(to_proxy)
        out = browser.receive(transport.take())
        to_proxy = out.network
        if browser.established and not to_proxy:
            return
    raise AssertionError("the browser's handshake did not finish")


def _origin_handshake(server, transport: Transport, origin) -> None:
    """The origin's TLS handshake with the proxy's ServerConnection, a bounded number of rounds."""
    for _ in range(10):
        out = origin.receive(transport.take())
        if out.network:
            server.dataReceived(out.network)
        if server.tls.established and origin.established:
            return
    raise AssertionError("the origin's handshake did not finish")


def run_hit(client, n: int, extra: bytes = b"") -> float:
    request = (b"GET " + HIT_URL + b" HTTP/1.1\r\nHost: origin.test\r\nUser-Agent: bench\r\nAccept: */*\r\n"
               + extra + b"\r\n")
    started = time.process_time()
    for _ in range(n):
        client.dataReceived(request)
    return (time.process_time() - started) / n * 1e6


def run_miss(service, client, server, n: int) -> float:
    request = b"GET " + MISS_URL + b" HTTP/1.1\r\nHost: origin.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
    answer = reply(b"no-store")
    pool = service.pool
    started = time.process_time()
    for _ in range(n):
        pool.release(server)
        client.dataReceived(request)
        server.dataReceived(answer)
    return (time.process_time() - started) / n * 1e6


def run_bumped_hit(client, browser, n: int) -> float:
    request = (b"GET /hit.bin HTTP/1.1\r\nHost: origin.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
    started = time.process_time()
    for _ in range(n):
        client.dataReceived(browser.send(request))
    return (time.process_time() - started) / n * 1e6


def run_bumped_miss(service, client, server, browser, origin, n: int) -> float:
    request = (b"GET /miss.bin HTTP/1.1\r\nHost: origin.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
    answer = reply(b"no-store")
    pool = service.pool
    started = time.process_time()
    for _ in range(n):
        pool.release(server)
        client.dataReceived(browser.send(request))
        server.dataReceived(origin.send(answer))
    return (time.process_time() - started) / n * 1e6


def peers_cost(browser, origin, n: int) -> float:
    """What the benchmark's own TLS peers cost per request (a request and a reply encrypted)."""
    request = (b"GET /miss.bin HTTP/1.1\r\nHost: origin.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
    answer = reply(b"no-store")
    started = time.process_time()
    for _ in range(n):
        browser.send(request)
        origin.send(answer)
    return (time.process_time() - started) / n * 1e6


def prime(service, client, server, extra: bytes = b"") -> None:
    """Store the hit object through the miss path; with credentials, wait (running the
    reactor, 20 seconds at most) for the helper to accept them: the user cache is warm."""
    from twisted.internet import reactor
    service.pool.release(server)
    written = client.transport.written
    client.dataReceived(b"GET " + HIT_URL + b" HTTP/1.1\r\nHost: origin.test\r\n" + extra + b"\r\n")
    deadline = time.monotonic() + 20
    while extra and time.monotonic() < deadline and not server.transport.written:
        reactor.iterate(0.01)
    server.dataReceived(reply(b"max-age=86400"))
    assert service.cache.store.memory.items, "the hit object was not stored"
    assert client.transport.written > written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=("hit", "miss", "auth"), help="one path only (e.g. under valgrind's "
                        "callgrind: instructions per request are what the machine's load cannot change)")
    parser.add_argument("--bumped", action="store_true", help="the hit and the miss inside a bumped (SslBump) "
                        "connection to an https origin instead")
    args = parser.parse_args()
    from squidpy.proxy.reactor import tune_malloc
    tune_malloc()           # as ``squidpy run`` does: buffers of 64 KB and more come from mmap
    if args.bumped:
        return main_bumped(args)
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as auth_tmp:
        service, client, server = build(tmp)
        prime(service, client, server)
        authed = None
        policy = auth_policy(auth_tmp) if args.only in (None, "auth") else None
        if policy is not None:
            authed = build(auth_tmp, policy)
            prime(*authed, extra=AUTHORIZATION + b"\r\n")
        results = {"memory hit 1 KB": [], "miss 1 KB": [], "hit, Basic (warm)": []}
        gc.collect()
        for _ in range(args.rounds):
            if args.only in (None, "hit", "auth"):
                results["memory hit 1 KB"].append(run_hit(client, args.requests))
            if args.only in (None, "miss"):
                results["miss 1 KB"].append(run_miss(service, client, server, args.requests))
            if authed is not None:
                results["hit, Basic (warm)"].append(run_hit(authed[1], args.requests, AUTHORIZATION + b"\r\n"))
                authed[0].access_log.flush()
            service.access_log.flush()
        for name, values in results.items():
            if not values:
                continue
            print(f"{name:<16} best {min(values):7.2f}  median {statistics.median(values):7.2f} us/request   "
                  f"(rounds: {', '.join(f'{v:.2f}' for v in values)})")
        for svc in (service, authed[0]) if authed is not None else (service,):
            if svc.running_helpers is not None:
                svc.running_helpers.stop(grace=0)
            svc.access_log.close()
            svc.cache.close()



def main_bumped(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        service, client, server, browser, origin = build_bumped(tmp)
        service.pool.release(server)        # prime the memory tier with the hit object
        client.dataReceived(browser.send(b"GET /hit.bin HTTP/1.1\r\nHost: origin.test\r\n\r\n"))
        server.dataReceived(origin.send(reply(b"max-age=86400")))
        assert service.cache.store.memory.items, "the hit object was not stored"
        results: dict[str, list[float]] = {"bumped memory hit 1 KB": [], "bumped miss 1 KB": [],
                                           "(the benchmark's own TLS peers, miss)": []}
        gc.collect()
        for _ in range(args.rounds):
            if args.only in (None, "hit"):
                results["bumped memory hit 1 KB"].append(run_bumped_hit(client, browser, args.requests))
            if args.only in (None, "miss"):
                results["bumped miss 1 KB"].append(
                    run_bumped_miss(service, client, server, browser, origin, args.requests))
            service.access_log.flush()
        if args.only is None:       # last: what the peers encrypt here never reaches the proxy
            results["(the benchmark's own TLS peers, miss)"] = [
                peers_cost(browser, origin, args.requests) for _ in range(args.rounds)]
        for name, values in results.items():
            if values:
                print(f"{name:<38} best {min(values):7.2f}  median {statistics.median(values):7.2f} us/request   "
                      f"(rounds: {', '.join(f'{v:.2f}' for v in values)})")
        service.access_log.close()
        service.cache.close()


if __name__ == "__main__":
    main()
