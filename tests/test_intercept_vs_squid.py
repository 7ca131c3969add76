"""Squid 5.7 and squidpy as the same intercepting gateway, side by side: one network
namespace topology (tests/netns.py), the same nftables rules, the same plain-curl requests
from the client; their access logs must agree line by line (client, result code, status,
method, URL, hierarchy code and server).  The two known differences (docs/intercept.md,
"Differences from Squid 5.7") are not in this sequence; tests/test_intercept_netns.py
covers them."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests import netns
from tests.conftest import assert_no_tracebacks
from tests.dnsserver import DnsServer
from tests.netns import ORIGIN4, ORIGIN6, OTHER4
from tests.origin import Origin
from tests.proxyproc import ProxyProcess, wait_for
from tests.squidproc import SQUID, SquidProcess

NO_PROXY_ENV = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
NOWHERE = "198.51.100.9"        # blocked.test: an address nothing answers on
NAMES = {"origin.test": ORIGIN4, "other.test": OTHER4, "blocked.test": NOWHERE, "origin6.test": ORIGIN6}
POLICY = """
http_port 3128
http_port 3129 {mode}
acl clients src 192.0.2.0/24 2001:db8:1::/64
acl blocked dstdomain blocked.test
http_access deny blocked
http_access allow clients
http_access deny all
host_verify_strict {strict}
"""


def plan(topo):
    """(curl options, URL) in order, and the raw requests as (address, bytes)."""
    resolve = lambda name, address: ("--resolve", f"{name}:80:{address}")  # noqa: E731
    return [
        ((), f"http://{ORIGIN4}/obj/d1?cc=max-age=600"),
        ((), f"http://{ORIGIN4}/obj/d1?cc=max-age=600"),
        (resolve("origin.test", ORIGIN4), "http://origin.test/obj/d2?cc=max-age=600"),
        (resolve("origin.test", ORIGIN4), "http://origin.test/obj/d2?cc=max-age=600"),
        (("-H", "Host: other.test"), f"http://{ORIGIN4}/obj/d3?cc=max-age=600"),
        (("-H", "Host: other.test"), f"http://{ORIGIN4}/obj/d3?cc=max-age=600"),
        (resolve("other.test", OTHER4), "http://other.test/obj/d3?cc=max-age=600"),
        (("-H", "Host: origin.test:8080"), f"http://{ORIGIN4}/obj/d4"),
        (("-H", "Host: blocked.test"), f"http://{ORIGIN4}/obj/d5"),
        (("-6", *resolve("origin6.test", f"[{ORIGIN6}]")), "http://origin6.test/obj/d6?cc=max-age=600"),
        (("-6", *resolve("origin6.test", f"[{ORIGIN6}]")), "http://origin6.test/obj/d6?cc=max-age=600"),
        (("-0", "-H", "Host:"), f"http://{ORIGIN4}/obj/d7"),
    ]


RAW = [(ORIGIN4, b"CONNECT other.test:80 HTTP/1.1\r\nHost: other.test:80\r\n\r\n")]


def drive(topo) -> None:
    for options, url in plan(topo):
        subprocess.run([*topo.client.exec_prefix(), "curl", "-s", "-m", "10", "-o", "/dev/null", *options, url],
                       timeout=30, env=NO_PROXY_ENV)
    for address, data in RAW:
        with topo.client.connect(address, 80) as s:
            s.sendall(data)
            s.recv(65536)


def fields(line: str) -> tuple:
    """What must agree: client, result/status, method, URL, hierarchy/server, type."""
    parts = line.split()
    return (parts[2], parts[3], parts[5], parts[6], parts[8], parts[9])


@pytest.fixture(scope="module")
def topo():
    why = netns.unavailable()
    if why:
        pytest.skip(why)
    if not os.path.exists(SQUID):
        pytest.skip("Squid 5.7 is not installed (.ci/run installs Debian's squid)")
    topo = netns.Topology.create()
    try:
        with topo.origin.entered():
            origins = [Origin(address, 80) for address in (ORIGIN4, OTHER4, ORIGIN6)]
        for origin in origins:
            origin.start()
        yield topo
        for origin in origins:
            origin.stop()
    finally:
        topo.destroy()


def run_squid(topo, mode, strict):
    # Squid drops to the 'proxy' user, who cannot enter pytest's private tmp_path
    root = Path(tempfile.mkdtemp(prefix="squid-intercept-", dir="/tmp"))
    os.chmod(root, 0o755)
    try:
        return _run_squid(topo, root / "squid", mode, strict)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_squid(topo, directory, mode, strict):
    squid = SquidProcess(directory, POLICY.format(mode=mode, strict=strict) + "strip_query_terms off\n",
                         hosts={**NAMES}, prefix=topo.gateway.exec_prefix(), start=False)
    squid.start()
    try:
        topo.intercept(3129, mode=mode)
        drive(topo)
        return wait_for(lambda: squid.log_lines(len(plan(topo)) + len(RAW), timeout=0.2), 10)
    finally:
        squid.stop()


def run_squidpy(topo, directory, mode, strict):
    with topo.gateway.entered():
        dns = DnsServer({k: [v] for k, v in NAMES.items()}, names={ORIGIN4: "origin.test"}).start()
    proxy = ProxyProcess(directory, POLICY.format(mode=mode, strict=strict)
                         + f"dns_nameservers 127.0.0.1:{dns.port}\n", prefix=topo.gateway.exec_prefix())
    try:
        topo.intercept(3129, mode=mode)
        drive(topo)
        return proxy.log_lines(len(plan(topo)) + len(RAW), timeout=10)
    finally:
        proxy.stop()
        dns.stop()
        assert_no_tracebacks(proxy)


@pytest.mark.parametrize("mode, strict", [("intercept", "off"), ("tproxy", "off"), ("intercept", "on")])
def test_squidpy_logs_what_squid_logs(topo, tmp_path, mode, strict):
    squid = [fields(line) for line in run_squid(topo, mode, strict)]
    ours = [fields(line) for line in run_squidpy(topo, tmp_path / "squidpy", mode, strict)]
    assert len(squid) == len(plan(topo)) + len(RAW)
    assert ours == squid
