"""The cache manager and /metrics with real tools: Debian's squidclient and curl against
squidpy, side by side with Squid 5.7 where Squid has the same page, a Prometheus
parser on /metrics, and ``workers 2`` adding its kids up."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import raw_request, read_response
from tests.proxyproc import ProxyProcess, wait_for
from tests.squidproc import SquidProcess

SQUIDCLIENT = "/usr/bin/squidclient"

MANAGER_POLICY = """
acl local src 127.0.0.0/8
http_access allow localhost manager
http_access deny manager
http_access allow local
http_access deny all
cachemgr_passwd s3cret 5min
cachemgr_passwd disable objects
"""


def squidclient(port: int, action: str, *options: str) -> tuple[int, str]:
    """(status, body) of ``squidclient -p PORT [options] mgr:ACTION``."""
    out = subprocess.run([SQUIDCLIENT, "-h", "127.0.0.1", "-p", str(port), *options, f"mgr:{action}"],
                         capture_output=True, timeout=30)
    head, _, body = out.stdout.decode("latin-1").partition("\r\n\r\n")
    status = int(head.split()[1]) if head.startswith("HTTP/") else 0
    return status, body


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-s", "-S", "--max-time", "20", *args], capture_output=True, timeout=30)


def labels(body: str) -> list[str]:
    """The labels a monitoring script keys on: the text before each ':' or ' = '."""
    out = []
    for line in body.splitlines():
        m = re.match(r"^\s*([^:=\d]*?)\s*[:=]", line)
        if m and m.group(1):
            out.append(m.group(1))
    return out


@pytest.fixture(scope="module")
def both(tmp_path_factory, origin, squid_stops):
    """squidpy and Squid 5.7 with one policy, each having served a miss, a hit and a 404."""
    # Squid gives up root for the 'proxy' user: its directory must be reachable by that user,
    # which pytest's private temporary directories are not
    squid_dir = Path(tempfile.mkdtemp(prefix="squid-mgr-", dir="/tmp"))
    os.chmod(squid_dir, 0o755)
    squid = SquidProcess(squid_dir, MANAGER_POLICY)
    proxy = ProxyProcess(tmp_path_factory.mktemp("squidpy"), MANAGER_POLICY)
    try:
        for p in (squid, proxy):
            for path in ("/obj/mgr-a?cc=max-age%3D600&size=1000", "/obj/mgr-a?cc=max-age%3D600&size=1000",
                         "/status/404"):
                curl("-o", "/dev/null", "-x", p.url, origin.url(path))
        yield squid, proxy
    finally:
        squid_stops(squid, then=lambda: shutil.rmtree(squid_dir, ignore_errors=True))     # in the background
        proxy.stop()


# Lines Squid prints that squidpy has nothing behind: its memory pools' call counts.
NOT_IN_SQUIDPY = {"memPoolAlloc calls", "memPoolFree calls"}


@pytest.mark.parametrize("action", ["info", "counters", "60min", "utilization", "ipcache", "fqdncache",
                                    "client_list"])
def test_squidclient_reads_squidpy_as_it_reads_squid(both, action):
    squid, proxy = both
    s_status, s_body = squidclient(squid.port, action)
    p_status, p_body = squidclient(proxy.port, action)
    assert (s_status, p_status) == (200, 200)
    expected = [label for label in labels(s_body) if label not in NOT_IN_SQUIDPY]
    assert labels(p_body) == expected


def test_the_info_page_carries_the_figures_scripts_read(both):
    _, proxy = both
    _, body = squidclient(proxy.port, "info")
    assert re.search(r"^\tNumber of clients accessing cache:\t1$", body, re.M)
    requests = int(re.search(r"^\tNumber of HTTP requests received:\t(\d+)$", body, re.M).group(1))
    assert requests >= 3
    assert re.search(r"^\tAverage HTTP requests per minute since start:\t\d+\.\d$", body, re.M)
    hit = re.search(r"^\tHits as % of all requests:\t5min: ([\d.]+)%, 60min: ([\d.]+)%$", body, re.M)
    assert hit and 0 < float(hit.group(1)) < 100
    _, counters = squidclient(proxy.port, "counters")
    values = dict(line.split(" = ", 1) for line in counters.splitlines() if " = " in line)
    assert int(values["client_http.hits"]) >= 1 and int(values["client_http.requests"]) == requests + 1


def test_the_layout_of_squids_per_process_pages(both, origin):
    squid, proxy = both
    for action in ("pconn", "filedescriptors", "active_requests", "storedir"):
        s_status, s_body = squidclient(squid.port, action)
        p_status, p_body = squidclient(proxy.port, action)
        assert (s_status, p_status) == (200, 200), action
        assert s_body.splitlines()[:3] == p_body.splitlines()[:3] or action in ("active_requests", "storedir")
    # the idle connection to the origin, named as Squid's PconnPool::key names it
    idle = [re.findall(r"^\t item \d+:\t(.*)$", squidclient(p.port, "pconn")[1], re.M) for p in (squid, proxy)]
    assert idle[0] and idle[0] == idle[1] and idle[1][0].endswith("/127.0.0.1"), idle
    _, body = squidclient(proxy.port, "active_requests")
    assert "uri cache_object://127.0.0.1/active_requests\nlogType TCP_MISS\n" in body
    # as in Squid, the page's own request has been read and nothing written to it yet
    assert re.search(r"^\tFD \d+, read [1-9]\d*, wrote 0$", body, re.M), body
    _, body = squidclient(proxy.port, "filedescriptors")
    own = [line for line in body.splitlines() if line.endswith("cache_object://127.0.0.1/filedescriptors")]
    assert len(own) == 1 and int(own[0].split()[3]) > 0, body
    # a keep-alive client between requests: what its finished request read and was sent
    url = origin.url("/obj/mgr-a?cc=max-age%3D600&size=1000")
    request = f"GET {url} HTTP/1.1\r\nHost: {url.split('/')[2]}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        s.sendall(request)
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < 1000:
            chunk = s.recv(65536)       # the socket's timeout bounds the wait
            assert chunk, reply
            reply += chunk
        _, body = squidclient(proxy.port, "filedescriptors")
        mine = [line.split() for line in body.splitlines() if f" 127.0.0.1:{s.getsockname()[1]} " in line]
    assert mine and mine[0][-3:] == ["Reading", "next", "request"], body
    assert (int(mine[0][3]), int(mine[0][4])) == (len(request), len(reply)), (mine, len(reply))
    _, body = squidclient(proxy.port, "storedir")
    assert body.startswith("Store Directory Statistics:\nStore Entries          : ")


def test_connections_that_have_sent_nothing_are_listed_counted_and_served(make_proxy, origin):
    """A connection that has not sent a byte is held as a bare descriptor (seam.Waiting):
    it is still a client connection for the reports, and its first request is served."""
    proxy = make_proxy("acl local src 127.0.0.1\nhttp_access allow local\n")
    silent = [socket.create_connection(("127.0.0.1", proxy.port), timeout=10) for _ in range(5)]
    try:
        ports = {s.getsockname()[1] for s in silent}

        def listed():
            body = squidclient(proxy.port, "filedescriptors")[1]
            rows = [line.split() for line in body.splitlines() if line.endswith("Reading next request")]
            return {int(row[-4].rsplit(":", 1)[1]) for row in rows if row[-4].startswith("127.0.0.1:")} >= ports
        assert wait_for(listed, 10)
        info = squidclient(proxy.port, "info")[1]
        assert int(re.search(r"^\tNumber of file desc currently in use:\s+(\d+)$", info, re.M).group(1)) >= 5
        url = origin.url("/size/100")
        for s in silent:
            s.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            with s.makefile("rb") as f:
                status, _, body = read_response(f)
            assert (status, len(body)) == (200, 100)
    finally:
        for s in silent:
            s.close()


def test_passwords_as_squid_asks_them(both):
    squid, proxy = both
    for p in (squid, proxy):
        assert squidclient(p.port, "5min")[0] == 401
        assert squidclient(p.port, "5min", "-w", "wrong")[0] == 401
        status, body = squidclient(p.port, "5min", "-w", "s3cret")
        assert status == 200 and body.startswith("sample_start_time = ")
        assert squidclient(p.port, "objects")[0] == 404            # disabled
        assert squidclient(p.port, "config")[0] == 404             # hidden without a password line
        assert squidclient(p.port, "no_such_action")[0] == 404
        # curl http://user:password@proxy:port/squid-internal-mgr/ACTION: a Basic Authorization field
        out = curl("-i", f"http://u:s3cret@127.0.0.1:{p.port}/squid-internal-mgr/5min")
        assert out.stdout.startswith(b"HTTP/1.1 200 OK"), out.stdout[:200]
        out = curl("-i", f"http://127.0.0.1:{p.port}/squid-internal-mgr/5min")
        assert out.stdout.startswith(b"HTTP/1.1 401 ")
        assert b'WWW-Authenticate: Basic realm="5min"' in out.stdout
    assert "cache manager: unknown@127.0.0.1: password needed for '5min'" in proxy.read_cache_log()


def test_the_config_page_never_shows_a_password(make_proxy):
    proxy = make_proxy(MANAGER_POLICY + "cachemgr_passwd hunter2 config\n")
    status, body = squidclient(proxy.port, "config", "-w", "hunter2")
    assert status == 200
    assert "hunter2" not in body and "s3cret" not in body
    assert "cachemgr_passwd XXXXXXXXXX config\n" in body and "http_access allow localhost manager\n" in body


def test_a_manager_url_through_the_proxy_is_answered_once(make_proxy, origin, tmp_path):
    # self.test: another name of this machine's loopback address (as localhost is), known
    # from hosts_file: the URL names the address and port the request came to
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 self.test\n")
    proxy = make_proxy(MANAGER_POLICY + f"visible_hostname proxy.test\nhosts_file {hosts}\n")
    before = origin.count()
    for url in (f"http://proxy.test:{proxy.port}/squid-internal-mgr/menu",
                f"http://127.0.0.1:{proxy.port}/squid-internal-mgr/menu",
                f"http://self.test:{proxy.port}/squid-internal-mgr/menu"):
        for _ in range(2):
            out = curl("-i", "-x", proxy.url, url)
            assert out.stdout.startswith(b"HTTP/1.1 200 OK") and b" index " in out.stdout
    lines = proxy.log_lines(6)
    assert len(lines) == 6 and all("TCP_MISS/200" in line and "HIER_NONE/-" in line for line in lines)
    assert sum("http://self.test:" in line for line in lines) == 2
    assert origin.count() == before
    status, body = squidclient(proxy.port, "counters")
    assert "server.all.requests = 0\n" in body        # never forwarded, so never cached either


def test_cache_manager_is_denied_by_the_manager_acl(make_proxy):
    proxy = make_proxy("acl local src 127.0.0.0/8\nhttp_access deny manager\nhttp_access allow local\n")
    assert squidclient(proxy.port, "info")[0] == 403
    assert curl("-o", "/dev/null", "-w", "%{http_code}", f"{proxy.url}/metrics").stdout == b"403"


# ---------------------------------------------------------------- /metrics
def scrape(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = reply.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict, name: str, **labels) -> float:
    return sum(s.value for s in families[name].samples
               if s.name in (name, name + "_total") and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_count_what_was_served(make_proxy, origin):
    proxy = make_proxy("acl blocked dstdomain blocked.test\nhttp_access deny blocked\n" + MANAGER_POLICY
                       + "metrics_port 127.0.0.1:0\n")
    for _ in range(3):
        curl("-o", "/dev/null", "-x", proxy.url, origin.url("/obj/metrics-a?cc=max-age%3D600&size=500"))
    curl("-o", "/dev/null", "-x", proxy.url, "http://blocked.test/")
    families = scrape(f"{proxy.url}/metrics")
    assert value(families, "squidpy_requests", result="TCP_MISS", status_class="2xx", method="GET") == 1
    assert value(families, "squidpy_requests", result="TCP_MEM_HIT", status_class="2xx", method="GET") == 2
    assert value(families, "squidpy_denied_requests") == 1
    denied = [s for s in families["squidpy_denied_requests"].samples if s.name.endswith("_total")][0]
    assert denied.labels["rule"] == "http_access deny blocked"
    assert value(families, "squidpy_cache_objects", tier="memory") == 1
    assert value(families, "squidpy_client_http_hits") == 2
    assert value(families, "squidpy_client_connections") >= 1
    durations = [s for s in families["squidpy_request_duration_seconds"].samples
                 if s.name.endswith("_count") and s.labels["kind"] == "hit"]
    assert durations[0].value == 2
    # the metrics_port: /metrics only, still behind http_access, forwards nothing
    port = int(re.search(r"Accepting metrics connections at 127\.0\.0\.1:(\d+)", proxy.read_cache_log()).group(1))
    assert value(scrape(f"http://127.0.0.1:{port}/metrics"), "squidpy_requests") >= 5
    answer = raw_request(port, f"GET {origin.url('/size/10')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 404 ")
    assert raw_request(port, b"GET /squid-internal-mgr/info HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 404 ")
    assert proxy.log_line(f":{port}/metrics") is not None


def test_workers_add_their_kids_up(tmp_path, origin):
    """A real 2-worker squidpy: every page and /metrics show both kids' requests, whichever
    kid the kernel gives the scrape to."""
    proxy = ProxyProcess(tmp_path, MANAGER_POLICY + "workers 2\n")
    try:
        wait_for(lambda: proxy.read_cache_log().count("Accepting HTTP connections") >= 2, 20)
        requests = 30
        for i in range(requests):        # a connection each: the kernel spreads them over the kids
            curl("-o", "/dev/null", "-x", proxy.url, origin.url(f"/size/{100 + i}"))
        assert len(proxy.log_lines(requests)) >= requests

        def misses_seen():
            families = scrape(f"{proxy.url}/metrics")
            return value(families, "squidpy_requests", result="TCP_MISS", method="GET") == requests and families
        families = wait_for(misses_seen, 10)
        assert families, "the kids' counters do not add up to the requests made"
        assert value(families, "squidpy_processes") == 2
        for _ in range(4):               # any kid answers with the sum
            status, body = squidclient(proxy.port, "counters")
            got = int(re.search(r"^client_http\.requests = (\d+)$", body, re.M).group(1))
            assert status == 200 and got >= requests
        status, body = squidclient(proxy.port, "info")
        assert int(re.search(r"Number of HTTP requests received:\t(\d+)", body).group(1)) >= requests
        status, body = squidclient(proxy.port, "client_list")
        assert body.startswith("by kid1 {\nCache Clients:\n") and "} by kid1\n\nby kid2 {\n" in body
        totals = [int(n) for n in re.findall(r"^HTTP: (\d+) Requests", body, re.M)]
        assert len(totals) == 2 and sum(totals) >= requests
        assert all(n > 0 for n in totals), "the kernel gave every connection to one kid: nothing was added up"
    finally:
        proxy.stop()
    assert "Traceback" not in proxy.read_cache_log()


def test_objects_show_when_each_object_expires_as_squid_records_it(make_proxy, origin):
    """EX: is Squid's hdrExpirationTime: Date plus max-age (Squid 5.7 showed
    ``EX:1796069488`` for a max-age=600 reply stored at 1796068888), -1 without one."""
    proxy = make_proxy(MANAGER_POLICY.replace("cachemgr_passwd disable objects\n", ""))
    for path in ("/obj/ex-maxage?cc=max-age%3D600", "/obj/ex-none?cc=public&lm=3600"):
        curl("-o", "/dev/null", "-x", proxy.url, origin.url(path))
    status, body = squidclient(proxy.port, "objects")
    assert status == 200
    times = {}
    for block in body.split("\n\n"):
        url = re.search(r"^\tGET (\S+)$", block, re.M)
        lv = re.search(r"^\tLV:(-?\d+) +LU:(-?\d+) +LM:(-?\d+) +EX:(-?\d+)", block, re.M)
        if url and lv:
            times[url.group(1).rsplit("/", 1)[1].split("?")[0]] = [int(v) for v in lv.groups()]
    stored, _, _, expires = times["ex-maxage"]
    assert 599 <= expires - stored <= 601
    assert times["ex-none"][3] == -1
