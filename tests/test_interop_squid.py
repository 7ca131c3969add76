"""squidpy and the real Squid 5.7 in one hierarchy: each as the other's child and parent, one
CARP array of both, and ICP between siblings.  Each request's hierarchy code and the machine
that fetched from the origin are asserted from both access logs."""

from __future__ import annotations

import random

from tests.conftest import LOCAL_POLICY
from tests.origin import Origin
from tests.proxyproc import wait_for
from tests.squidproc import child_config, free_port, get_through, parent_config, wait_until_forwarding


def squidpy(make_proxy, name: str, extra: str = "", listen: str = "127.0.0.1:0"):
    return make_proxy(LOCAL_POLICY + f"visible_hostname {name}\n" + extra, name=name, listen=listen)


def hier(proxy, url: str) -> str:
    line = proxy.log_line(f" {url} ")
    assert line, (url, proxy.access_log.read_text() if proxy.access_log.exists() else "")
    return line.split()[8]


def test_squidpy_child_of_a_squid_parent(make_proxy, make_squid, origin):
    squid = make_squid(parent_config("squid-parent"))
    child = squidpy(make_proxy, "squidpy-child", f"cache_peer 127.0.0.1 parent {squid.port} 0 no-query no-digest\n"
                                                "never_direct allow all\n")
    assert wait_until_forwarding(child.port, origin.url("/size/1?warm1"))
    url = origin.url("/obj/c1?cc=max-age%3D600")
    status, _, body = get_through(child.port, url)
    assert (status, body) == (200, b"c1 served 1\n")
    assert hier(child, url) == "FIRSTUP_PARENT/127.0.0.1"
    assert hier(squid, url) == "HIER_DIRECT/127.0.0.1"
    # the parent keeps it: the next request is its hit, and squidpy's own
    assert get_through(child.port, url)[2] == b"c1 served 1\n"
    assert origin.count("/obj/c1?cc=max-age%3D600") == 1


