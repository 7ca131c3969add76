"""The PAC file (/proxy.pac, /wpad.dat) run by real JavaScript engines: node for the verdicts
of FindProxyForURL, headless Chromium for what a browser does when the proxy does not answer
(pac_fallback direct: it goes direct; none: it fails, so the proxy cannot be bypassed)."""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import subprocess

import pytest

from squidpy.config import loader
from squidpy.pac import PacSettings, render
from tests.conftest import LOCAL_POLICY, raw_request
from tests.proxyproc import ProxyProcess

NODE = shutil.which("node") or shutil.which("nodejs")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# The standard PAC helpers, as browsers define them (Mozilla's and Chromium's
# isPlainHostName, dnsResolve, isInNet; Microsoft's isInNetEx for IPv6), with a DNS the test
# controls: nothing is looked up for real.
PAC_RUNTIME = r"""
const DNS = %(dns)s;
function isPlainHostName(host) { return host.search('(\\.)|:') == -1; }
function dnsResolve(host) { return Object.prototype.hasOwnProperty.call(DNS, host) ? DNS[host] : null; }
function convert_addr(ip) { const b = ip.split('.'); return ((b[0] & 0xff) << 24) | ((b[1] & 0xff) << 16) | ((b[2] & 0xff) << 8) | (b[3] & 0xff); }
function isInNet(ipaddr, pattern, maskstr) {
    const test = /^(\d{1,4})\.(\d{1,4})\.(\d{1,4})\.(\d{1,4})$/.exec(ipaddr);
    if (test == null) { ipaddr = dnsResolve(ipaddr); if (ipaddr == null) return false; }
    else if (test[1] > 255 || test[2] > 255 || test[3] > 255 || test[4] > 255) return false;
    const m = convert_addr(maskstr);
    return (convert_addr(ipaddr) & m) == (convert_addr(pattern) & m);
}
function v6(text) {
    let [head, tail] = text.includes('::') ? text.split('::') : [text, null];
    const h = head ? head.split(':') : [], t = tail ? tail.split(':') : [];
    const groups = tail === null ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
    return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g || '0', 16)), 0n);
}
function isInNetEx(ip, prefix) {
    if (ip.indexOf(':') < 0) return false;
    const [net, bits] = prefix.split('/');
    const shift = 128n - BigInt(bits);
    return (v6(ip) >> shift) === (v6(net) >> shift);
}
"""

RUNNER = r"""
%(runtime)s
%(pac)s
const cases = %(cases)s;
console.log(JSON.stringify(cases.map(([url, host]) => FindProxyForURL(url, host))));
"""


