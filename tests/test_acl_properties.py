"""Property test: for random ACL lines and http_access rules, `squidpy check` and the
running proxy give every request the same verdict.

Each example is a set of random cases run in one squidpy (see tests/verdicts.py);
names resolve through a loopback DNS server, nothing is forwarded.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.dnsserver import DnsServer
from tests.proxyproc import ProxyProcess
from tests.squidproc import free_port
from tests.verdicts import HOSTS, NAMES, Case, Req, check_verdict, combined, send, standalone

TODAY = "MTWHFAS"[time.localtime().tm_wday]
VALUES = {
    "src": ["127.0.0.1", "127.0.0.2", "127.0.0.0/30", "127.0.0.2-127.0.0.3", "10.0.0.0/8", "all", "0/0"],
    "dst": ["192.0.2.0/24", "198.51.100.10", "192.0.2.20", "127.0.0.1"],
    "dstdomain": [".example.test", "www.example.test", ".facebook.test", "face", "localhost"],
    "dstdomain -n": [".example.test", "www.example.test"],
    "dst -n": ["192.0.2.0/24", "127.0.0.1"],
    "srcdomain": [".lan.test", "client3.guest.test", "localhost"],
    "dstdom_regex": ["^WWW\\.", "face", "[[:digit:]]$"],
    "port": ["80", "443", "8080", "1-1024", "1025-65535"],
    "method": ["GET", "POST", "CONNECT"],
    "proto": ["HTTP", "AUTHORITY", "HTTPS"],
    "url_regex": ["^http://www", "\\.test/a", "[[:digit:]]", "EXAMPLE", "squid-internal-mgr"],
    "url_regex -i": ["EXAMPLE", "^HTTP://WWW"],
    "urlpath_regex": ["^/a", "\\?", "b$", "\\d"],
    "browser": ["^curl", "MOZILLA"],
    "browser -i": ["MOZILLA"],
    "req_header": ["X-Team -i ^red$"],
    "localip": ["127.0.0.1", "127.0.0.5"],
    "localport": ["{port}", "1-1024"],
    "time": [TODAY, "MTWHFAS 00:00-23:59", "D"],
    "maxconn": ["0", "1", "5"],
    "http_status": ["200"],
    "note": ["cat video"],
    "annotate_transaction": ["cat=video"],
}
# The proxy's name is its address, so that a manager URL means the same to both, in
# origin-form (made into http://VISIBLE_HOSTNAME:PORT/...) and in absolute form.
VISIBLE = "visible_hostname 127.0.0.1\n"
PREDEFINED = ["all", "localhost", "manager", "CONNECT", "to_localhost"]
REQUESTS = [
    ("http://www.example.test/a?b", "GET", {}), ("http://www.facebook.test/b", "POST", {"Content-Length": "0"}),
    ("http://192.0.2.20/x1", "GET", {"User-Agent": "curl/8"}), ("http://www.dst-out.test:8080/b", "GET", {}),
    ("www.example.test:443", "CONNECT", {}), ("http://face/", "GET", {"X-Team": "RED"}),
    ("http://127.0.0.1:{port}/squid-internal-mgr/info", "GET", {"User-Agent": "Mozilla/5"}),
]


@st.composite
def cases(draw) -> Case:
    types = draw(st.lists(st.sampled_from(sorted(VALUES)), min_size=1, max_size=4))
    acls = []
    names = []
    for i, kind in enumerate(types):
        values = draw(st.lists(st.sampled_from(VALUES[kind]), min_size=1, max_size=2, unique=True))
        if kind in ("req_header", "note", "annotate_transaction", "maxconn"):
            values = values[:1]
        acls.append(f"acl a{i} {kind} {' '.join(values)}")
        names.append(f"a{i}")
    ref = st.tuples(st.booleans(), st.sampled_from(names + PREDEFINED)).map(lambda t: ("!" if t[0] else "") + t[1])
    rules = draw(st.lists(st.tuples(st.sampled_from(["allow", "deny"]), st.lists(ref, min_size=1, max_size=3)),
                          min_size=1, max_size=4))
    requests = []
    for url, method, headers in draw(st.lists(st.sampled_from(REQUESTS), min_size=2, max_size=4)):
        client = draw(st.sampled_from(["127.0.0.1", "127.0.0.2", "127.0.0.3"]))
        origin_form = "squid-internal-mgr" in url and draw(st.booleans())
        requests.append(Req(url, "?", client=client, method=method, headers=headers,
                            extra_connections=draw(st.integers(0, 2)), origin_form=origin_form))
    return Case("random", "\n".join(acls) + "\n", [f"{a} {' '.join(r)}" for a, r in rules], requests)


@pytest.mark.slow
@settings(max_examples=6, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(cases(), min_size=12, max_size=20))
def test_check_and_the_running_proxy_agree(random_cases):
    """Not shrunk: each example starts a proxy, and the failure message already
    names the request and the case's whole configuration."""
    directory = Path(tempfile.mkdtemp(prefix="acl-props-"))
    dns = DnsServer({name.rstrip("."): [address] for name, address in HOSTS.items()}, names=NAMES).start()
    for attempt in range(5):     # the port is chosen first (the rules name it): another process may take it
        port = free_port()
        try:
            proxy = ProxyProcess(directory / f"squidpy{attempt}", VISIBLE + combined(random_cases, directory, port) +
                                 f"dns_nameservers 127.0.0.1:{dns.port}\n", listen=f"127.0.0.1:{port} name=office")
            break
        except RuntimeError as e:
            if "Address already in use" not in str(e) or attempt == 4:
                dns.stop()
                raise
    try:
        for number, case in enumerate(random_cases, 1):
            case_file = directory / f"case{number}.conf"
            case_file.write_text(VISIBLE + standalone(case, directory, port))
            for req in case.requests:
                live, offline = send(proxy.port, number, req), check_verdict(case_file, port, req)
                assert live == offline, (f"proxy {live}, check {offline}: {req}\n"
                                         f"{case_file.read_text()}")
    finally:
        proxy.stop()
        dns.stop()
        log = proxy.read_cache_log()
        shutil.rmtree(directory, ignore_errors=True)
    assert "Traceback" not in log