def test_squid_child_of_a_squidpy_parent(make_proxy, make_squid, origin):
    parent = squidpy(make_proxy, "squidpy-parent")
    squid = make_squid(child_config([f"cache_peer 127.0.0.1 parent {parent.port} 0 no-query no-digest"],
                                    name="squid-child"))
    assert wait_until_forwarding(squid.port, origin.url("/size/1?warm2"))
    url = origin.url("/obj/c2?cc=max-age%3D600")
    status, _, body = get_through(squid.port, url)
    assert (status, body) == (200, b"c2 served 1\n")
    assert hier(squid, url) == "FIRSTUP_PARENT/127.0.0.1"
    assert hier(parent, url) == "HIER_DIRECT/127.0.0.1"
    # CONNECT through the squidpy parent
    import socket
    with socket.create_connection(("127.0.0.1", squid.port), timeout=10) as s:
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (origin.port, origin.port))
        assert s.recv(4096).startswith(b"HTTP/1.1 200 ")
        s.sendall(b"GET /size/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"xxx")
    assert hier(squid, f"CONNECT 127.0.0.1:{origin.port}".split(" ", 1)[1]) == "FIRSTUP_PARENT/127.0.0.1"


def test_one_carp_array_of_squid_and_squidpy(make_proxy, make_squid):
    """Two children (Squid and squidpy) over one array of four parents (two of each):
    every URL goes to the same parent from both children, the one that fetches it."""
    origin = Origin().start()
    try:
        members = [("sp1", squidpy(make_proxy, "array-sp1")), ("sq1", make_squid(parent_config("array-sq1"))),
                   ("sp2", squidpy(make_proxy, "array-sp2")), ("sq2", make_squid(parent_config("array-sq2")))]
        weights = {"sp1": 1, "sq1": 2, "sp2": 1, "sq2": 3}
        lines = [f"cache_peer 127.0.0.1 parent {p.port} 0 carp weight={weights[name]} no-query no-digest "
                 f"name=member-{name}" for name, p in members]
        squid_child = make_squid(child_config(lines, name="array-squid-child"))
        our_child = squidpy(make_proxy, "array-squidpy-child", "\n".join(lines) + "\nnever_direct allow all\n")
        for child in (squid_child, our_child):
            assert wait_until_forwarding(child.port, origin.url(f"/size/1?warm{child.port}"))
        rnd = random.Random(7)
        urls = [origin.url(f"/obj/a{i}?cc=max-age%3D600&r={rnd.randrange(10**6)}") for i in range(120)]
        for url in urls:
            assert get_through(squid_child.port, url)[2].endswith(b" served 1\n")
        for url in urls:
            assert get_through(our_child.port, url)[2].endswith(b" served 1\n")     # the member's hit
        def fetchers() -> dict | None:
            found: dict[str, list[str]] = {}
            for name, p in members:
                text = p.access_log.read_text() if p.access_log.exists() else ""
                for line in text.splitlines():
                    fields = line.split()
                    if len(fields) > 8 and fields[8].startswith("HIER_DIRECT/") and fields[6] in urls:
                        found.setdefault(fields[6], []).append(name)
            return found if len(found) == len(urls) else None
        fetched = wait_for(fetchers, timeout=10)
        assert fetched and all(len(names) == 1 for names in fetched.values()), fetched
        for url in urls:
            assert origin.count(url.split(str(origin.port), 1)[1]) == 1, url
        squid_codes = {line.split()[6]: line.split()[8] for line in squid_child.access_log.read_text().splitlines()}
        assert wait_for(lambda: our_child.log_lines(len(urls) + 1))
        our_codes = {line.split()[6]: line.split()[8] for line in our_child.access_log.read_text().splitlines()}
        assert {squid_codes[u] for u in urls} == {our_codes[u] for u in urls} == {"CARP/127.0.0.1"}
        counts = {name: sum(1 for names in fetched.values() if names == [name]) for name, _ in members}
        assert all(counts.values()) and counts["sq2"] > counts["sp1"], counts
    finally:
        origin.stop()


def test_icp_squidpy_asks_a_squid_sibling(make_proxy, make_squid, origin):
    """squidpy (ICP on 127.0.0.2: Squid ignores ICP from its own address) queries a Squid
    sibling: a hit is fetched from the sibling (SIBLING_HIT), a miss goes direct."""
    squid_icp = free_port()
    squid = make_squid(parent_config("squid-sibling", f"icp_port {squid_icp}\nudp_incoming_address 127.0.0.1\n"
                                                      "acl peers src 127.0.0.2\nicp_access allow peers\n"
                                                      "http_access allow peers\n"))
    ours = squidpy(make_proxy, "squidpy-sibling",
                   f"icp_port {free_port()}\nudp_incoming_address 127.0.0.2\nicp_query_timeout 2000\n"
                   f"cache_peer 127.0.0.1 sibling {squid.port} {squid_icp}\n")
    cached = origin.url("/obj/sib-hit?cc=max-age%3D600")
    assert get_through(squid.port, cached)[2] == b"sib-hit served 1\n"          # now in Squid's cache
    assert wait_for(lambda: "Accepting ICP messages" in ours.read_cache_log())
    status, _, body = get_through(ours.port, cached)
    assert (status, body) == (200, b"sib-hit served 1\n")
    assert hier(ours, cached) == "SIBLING_HIT/127.0.0.1"
    assert origin.count("/obj/sib-hit?cc=max-age%3D600") == 1
    assert squid.log_line("UDP_HIT/000") and squid.log_line(f"ICP_QUERY {cached}")
    missing = origin.url("/obj/sib-miss?cc=max-age%3D600")
    assert get_through(ours.port, missing)[2] == b"sib-miss served 1\n"
    assert hier(ours, missing) == "HIER_DIRECT/127.0.0.1"
    assert squid.log_line("UDP_MISS/000")


def test_icp_a_squid_sibling_asks_squidpy(make_proxy, make_squid, origin):
    """squidpy answers a Squid sibling's ICP queries from its cache; Squid fetches its hits
    from squidpy.  squidpy's log lines for the queries are Squid's."""
    our_icp = free_port()
    ours = squidpy(make_proxy, "squidpy-sibling2",
                   f"icp_port {our_icp}\nudp_incoming_address 127.0.0.2\n"
                   "acl siblings src 127.0.0.1\nicp_access allow siblings\n", listen="127.0.0.2:0")
    squid = make_squid(child_config([f"cache_peer 127.0.0.2 sibling {ours.port} {our_icp} no-digest"],
                                    name="squid-sibling2", never_direct=False,
                                    extra=f"icp_port {free_port()}\nudp_incoming_address 127.0.0.1\n"
                                          "icp_query_timeout 2000\n"))
    ours_url = origin.url("/obj/ours?cc=max-age%3D600")
    import http.client
    conn = http.client.HTTPConnection("127.0.0.2", ours.port, timeout=10)
    conn.request("GET", ours_url)
    assert conn.getresponse().read() == b"ours served 1\n"          # now in squidpy's cache

    def hit_through_squid() -> bool:
        url = ours_url
        status, _, body = get_through(squid.port, url)
        return status == 200 and squid.log_line(f" {url} - SIBLING_HIT/127.0.0.2", timeout=0.5)
    assert wait_for(hit_through_squid, timeout=20), squid.access_log.read_text()
    assert origin.count("/obj/ours?cc=max-age%3D600") == 1
    fields = ours.log_line(f"ICP_QUERY {ours_url}").split()
    assert (fields[2], fields[3], fields[5], fields[6], fields[7], fields[8], fields[9]) == (
        "127.0.0.1", "UDP_HIT/000", "ICP_QUERY", ours_url, "-", "HIER_NONE/-", "-")