def verdicts(pac: str, cases: list[tuple[str, str]], dns: dict[str, str] | None = None) -> list[str]:
    """FindProxyForURL(url, host) for each case, computed by node."""
    assert NODE, "node is missing: .ci/run installs Debian's nodejs package"
    script = RUNNER % {"runtime": PAC_RUNTIME % {"dns": json.dumps(dns or {})}, "pac": pac,
                       "cases": json.dumps(cases)}
    out = subprocess.run([NODE, "-e", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def case(url: str) -> tuple[str, str]:
    host = url.split("://", 1)[1].split("/", 1)[0]
    host = host.rsplit(":", 1)[0] if not host.endswith("]") and host.count(":") == 1 else host
    return url, host


# ------------------------------------------------------------ verdicts, with node

def test_the_default_file_sends_local_names_direct_and_the_rest_through_the_proxy():
    pac = render(PacSettings(), "proxy.example.lan:3128")
    urls = ["http://intranet/", "http://localhost:8080/", "http://127.0.0.1/", "http://[::1]/",
            "https://www.example.com/", "http://10.1.2.3/"]
    assert verdicts(pac, [case(u) for u in urls]) == [
        "DIRECT", "DIRECT", "DIRECT", "DIRECT",
        "PROXY proxy.example.lan:3128; DIRECT", "PROXY proxy.example.lan:3128; DIRECT"]


def test_direct_domains_and_networks_several_proxies_and_failing_closed():
    settings = PacSettings(
        proxies=("proxy1.example.lan:3128", "[2001:db8::3]:8080"),
        domains=(".example.lan", "intranet.example.com"),
        networks=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.0/24"),
                  ipaddress.ip_network("fc00::/7")),
        plain_hosts_direct=False, fallback="none")
    proxied = "PROXY proxy1.example.lan:3128; PROXY [2001:db8::3]:8080"
    dns = {"git.corp.example": "10.9.9.9", "www.example.com": "93.184.216.34", "printer.example.org": "192.168.1.20"}
    expected = {
        "http://example.lan/": "DIRECT",                   # .example.lan: the domain itself
        "https://www.Example.LAN/x": "DIRECT",             # and every name under it, any case
        "http://notexample.lan/": proxied,                 # not a suffix match on the text
        "http://intranet.example.com/": "DIRECT",          # that host only
        "http://www.intranet.example.com/": proxied,
        "http://intranet/": proxied,                       # pac_plain_hosts_direct off
        "http://10.1.2.3/": "DIRECT",                      # an address in a network
        "http://11.0.0.1/": proxied,
        "http://git.corp.example/": "DIRECT",              # a name the browser resolves into 10/8
        "http://printer.example.org:631/": "DIRECT",
        "http://www.example.com/": proxied,
        "http://unknown.example/": proxied,                # no answer from DNS: through the proxy
        "http://[fd00::1]/": "DIRECT",                     # IPv6 network, isInNetEx
        "http://[2001:db8::1]/": proxied,
        "http://127.0.0.1:3000/": "DIRECT",                # this machine, always
    }
    got = verdicts(render(settings, "ignored:3128"), [case(u) for u in expected], dns)
    assert dict(zip(expected, got)) == expected
    assert all("DIRECT" not in v for v in got if v != "DIRECT")     # failing closed: no way around


def test_the_served_file_follows_the_configuration(tmp_path):
    text = (LOCAL_POLICY + "pac_proxy proxy1.example.lan:3128 proxy2.example.lan:3128\n"
            "pac_direct .example.lan 10.0.0.0/8\npac_direct intranet.example.com\npac_fallback none\n")
    proxy = ProxyProcess(tmp_path, text)
    try:
        files = []
        for path in ("/proxy.pac", "/wpad.dat"):
            raw = raw_request(proxy.port, f"GET {path} HTTP/1.1\r\nHost: wpad.example.lan\r\n"
                                          "Connection: close\r\n\r\n".encode())
            head, _, body = raw.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200") and b"Content-Type: application/x-ns-proxy-autoconfig" in head
            files.append(body.decode())
        assert files[0] == files[1]
    finally:
        proxy.stop()
    cases = [case(u) for u in ("http://www.example.lan/", "http://intranet.example.com/", "http://10.0.0.1/",
                               "http://intranet/", "https://www.example.com/")]
    assert verdicts(files[0], cases) == ["DIRECT", "DIRECT", "DIRECT", "DIRECT",
                                         "PROXY proxy1.example.lan:3128; PROXY proxy2.example.lan:3128"]


def test_without_pac_proxy_the_file_names_the_address_the_browser_used(proxy):
    raw = raw_request(proxy.port, f"GET /proxy.pac HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\n"
                                  "Connection: close\r\n\r\n".encode())
    pac = raw.partition(b"\r\n\r\n")[2].decode()
    assert verdicts(pac, [case("http://www.example.com/")]) == [f"PROXY 127.0.0.1:{proxy.port}; DIRECT"]


@pytest.mark.parametrize("line,message", [
    ("pac_direct exa_mple.lan", "pac_direct: 'exa_mple.lan' is neither a network (10.0.0.0/8) nor a domain (.example.lan)"),
    ("pac_direct 10.0.0.0/33", "pac_direct: '10.0.0.0/33' is neither a network (10.0.0.0/8) nor a domain (.example.lan)"),
    ("pac_proxy proxy.example.lan", "pac_proxy: 'proxy.example.lan': expected HOST:PORT"),
    ("pac_proxy proxy\";alert(1);\":3128", "pac_proxy: 'proxy\";alert(1);\"' is not a host name or IPv4 address"),
    ("pac_fallback maybe", "pac_fallback: expected one of: direct, none"),
])
def test_pac_directives_refuse_what_they_cannot_use(tmp_path, line, message):
    conf = tmp_path / "squidpy.conf"
    conf.write_text(line + "\n")
    with pytest.raises(loader.ConfigErrors) as e:
        loader.load(str(conf))
    assert [str(err) for err in e.value.errors] == [f"{conf}:1: {message}"]


# ------------------------------------------------------------ a real browser, proxy down

CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]


def browse(tmp_path, pac_url: str, url: str) -> subprocess.CompletedProcess:
    host = url.split("://", 1)[1].split(":", 1)[0]
    return subprocess.run([CHROMIUM, *CHROME_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}",
                           f"--proxy-pac-url={pac_url}", f"--host-resolver-rules=MAP {host} 127.0.0.1",
                           "--dump-dom", url], capture_output=True, text=True, timeout=90)


@pytest.mark.parametrize("fallback", ["direct", "none"])
def test_chromium_with_the_proxy_down_goes_direct_only_if_allowed(tmp_path, origin, fallback):
    """The PAC names a proxy that does not answer.  With pac_fallback direct Chromium fetches
    the page from the site itself (around the proxy and its rules); with none it does not."""
    assert CHROMIUM, "chromium is missing: .ci/run installs Debian's chromium package"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]                 # nothing listens there: the proxy is "down"
    proxy = ProxyProcess(tmp_path / "p", LOCAL_POLICY + f"pac_proxy 127.0.0.1:{dead}\npac_fallback {fallback}\n")
    try:
        path = f"/obj/pac-{fallback}-{dead}?ct=text/html"
        result = browse(tmp_path, f"http://127.0.0.1:{proxy.port}/proxy.pac", f"http://site.test:{origin.port}{path}")
        reached = origin.count(path)
        if fallback == "direct":
            assert reached == 1 and "served 1" in result.stdout, result.stderr[-2000:]
        else:
            assert reached == 0 and "served" not in result.stdout
            assert "ERR_PROXY_CONNECTION_FAILED" in result.stderr + result.stdout, result.stderr[-2000:]
    finally:
        proxy.stop()
