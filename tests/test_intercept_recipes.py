"""docs/intercept.md's gateway recipes, applied as written in a gateway network namespace
(tests/netns.py, without its own policy routing: the recipe adds it), each followed by
plain curl fetches from the client namespace over IPv4 and IPv6.  A recipe that stops
working, or a doc edit that breaks one, fails here.

squidpy runs as ``cache_effective_user proxy`` (the user Debian's squid package makes), as
a gateway would run it: the output-chain recipe excludes that user, and the tproxy
recipes need the CAP_NET_ADMIN it keeps."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests import netns
from tests.conftest import assert_no_tracebacks
from tests.dnsserver import DnsServer
from tests.netns import CLIENT4, CLIENT6, GATEWAY_ORIGIN4, GATEWAY_ORIGIN6, ORIGIN4, ORIGIN6
from tests.origin import Origin
from tests.proxyproc import ProxyProcess, wait_for

DOC = Path(__file__).resolve().parent.parent / "docs" / "intercept.md"
RECIPE = re.compile(r"<!-- recipe: (\S+) \((nft|sh)\) -->\n```\n(.*?)```", re.S)
NO_PROXY_ENV = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}


def recipes() -> dict[str, tuple[str, str]]:
    return {name: (kind, text) for name, kind, text in RECIPE.findall(DOC.read_text())}


def test_the_page_has_every_recipe_the_tests_apply():
    assert set(recipes()) == {"nft-redirect", "iptables-redirect", "policy-routing", "nft-tproxy",
                              "iptables-tproxy", "nft-output-redirect",
                              # port 443: tests/test_intercept_https.py applies them (it has the TLS origin)
                              "nft-redirect-443", "iptables-redirect-443"}


@pytest.fixture(scope="module")
def gateway():
    why = netns.unavailable()
    if why:
        pytest.skip(why)
    for tool in ("iptables", "ip6tables", "setpriv"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (.ci/run installs iptables)")
    try:
        pwd.getpwnam("proxy")
    except KeyError:
        pytest.skip("no 'proxy' user (Debian's squid package makes it; .ci/run installs squid)")
    topo = netns.Topology.create(policy_routing=False)
    directory = Path(tempfile.mkdtemp(prefix="sqpy-recipes-", dir="/tmp"))
    directory.chmod(0o755)          # the proxy user reaches its logs
    try:
        with topo.origin.entered():
            origins = [Origin(ORIGIN4, 80), Origin(ORIGIN6, 80)]
        with topo.gateway.entered():
            dns = DnsServer({"origin.test": [ORIGIN4]}).start()
        for origin in origins:
            origin.start()
        proxy = ProxyProcess(directory, f"""
http_port 3128
http_port 3129 intercept
http_port 3130 tproxy
cache_effective_user proxy
acl nets src 192.0.2.0/24 2001:db8:1::/64 198.51.100.1
http_access allow nets
http_access deny all
dns_nameservers 127.0.0.1:{dns.port}
""", prefix=topo.gateway.exec_prefix())
        yield topo, proxy
        proxy.stop()
        assert_no_tracebacks(proxy)
        for origin in origins:
            origin.stop()
        dns.stop()
    finally:
        topo.destroy()
        shutil.rmtree(directory, ignore_errors=True)


def apply(topo, *names: str) -> None:
    """Start from nothing, then apply the named recipes in the gateway, as written
    (only the clients' interface is named as in the test network)."""
    g = topo.gateway
    g.run("nft", "flush", "ruleset")
    for family in ("-4", "-6"):
        subprocess.run([*g.exec_prefix(), "ip", family, "rule", "del", "fwmark", "1", "lookup", "100"],
                       capture_output=True, timeout=10)
        subprocess.run([*g.exec_prefix(), "ip", family, "route", "flush", "table", "100"],
                       capture_output=True, timeout=10)
    found = recipes()
    for name in names:
        kind, text = found[name]
        text = text.replace('"lan0"', '"g0"').replace(" lan0 ", " g0 ")
        if kind == "nft":
            g.run("nft", "-f", "-", input=text)
        else:
            g.run("sh", "-e", "-c", text)


def curl(topo, url: str, *options: str, where=None) -> tuple[int, bytes]:
    where = where or topo.client.exec_prefix()
    done = subprocess.run([*where, "curl", "-sS", "-m", "10", "-o", "-", "-w", "\n%{http_code}", *options, url],
                          capture_output=True, timeout=30, env=NO_PROXY_ENV)
    body, _, status = done.stdout.rpartition(b"\n")
    return int(status or 0), body


def peer(topo, url: str, *options: str) -> str:
    status, body = curl(topo, url, *options)
    assert status == 200, body
    return json.loads(body)["peer"]


def logged(proxy, path: str) -> str:
    line = wait_for(lambda: proxy.log_line(path, timeout=0.2), 5)
    assert line, f"no access log line for {path}"
    return line


@pytest.mark.parametrize("recipe", ["nft-redirect", "iptables-redirect"])
def test_redirect_recipes(gateway, recipe):
    topo, proxy = gateway
    apply(topo, recipe)
    assert peer(topo, f"http://{ORIGIN4}/echo/{recipe}-4") == GATEWAY_ORIGIN4
    assert peer(topo, f"http://[{ORIGIN6}]/echo/{recipe}-6") == GATEWAY_ORIGIN6
    assert f" {CLIENT4} TCP_MISS/200 " in logged(proxy, f"/echo/{recipe}-4")
    line = logged(proxy, f"/echo/{recipe}-6")
    assert f" {CLIENT6} TCP_MISS/200 " in line and f"ORIGINAL_DST/{ORIGIN6}" in line


@pytest.mark.parametrize("recipe", ["nft-tproxy", "iptables-tproxy"])
def test_tproxy_recipes_keep_the_clients_address(gateway, recipe):
    topo, proxy = gateway
    apply(topo, "policy-routing", recipe)
    assert peer(topo, f"http://{ORIGIN4}/echo/{recipe}-4") == CLIENT4
    assert peer(topo, f"http://[{ORIGIN6}]/echo/{recipe}-6") == CLIENT6
    line = logged(proxy, f"/echo/{recipe}-4")
    assert f" {CLIENT4} TCP_MISS/200 " in line and f"ORIGINAL_DST/{ORIGIN4}" in line


def test_output_recipe_intercepts_the_gateway_but_not_the_proxy(gateway):
    topo, proxy = gateway
    apply(topo, "nft-output-redirect")
    nobody = [*topo.gateway.exec_prefix(), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    status, body = curl(topo, f"http://{ORIGIN4}/echo/output", where=nobody)
    assert status == 200 and json.loads(body)["peer"] == GATEWAY_ORIGIN4     # squidpy's own fetch went out
    line = logged(proxy, "/echo/output")
    assert f" {GATEWAY_ORIGIN4} TCP_MISS/200 " in line and f"ORIGINAL_DST/{ORIGIN4}" in line
    assert proxy.access_log.read_text().count("/echo/output") == 1      # squidpy did not fetch through itself
