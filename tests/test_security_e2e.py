"""End to end, real proxy, real origin on loopback: the policy holes of issue 10 stay shut.

Each test asserts what the origin received (nothing, for a denied request) and what
later clients get.  The pure decisions are in tests/test_security_policy.py; the same
requests through Squid 5.7 are in tests/test_squid_differential.py.
"""

from __future__ import annotations

import socket
import urllib.parse
import uuid

import json

import pytest

from tests.conftest import LOCAL_POLICY, read_response
from tests.dnsserver import DnsServer
from tests.origin import Origin
from tests.proxyproc import wait_for


def send(port: int, request: str, method: str = "GET"):
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(request.encode("latin-1"))
        return read_response(s.makefile("rb"), method)


def get(proxy, target: str, method: str = "GET", headers: str = ""):
    return send(proxy.port, f"{method} {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n", method)


def log_line(proxy, needle: str, count: int = 1) -> list[str]:
    line = proxy.log_line(needle, count=count)
    assert line is not None, f"no access.log line with {needle!r}"
    return line.split()


def manager_info(proxy) -> dict[str, str]:
    status, _, body = send(proxy.port, "GET /squid-internal-mgr/info?format=json HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200
    return {key: str(value) for key, value in json.loads(body).items()}


# ------------------------------------------------------------ Set-Cookie is never replayed

COOKIE_QUERY = [("cc", "max-age=600"), ("h", "Set-Cookie:session=alice-secret"), ("h", "Set-Cookie2:s2=alice"),
                ("h", "X-Other:kept"), ("etag", '"v1"')]


@pytest.mark.parametrize("cache_dir", [False, True], ids=["memory", "disk"])
def test_set_cookie_goes_to_the_first_user_only(make_proxy, origin, tmp_path, cache_dir):
    config = LOCAL_POLICY
    if cache_dir:      # nothing kept in memory: every hit is read back from the disk
        config += f"cache_dir diskcache {tmp_path / 'cache'} 50\nmaximum_object_size_in_memory 0 KB\n"
    proxy = make_proxy(config)
    target = origin.url(f"/obj/{uuid.uuid4().hex[:8]}?{urllib.parse.urlencode(COOKIE_QUERY)}")
    status, headers, body = get(proxy, target)
    assert status == 200 and headers["set-cookie"] == "session=alice-secret" and headers["set-cookie2"] == "s2=alice"
    path = target.split(f":{origin.port}", 1)[1]        # as the origin records it, query included
    if cache_dir:
        from tests.test_cache_dir import wait_stored
        assert wait_stored(tmp_path / "cache", 1)          # the writer thread has stored it
    for method, extra, code in (("GET", "", 200), ("HEAD", "", 200), ("GET", 'If-None-Match: "v1"\r\n', 304)):
        status, headers, body = get(proxy, target, method, extra)
        assert status == code and headers["x-cache"].startswith("HIT")
        assert "set-cookie" not in headers and "set-cookie2" not in headers
        assert headers["x-other"] == "kept"
    assert origin.count(path) == 1
    results = [line.split()[3] for line in proxy.log_lines(4) if path in line]
    hit_code = "TCP_HIT/200" if cache_dir else "TCP_MEM_HIT/200"
    assert results == ["TCP_MISS/200", hit_code, hit_code, "TCP_INM_HIT/304"]


def test_a_revalidated_hit_carries_no_cookie_either(shared_proxy, origin):
    # stored stale (dated 100 s ago, fresh for 60): the next request revalidates
    q = [("cc", "max-age=60"), ("aged", "100"), ("etag", '"v1"'), ("h", "Set-Cookie:a=first"),
         ("h304", "Set-Cookie:a=second")]
    proxy = shared_proxy(LOCAL_POLICY)
    target = origin.url(f"/obj/{uuid.uuid4().hex[:8]}?{urllib.parse.urlencode(q)}")
    assert get(proxy, target)[1]["set-cookie"] == "a=first"
    status, headers, _ = get(proxy, target)
    assert status == 200 and "set-cookie" not in headers
    assert log_line(proxy, f" {target} ", count=2)[3] == "TCP_REFRESH_UNMODIFIED/200"


# ------------------------------------------------------------ URL ACLs see the normalised URL

URL_POLICY = """
acl casino url_regex -i casino
acl cpath urlpath_regex -i ^/cas.no
acl local src 127.0.0.0/8
http_access deny casino
http_access deny cpath
http_access allow local
http_access deny all
"""


@pytest.mark.parametrize("path", ["/cas%69no", "/cas%49no", "/x?ca%73%69no", "/%63as.no"])
def test_percent_escapes_do_not_bypass_url_acls(shared_proxy, origin, path):
    proxy = shared_proxy(URL_POLICY)
    before = origin.count()
    status, headers, _ = get(proxy, origin.url(path))
    assert status == 403 and headers["x-squid-error"] == "ERR_ACCESS_DENIED 0"
    assert origin.count() == before
    assert log_line(proxy, f" {origin.url(path)} ")[3] == "TCP_DENIED/403"


def test_escapes_that_do_not_spell_the_word_pass(shared_proxy, origin):
    proxy = shared_proxy(URL_POLICY)
    assert get(proxy, origin.url("/size/3?cas%2569no"))[0] == 200     # one decoding pass, as Squid


# ------------------------------------------------------------ addresses, however written

ADDRESS_POLICY = """
acl blocked dstdomain -n 127.0.0.9
acl local src 127.0.0.0/8
http_access deny blocked
http_access allow local
http_access deny all
"""


@pytest.fixture
def blocked_origin():
    """An origin on 127.0.0.9, the address the policy denies."""
    server = Origin(host="127.0.0.9").start()
    yield server
    server.stop()


@pytest.mark.parametrize("host", ["127.0.0.9", "[::ffff:127.0.0.9]", "[::ffff:7f00:9]",
                                  "[0:0:0:0:0:ffff:7f00:0009]", "2130706441", "0x7f.0.0.9", "127.9"])
def test_a_denied_address_is_denied_however_written(shared_proxy, blocked_origin, host):
    proxy = shared_proxy(ADDRESS_POLICY)
    status, _, _ = get(proxy, f"http://{host}:{blocked_origin.port}/size/1")
    assert status == 403 and blocked_origin.count() == 0
    fields = log_line(proxy, f":{blocked_origin.port}/size/1 ")          # this test's origin port
    assert fields[3] == "TCP_DENIED/403" and fields[6] == f"http://127.0.0.9:{blocked_origin.port}/size/1"


def test_connect_to_a_mapped_denied_address_is_refused(shared_proxy):
    listener = socket.socket()
    listener.bind(("127.0.0.9", 0))
    listener.listen(4)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    proxy = shared_proxy(ADDRESS_POLICY)
    try:
        status, _, _ = send(proxy.port, f"CONNECT [::ffff:127.0.0.9]:{port} HTTP/1.1\r\nHost: x\r\n\r\n", "CONNECT")
        assert status == 403
        fields = log_line(proxy, f" 127.0.0.9:{port} ")
        assert (fields[3], fields[5], fields[6]) == ("TCP_DENIED/403", "CONNECT", f"127.0.0.9:{port}")
        with pytest.raises(BlockingIOError):
            listener.accept()           # the proxy never connected
    finally:
        listener.close()


def test_a_mapped_address_that_is_allowed_is_reached_over_ipv4(shared_proxy, origin):
    proxy = shared_proxy(ADDRESS_POLICY)
    mark = uuid.uuid4().hex
    status, _, body = get(proxy, f"http://[::ffff:127.0.0.1]:{origin.port}/size/5?{mark}")
    assert status == 200 and len(body) == 5
    assert log_line(proxy, mark)[6] == f"http://127.0.0.1:{origin.port}/size/5?{mark}"


# ------------------------------------------------------------ PURGE

def test_purge_is_refused_unless_an_acl_names_it(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY)        # every loopback client allowed, PURGE never mentioned
    target = origin.url(f"/obj/{uuid.uuid4().hex[:8]}?cc=max-age%3D600")
    get(proxy, target)
    status, headers, _ = get(proxy, target, "PURGE")
    assert status == 403 and headers["x-squid-error"] == "ERR_ACCESS_DENIED 0"
    fields = log_line(proxy, "PURGE")
    assert (fields[3], fields[5], fields[6], fields[8], fields[9]) == ("TCP_DENIED/403", "PURGE", target, "HIER_NONE/-",
                                                                      "text/html")
    assert get(proxy, target)[1]["x-cache"].startswith("HIT")      # still cached


def test_purge_answers_as_squid_when_enabled(make_proxy, origin):
    proxy = make_proxy("acl Purge method PURGE\n" + LOCAL_POLICY)
    target = origin.url(f"/obj/{uuid.uuid4().hex[:8]}?cc=max-age%3D600")
    get(proxy, target)
    for expected in (200, 404):
        status, headers, body = get(proxy, target, "PURGE")
        assert (status, body, headers["content-length"]) == (expected, b"", "0")
        assert "content-type" not in headers
    lines = [line.split() for line in proxy.log_lines(3) if " PURGE " in line]
    assert [(f[3], f[8], f[9]) for f in lines] == [("TCP_MISS/200", "HIER_NONE/-", "-"),
                                                   ("TCP_MISS/404", "HIER_NONE/-", "-")]


# ------------------------------------------------------------ the proxy's own pages

DENY_ALL = "visible_hostname proxy-under-test\nhttp_access deny all\n"


@pytest.mark.parametrize("path", ["/", "/proxy.pac", "/wpad.dat", "/squid-internal-mgr/info", "/nothing-here"])
def test_own_pages_are_refused_to_denied_clients(shared_proxy, path):
    proxy = shared_proxy(DENY_ALL)
    status, headers, body = send(proxy.port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\n\r\n")
    assert status == 403 and headers["x-squid-error"] == "ERR_ACCESS_DENIED 0"
    assert b"FindProxyForURL" not in body and b"a web proxy" not in body
    assert log_line(proxy, f" http://proxy-under-test:{proxy.port}{path} ")[3] == "TCP_DENIED/403"


def test_own_pages_are_served_to_allowed_clients(make_proxy):
    proxy = make_proxy("visible_hostname proxy-under-test\n" + LOCAL_POLICY)
    status, headers, body = send(proxy.port, f"GET /proxy.pac HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\n\r\n")
    assert status == 200 and b"FindProxyForURL" in body
    assert log_line(proxy, "proxy.pac")[3:7] == ["TCP_MISS/200", log_line(proxy, "proxy.pac")[4], "GET",
                                                 f"http://proxy-under-test:{proxy.port}/proxy.pac"]


def test_the_host_header_does_not_choose_the_acl_facts(make_proxy):
    """Squid ignores Host on a request to itself; so does squidpy (a dstdomain allow
    rule cannot be borrowed by naming an allowed site in Host)."""
    proxy = make_proxy("visible_hostname proxy-under-test\nacl ok dstdomain .allowed.example\n"
                       "http_access allow ok\nhttp_access deny all\n")
    status, _, _ = send(proxy.port, "GET /squid-internal-mgr/info HTTP/1.1\r\nHost: www.allowed.example\r\n\r\n")
    assert status == 403


def test_manager_is_served_when_a_dstdomain_rule_comes_first(make_proxy):
    """Issue 10: a dstdomain rule before 'allow localhost manager' needs a reverse
    lookup when the proxy's name is an address; the proxy makes it (127.0.0.1 is
    'localhost' in /etc/hosts, not blocked), as squidpy check does, instead of
    taking the pending lookup for a denial."""
    proxy = make_proxy("visible_hostname 127.0.0.1\nacl blocked dstdomain .blocked.example\n"
                       "acl local src 127.0.0.0/8\nhttp_access deny blocked\n"
                       "http_access allow local manager\nhttp_access deny all\n")
    status, _, body = send(proxy.port, "GET /squid-internal-mgr/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status == 200 and b"Squid Object Cache: Version " in body


def test_object_listing_takes_a_literal_pattern(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY)
    literal = origin.url("/obj/x(a+)+$?cc=max-age%3D600")
    trap = origin.url("/obj/" + "a" * 40 + "?cc=max-age%3D600")
    for target in (literal, trap):
        assert get(proxy, target)[0] == 200
    query = urllib.parse.urlencode({"pattern": "(a+)+$", "format": "lines"})
    status, _, body = send(proxy.port, f"GET /squid-internal-mgr/objects?{query} HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200
    listed = [line.split()[0] for line in body.decode().splitlines()]
    assert listed == [literal]
    assert get(proxy, origin.url("/size/2"))[0] == 200         # and the proxy answers others as before


# ------------------------------------------------------------ tables stay bounded

def test_dns_cache_stays_bounded_under_many_names(make_proxy):
    dns = DnsServer().start()           # NXDOMAIN for everything
    try:
        proxy = make_proxy(LOCAL_POLICY + f"dns_nameservers 127.0.0.1:{dns.port}\nipcache_size 40\n")
        for i in range(300):
            assert get(proxy, f"http://n{i}.nx.test/")[0] == 503
        info = manager_info(proxy)
        assert 30 <= int(info["ipcache_entries"]) <= 38          # 95% of 40, trimmed to under 90%
    finally:
        dns.stop()


def test_pool_keys_go_with_their_idle_connections(make_proxy, origin):
    names = [f"o{i}.pool.test" for i in range(60)]
    dns = DnsServer({name: ["127.0.0.1"] for name in names}).start()
    try:
        proxy = make_proxy(LOCAL_POLICY + f"dns_nameservers 127.0.0.1:{dns.port}\n"
                           "server_idle_pconn_timeout 1 second\n")
        for name in names:
            assert get(proxy, f"http://{name}:{origin.port}/size/1")[0] == 200
        assert int(manager_info(proxy)["idle_server_origins"]) > 0
        assert wait_for(lambda: manager_info(proxy)["idle_server_origins"] == "0", 15)
    finally:
        dns.stop()
