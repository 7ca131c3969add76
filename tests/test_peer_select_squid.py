"""Peer selection against the real Squid 5.7: the parent it picks, and the hierarchy code it
logs, are the ones :class:`squidpy.peers.selection.PeerSelector` picks for the same lines.

Squid runs with parents on loopback ports (origins that answer anything and record what
they got); each URL is requested through it in turn, and the same requests, in the same
order, go through squidpy's selection.  For CARP, peer names, weights, carp-key and URL
spellings vary, so the name hash (signed bytes), the load multipliers (zero factors
included), the key building and the URL canonicalisation are all checked; round-robin
is checked request by request.
"""

from __future__ import annotations

import http.client
import random
import tempfile

from squidpy.acl.checklist import Checklist
from squidpy.config import loader
from squidpy.http.url import parse_target
from squidpy.peers.selection import (
    CARP, FIRSTUP_PARENT, ROUNDROBIN_PARENT, SOURCEHASH_PARENT, PeerSelector, PeerTable, RequestFacts)
from tests.origin import Origin
from tests.proxyproc import wait_for
from tests.squidproc import SquidProcess, child_config, get_through, parent_config, wait_until_forwarding


def parents(count: int) -> list[Origin]:
    return [Origin().start() for _ in range(count)]


def squid_with(make_squid, peer_lines: list[str]) -> SquidProcess:
    return make_squid(child_config(peer_lines, extra="cache deny all"))


def fetch(squid: SquidProcess, url: str, conn_holder: list) -> tuple[int, bytes]:
    for _ in range(2):
        if not conn_holder:
            conn_holder.append(http.client.HTTPConnection("127.0.0.1", squid.port, timeout=10))
        conn = conn_holder[0]
        try:
            conn.request("GET", url, headers={"Host": url.split("/")[2]})
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (http.client.HTTPException, OSError):
            conn.close()
            conn_holder.clear()
    raise AssertionError(f"no answer from Squid for {url}")


WARM_URL = "http://warm.test/size/1"


def squid_choices(squid: SquidProcess, origins: list[Origin], urls: list[str]) -> dict[str, tuple[int, str]]:
    """Which origin (index) received each URL through Squid, and the hierarchy code it logged
    (after one warm-up request, which Squid serves once its probes found the parents up)."""
    holder: list = []

    def warm() -> bool:
        try:
            return fetch(squid, WARM_URL, holder)[0] == 200
        except AssertionError:
            return False

    # Squid counts its parents down until its first probe connects to them
    assert wait_for(warm, timeout=20), squid.read_cache_log()
    for origin in origins:
        with origin._lock:
            origin.requests.clear()
    for url in urls:
        status, _ = fetch(squid, url, holder)
        assert status == 200, (url, status, squid.read_cache_log()[-2000:])
    lines = squid.log_lines(len(urls) + 1)
    codes = {}
    for line in lines:
        fields = line.split()
        codes[fields[6]] = fields[8].split("/")[0]
    chosen = {}
    for i, origin in enumerate(origins):
        with origin._lock:
            for method, path, headers, body in origin.requests:
                chosen[path] = (i, codes.get(path))
    return chosen


def our_choices(peer_lines: list[str], urls: list[str], origins: list[Origin],
                client: str = "127.0.0.1") -> dict[str, tuple[int, str]]:
    """The same requests through squidpy's peer selection, every parent up.  The lines are
    read from a file written as Squid's is, so peer names are the same bytes for both."""
    with tempfile.NamedTemporaryFile("w", suffix=".conf", encoding="utf-8") as f:
        f.write("\n".join(peer_lines + ["never_direct allow all"]) + "\n")
        f.flush()
        config = loader.load(f.name)
    table = PeerTable(config.cache_peer)
    for peer in config.cache_peer:
        table.resolved(peer, ["127.0.0.1"])
        table.connect_succeeded(peer, 0)
    ports = {o.port: i for i, o in enumerate(origins)}
    chosen = {}
    for url in [WARM_URL, *urls]:
        target = parse_target("GET", url)
        ch = Checklist(src=client, url=target.url, host=target.host, port=target.port, path=target.path)
        facts = RequestFacts("GET", target.url, target.scheme, target.host, target.port, target.path, client, ch)
        selected = PeerSelector(table, config, facts, 0).start()
        first = selected.destinations[0]
        chosen[target.url] = (ports[first.peer.http_port], first.code)
    del chosen[WARM_URL]
    return chosen


NAMES = ["proxy-a.example.net", "proxy-b.example.net", "cache3.corp", "Cache-Four.Example.COM",
         "p5", "PARENT_six", "x", "very-long-parent-name-number-eight.internal.example.org"]


def urls_for(count: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    hosts = ["www.example.com", "cdn.test", "a.b.c.example.org", "img7.shop.test", "10.1.2.3"]
    urls = []
    for i in range(count):
        host = rnd.choice(hosts)
        port = rnd.choice(["", "", ":8080", ":80"])
        query = rnd.choice(["", f"?q={rnd.randrange(10**6)}", "?a=1&b=%41%2F"])
        urls.append(f"http://{host}{port}/size/{rnd.randrange(1, 50)}/{i}{query}")
    return urls


def run_case(make_squid, peer_lines_for, count: int, urls: list[str]) -> dict[str, tuple[int, str]]:
    """Squid's choice and hierarchy code for each URL, once squidpy's are found the same."""
    origins = parents(count)
    try:
        lines = peer_lines_for(origins)
        squid = squid_with(make_squid, lines)
        try:
            theirs = squid_choices(squid, origins, urls)
        finally:
            squid.terminate()       # it stops while the rest runs (make_squid waits for it)
        ours = our_choices(lines, urls, origins)
        assert len(theirs) == len(urls)
        differ = {u: (ours[u], theirs.get(u)) for u in ours if ours[u] != theirs.get(u)}
        assert not differ, f"{len(differ)} of {len(urls)} URLs went elsewhere: {list(differ.items())[:5]}"
        return theirs
    finally:
        for o in origins:
            o.stop()


def spread(choices) -> set[int]:
    return {peer for peer, code in choices.values()}


def codes(choices) -> set[str]:
    return {code for peer, code in choices.values()}


def test_carp_equal_weights(make_squid):
    choices = run_case(make_squid, lambda origins: [
        f"cache_peer 127.0.0.1 parent {o.port} 0 carp no-query no-digest name={NAMES[i]}"
        for i, o in enumerate(origins)], 5, urls_for(300, 1))
    assert spread(choices) == set(range(5)) and codes(choices) == {CARP}


def test_carp_weights_and_signed_name_bytes(make_squid):
    weights = [1, 3, 2, 7, 1, 5]
    choices = run_case(make_squid, lambda origins: [
        f"cache_peer 127.0.0.1 parent {o.port} 0 carp weight={weights[i]} no-query no-digest "
        f"name={NAMES[i]}{'-é' if i == 2 else ''}"
        for i, o in enumerate(origins)], 6, urls_for(300, 2))
    assert len(spread(choices)) == 6 and codes(choices) == {CARP}


def test_carp_zero_load_factor(make_squid):
    """A weight under a thousandth of the total gets load factor 0: Squid's multipliers
    then turn NaN, CARP picks nobody, and the first parent that is up takes everything."""
    weights = [1, 1500, 1200, 2]
    choices = run_case(make_squid, lambda origins: [
        f"cache_peer 127.0.0.1 parent {o.port} 0 carp weight={weights[i]} no-query no-digest name={NAMES[i]}"
        for i, o in enumerate(origins)], 4, urls_for(200, 3))
    assert spread(choices) == {0} and codes(choices) == {FIRSTUP_PARENT}


def test_carp_keys(make_squid):
    keys = ["host", "host,path", "scheme,host,port,path,params", "path,params"]
    choices = run_case(make_squid, lambda origins: [
        f"cache_peer 127.0.0.1 parent {o.port} 0 carp carp-key={keys[i]} no-query no-digest name={NAMES[i]}"
        for i, o in enumerate(origins)], 4, urls_for(250, 4))
    assert len(spread(choices)) == 4 and codes(choices) == {CARP}


def test_carp_thirty_two_parents(make_squid):
    choices = run_case(make_squid, lambda origins: [
        f"cache_peer 127.0.0.1 parent {o.port} 0 carp weight={1 + i % 3} no-query no-digest name=parent{i:02d}.fleet"
        for i, o in enumerate(origins)], 32, urls_for(400, 5))
    assert len(spread(choices)) > 24 and codes(choices) == {CARP}


def test_round_robin(make_squid):
    urls = [f"http://rr.test/size/1/{i}" for i in range(12)]
    choices = run_case(make_squid, lambda origins: [
        f"cache_peer 127.0.0.1 parent {o.port} 0 round-robin weight={(1, 2, 1)[i]} no-query no-digest name=rr{i}"
        for i, o in enumerate(origins)], 3, urls)
    picks = [choices[u][0] for u in urls]
    assert picks.count(1) > picks.count(0) and picks.count(1) > picks.count(2)      # weight=2
    assert codes(choices) == {ROUNDROBIN_PARENT}


def test_weighted_round_robin_is_logged_as_roundrobin(make_squid):
    urls = [f"http://wrr.test/size/1/{i}" for i in range(9)]
    choices = run_case(make_squid, lambda origins: [
        f"cache_peer 127.0.0.1 parent {o.port} 0 weighted-round-robin no-query no-digest name=w{i}"
        for i, o in enumerate(origins)], 3, urls)
    assert spread(choices) == {0, 1, 2} and codes(choices) == {ROUNDROBIN_PARENT}


def test_sourcehash(make_squid):
    """sourcehash hashes the client's address: every URL from 127.0.0.1 goes to the one
    parent squidpy's arithmetic names."""
    choices = run_case(make_squid, lambda origins: [
        f"cache_peer 127.0.0.1 parent {o.port} 0 sourcehash no-query no-digest name={NAMES[i]}"
        for i, o in enumerate(origins)], 4, urls_for(20, 6))
    assert len(spread(choices)) == 1 and codes(choices) == {SOURCEHASH_PARENT}


def test_squid_child_and_parent(make_squid, origin):
    """The fixtures phase 2 builds on: a Squid child forwards through a Squid parent."""
    parent = make_squid(parent_config())
    child = make_squid(child_config([f"cache_peer 127.0.0.1 parent {parent.port} 0 no-query no-digest"]))
    url = origin.url("/size/7?chain=1")
    assert wait_until_forwarding(child.port, url)
    status, headers, body = get_through(child.port, url)
    assert (status, body) == (200, b"x" * 7)
    assert "squid-parent" in headers["via"] and "squid-child" in headers["via"]
    assert child.log_line("FIRSTUP_PARENT/127.0.0.1")
    assert parent.log_line(f"GET {url} - HIER_DIRECT/127.0.0.1")


def test_userhash(make_squid):
    """userhash hashes the user name Squid authenticated (a Basic login checked by Squid's
    own basic_ncsa_auth helper)."""
    import base64
    import hashlib

    origins = parents(4)
    try:
        users = [f"user{i:02d}" for i in range(40)] + ["Ünïcode-ish", "a.b@example.com"]
        squid_lines = [f"cache_peer 127.0.0.1 parent {o.port} 0 userhash no-query no-digest name={NAMES[i]}"
                       for i, o in enumerate(origins)]
        passwd = "".join(f"{u}:{hashlib.md5(b'pw').hexdigest()}\n" for u in users)
        squid = make_squid("\n".join([
            "visible_hostname squid-child", "auth_param basic program /usr/lib/squid/basic_ncsa_auth PASSWD",
            "acl users proxy_auth REQUIRED", "http_access allow users", "http_access deny all",
            "never_direct allow all", *squid_lines]), start=False)
        (squid.dir / "passwd").write_bytes(passwd.encode("latin-1"))
        squid.config_path.write_text(squid.config_path.read_text().replace("PASSWD", str(squid.dir / "passwd")))
        squid.start()
        ports = [o.port for o in origins]

        def login(user: str) -> dict:
            return {"Proxy-Authorization": "Basic " + base64.b64encode(f"{user}:pw".encode("latin-1")).decode()}

        def warm() -> bool:
            try:           # a refused connection while the machine is loaded is not an answer yet
                return get_through(squid.port, "http://warm.test/size/1", login("user00"))[0] == 200
            except OSError:
                return False
        assert wait_for(warm, timeout=20), squid.read_cache_log()
        config = loader.load(text="\n".join(squid_lines) + "\n")
        table = PeerTable(config.cache_peer)
        for i, user in enumerate(users):
            url = f"http://users.test/size/1/{i}"
            for o in origins:
                o.requests.clear()
            status, _, _ = get_through(squid.port, url, login(user))
            assert status == 200
            chosen = [j for j, o in enumerate(origins) if o.requests]
            expected = table.userhash.ranking_for_key(user)[0]
            assert chosen == [ports.index(expected.http_port)], user
        assert squid.log_line("USERHASH_PARENT/127.0.0.1")
    finally:
        for o in origins:
            o.stop()


def answers(port: int, url: str) -> bool:
    """Whether a request through the proxy got any answer (a refused connection while the
    machine is loaded is not one)."""
    try:
        return bool(get_through(port, url))
    except OSError:
        return False


def test_which_requests_use_the_parent(make_squid, origin):
    """Only hierarchical requests (GET and TRACE without Authorization, any scheme) go to a
    parent when going direct is allowed; squidpy's flag says the same as Squid's choice.
    The parent cases use names Squid cannot resolve: see test_squid_goes_direct_to_hosts_it_knows."""
    import http.client

    from squidpy.peers.selection import is_hierarchical

    parent = Origin().start()
    try:
        squid = make_squid(child_config([f"cache_peer 127.0.0.1 parent {parent.port} 0 no-query no-digest"],
                                        never_direct=False), hosts={"origin.test": "127.0.0.1"})
        warm = (f"http://warm{i}.test/size/1" for i in range(1000))
        # Squid counts the parent as down until its first probe connects to it
        assert wait_for(lambda: answers(squid.port, next(warm)) and parent.count() > 0, timeout=20)
        direct = f"http://origin.test:{origin.port}/size/1"
        cases = [("GET", "http://hier1.test/size/1?a", {}), ("GET", "https://hier2.test/size/1?b", {}),
                 ("HEAD", direct + "?c", {}), ("POST", direct + "?d", {"Content-Length": "0"}),
                 ("GET", direct + "?e", {"Authorization": "Basic dTpw"}), ("OPTIONS", direct + "?f", {}),
                 ("PUT", direct + "?g", {"Content-Length": "0"})]
        for method, url, headers in cases:
            conn = http.client.HTTPConnection("127.0.0.1", squid.port, timeout=10)
            conn.request(method, url, headers={"Host": url.split("/")[2], **headers})
            conn.getresponse().read()
            conn.close()
            line = squid.log_line(f" {method} {url} ")
            assert line, (method, url, squid.access_log.read_text())
            theirs = line.split()[8].split("/")[0]
            scheme = url.split(":")[0]
            ours = FIRSTUP_PARENT if is_hierarchical(method, scheme, [(k.encode(), b"") for k in headers]) \
                else "HIER_DIRECT"
            assert theirs == ours, (method, url, squid.access_log.read_text())
    finally:
        parent.stop()


def test_squid_goes_direct_to_hosts_it_knows(make_squid, origin):
    """A difference squidpy keeps: Debian's Squid 5.7 is built with ICMP, and once it has
    forwarded a request for a host whose name resolves, its network gets a netdb entry whose
    round trip (1 ms until measured) is under minimum_direct_rtt, so later requests for it go
    direct whenever going direct is allowed.  squidpy measures nothing and keeps to the
    parents' order: use never_direct for a Squid/squidpy array to agree (docs/fleet.md)."""
    parent = Origin().start()
    try:
        squid = make_squid(child_config([f"cache_peer 127.0.0.1 parent {parent.port} 0 no-query no-digest"],
                                        never_direct=False), hosts={"origin.test": "127.0.0.1"})
        warm = (f"http://warm{i}.test/size/1" for i in range(1000))
        assert wait_for(lambda: answers(squid.port, next(warm)) and parent.count() > 0, timeout=20)
        url = f"http://origin.test:{origin.port}/size/1"
        get_through(squid.port, url + "?first")
        assert squid.log_line(f" GET {url}?first - FIRSTUP_PARENT/127.0.0.1")
        assert wait_for(lambda: answers(squid.port, url + "?again") and squid.log_line(
            f" GET {url}?again - HIER_DIRECT/127.0.0.1"), timeout=5)
    finally:
        parent.stop()
