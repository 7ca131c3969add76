"""End to end: the HTTP cache through the real proxy, each rule named by its RFC section.

The origin counts the requests it receives, so a test can tell a hit (the
origin saw nothing) from a miss.  Objects are /obj/NAME?... (tests/origin.py),
whose body says how many times the origin served that URL.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse
import uuid

import pytest

from squidpy.cache.refresh import DEFAULT_PATTERNS
from tests.conftest import LOCAL_POLICY, assert_no_tracebacks, read_response
from tests.origin import Origin

CACHE_POLICY = LOCAL_POLICY + "acl PURGE method PURGE\nhttp_access allow localhost PURGE\n"
# the refresh_pattern lines of Squid's (and squidpy's) default configuration file
SQUIDS_PATTERNS = "".join(f"refresh_pattern {p}\n" for p in DEFAULT_PATTERNS)


@pytest.fixture(scope="module")
def cproxy(tmp_path_factory):
    from tests.proxyproc import ProxyProcess
    text = "acl PURGE method PURGE\nacl local src 127.0.0.0/8\nhttp_access allow local PURGE\n" \
           "http_access deny PURGE\nhttp_access allow local\nhttp_access deny all\n" + SQUIDS_PATTERNS
    p = ProxyProcess(tmp_path_factory.mktemp("cache"), text)
    yield p
    p.stop()
    assert_no_tracebacks(p)


# One proxy for the tests of settings that leave the other tests' objects alone: Squid's
# heuristic for replies without explicit freshness but no stale reply served when the origin
# errs (max-stale=0), a maximum object size, a cache deny rule for /obj/nc-*, and PURGE denied.
TUNED = (LOCAL_POLICY.replace("http_access allow local", "acl PURGE method PURGE\nhttp_access deny PURGE\n"
                              "http_access allow local")
         + "refresh_pattern . 0 20% 4320 max-stale=0\nmaximum_object_size 10 KB\n"
         + "acl nocache urlpath_regex /obj/nc-\ncache deny nocache\n")


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    from tests.proxyproc import ProxyProcess
    p = ProxyProcess(tmp_path_factory.mktemp("tuned"), TUNED)
    yield p
    p.stop()
    assert_no_tracebacks(p)


def url(origin, query: str = "cc=max-age%3D60", name: str | None = None) -> str:
    return origin.url(f"/obj/{name or uuid.uuid4().hex[:10]}?{query}")


def get(proxy, target: str, headers: str = "", method: str = "GET"):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=15) as s:
        s.sendall(f"{method} {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        status, h, body = read_response(s.makefile("rb"), method)
    return status, h, body


def result(proxy, target: str, nth: int | None = None) -> str:
    """The result/status of the last (or the nth) logged request for ``target``."""
    from tests.proxyproc import wait_for

    def lines():
        try:
            found = [l for l in proxy.access_log.read_text().splitlines() if f" {target} " in l]
        except FileNotFoundError:
            return None
        return found if nth is None or len(found) >= nth else None
    found = wait_for(lines, 5) or []
    if not found:
        return ""
    return (found[nth - 1] if nth else found[-1]).split()[3]


def path_of(target: str) -> str:
    return target.split(":", 2)[2].split("/", 1)[1] and "/" + target.split("/", 3)[3]


def count(origin, target: str) -> int:
    return origin.count(path_of(target))


# ------------------------------------------------------------ storing and reusing

def test_fresh_object_is_a_hit_with_age_4(cproxy, origin):
    u = url(origin, "cc=max-age%3D60&aged=30")            # dated 30 s ago: its Age is at least 30
    s1, h1, b1 = get(cproxy, u)
    s2, h2, b2 = get(cproxy, u)
    assert (s1, s2) == (200, 200) and b1 == b2
    assert count(origin, u) == 1
    assert h2["x-cache"].startswith("HIT from") and 30 <= int(h2["age"]) < 60
    assert result(cproxy, u, 2) == "TCP_MEM_HIT/200"


@pytest.mark.parametrize("query,reason", [
    ("cc=no-store", "5.2.2.5 no-store"),
    ("cc=private%2C+max-age%3D60", "5.2.2.7 private"),
    ("cc=max-age%3D60&status=206", "3.3: a partial reply is not a complete one"),
    ("status=302", "4.2.2: 302 is not heuristically cacheable, and nothing else makes it fresh"),
])
def test_not_stored(cproxy, origin, query, reason):
    u = url(origin, query)
    get(cproxy, u)
    get(cproxy, u)
    assert count(origin, u) == 2, reason
    assert result(cproxy, u, 2).startswith("TCP_MISS/"), reason


def test_a_final_non_200_with_explicit_freshness_is_stored_3(cproxy, origin):
    """Any final status may be stored when the reply says for how long (RFC 9111 3)."""
    u = url(origin, "cc=max-age%3D60&status=302")
    assert get(cproxy, u)[0] == 302
    assert get(cproxy, u)[0] == 302
    assert count(origin, u) == 1
    assert result(cproxy, u, 2) == "TCP_MEM_HIT/302"


def test_request_no_store_is_not_stored_5_2_1_5(cproxy, origin):
    u = url(origin)
    get(cproxy, u, "Cache-Control: no-store\r\n")
    get(cproxy, u)
    assert count(origin, u) == 2


def test_authorization_3_5(cproxy, origin):
    u = url(origin, "cc=max-age%3D60")
    get(cproxy, u, "Authorization: Basic dTpw\r\n")
    get(cproxy, u, "Authorization: Basic dTpw\r\n")
    assert count(origin, u) == 2                        # not shareable without public/s-maxage/must-revalidate
    u = url(origin, "cc=public%2C+max-age%3D60")
    get(cproxy, u, "Authorization: Basic dTpw\r\n")
    get(cproxy, u, "Authorization: Basic dTpw\r\n")
    assert count(origin, u) == 1


def test_expires_4_2_1_and_invalid_expires_5_3(cproxy, origin):
    u = url(origin, "expires=60")
    get(cproxy, u)
    get(cproxy, u)
    assert count(origin, u) == 1
    u = url(origin, "expires=bad")
    get(cproxy, u)
    get(cproxy, u)
    assert count(origin, u) == 2


def test_s_maxage_over_max_age_4_2_1(cproxy, origin):
    u = url(origin, "cc=max-age%3D60%2C+s-maxage%3D0")
    get(cproxy, u)
    get(cproxy, u)
    assert count(origin, u) == 2


def test_heuristic_freshness_from_last_modified_4_2_2(tuned, shared_proxy, cproxy, origin):
    # the default configuration file's patterns (Squid's) give URLs with a query no
    # heuristic freshness at all
    u = url(origin, "lm=100000")
    get(cproxy, u)
    get(cproxy, u)
    assert count(origin, u) == 2
    # without any refresh_pattern line, Squid's built-in rule (0 20% 4320) applies to every URL
    bare = shared_proxy(LOCAL_POLICY)
    u = url(origin, "lm=100000")
    get(bare, u)
    get(bare, u)
    assert count(origin, u) == 1
    proxy = tuned                           # refresh_pattern . 0 20% 4320
    u = url(origin, "lm=100000")            # 20% of a day: fresh for hours
    get(proxy, u)
    get(proxy, u)
    assert count(origin, u) == 1
    u = url(origin, "lm=100000&status=302")  # 302 is not heuristically cacheable
    get(proxy, u)
    get(proxy, u)
    assert count(origin, u) == 2


def test_head_is_answered_from_a_stored_get_3(cproxy, origin):
    u = url(origin)
    _, _, body = get(cproxy, u)
    status, headers, head_body = get(cproxy, u, method="HEAD")
    assert status == 200 and head_body == b"" and int(headers["content-length"]) == len(body)
    assert count(origin, u) == 1


# ------------------------------------------------------------ request directives (5.2.1)

def test_request_no_cache_reloads_from_the_origin_5_2_1_4(cproxy, origin):
    """As Squid 5.7: a reload is a plain miss (no validators of ours), logged TCP_MISS with the
    origin's address, and its reply replaces the stored one."""
    u = url(origin, "cc=max-age%3D60&etag=%22v1%22")
    get(cproxy, u)
    status, _, body = get(cproxy, u, "Cache-Control: no-cache\r\n")
    assert status == 200 and body.endswith(b"served 2\n") and count(origin, u) == 2
    req = [r for r in origin.requests if r[1] == path_of(u)][-1]
    assert "If-None-Match" not in dict(req[2])
    assert result(cproxy, u, 2) == "TCP_MISS/200"
    assert cproxy.log_line(f" {u} ").split()[8] == "HIER_DIRECT/127.0.0.1"
    _, _, again = get(cproxy, u)
    assert again.endswith(b"served 2\n") and count(origin, u) == 2


def test_pragma_no_cache_5_4(cproxy, origin):
    u = url(origin)
    get(cproxy, u)
    get(cproxy, u, "Pragma: no-cache\r\n")
    assert count(origin, u) == 2


def test_request_max_age_5_2_1_1(cproxy, origin):
    u = url(origin, "cc=max-age%3D60&aged=10")            # fresh, 10 s old
    get(cproxy, u)
    get(cproxy, u, "Cache-Control: max-age=30\r\n")
    assert count(origin, u) == 1                          # young enough for this client
    get(cproxy, u, "Cache-Control: max-age=5\r\n")
    assert count(origin, u) == 2                          # too old for this one


def test_min_fresh_5_2_1_3(cproxy, origin):
    u = url(origin, "cc=max-age%3D30")
    get(cproxy, u)
    get(cproxy, u, "Cache-Control: min-fresh=60\r\n")
    assert count(origin, u) == 2


def test_max_stale_5_2_1_2(cproxy, origin):
    u = url(origin, "cc=max-age%3D60&aged=100")           # stored 40 s stale
    _, _, first = get(cproxy, u)
    status, _, body = get(cproxy, u, "Cache-Control: max-stale=60\r\n")
    assert (status, body) == (200, first) and count(origin, u) == 1
    get(cproxy, u, "Cache-Control: max-stale=10\r\n")
    assert count(origin, u) == 2                          # staler than this client allows


def test_only_if_cached_5_2_1_7(cproxy, origin):
    u = url(origin)
    status, headers, _ = get(cproxy, u, "Cache-Control: only-if-cached\r\n")
    assert status == 504 and headers["x-squid-error"] == "ERR_ONLY_IF_CACHED_MISS 0"
    assert count(origin, u) == 0
    get(cproxy, u)
    status, _, _ = get(cproxy, u, "Cache-Control: only-if-cached\r\n")
    assert status == 200 and count(origin, u) == 1


# ------------------------------------------------------------ validation (4.3)

def test_stale_entry_revalidated_304_keeps_body_and_updates_fields_4_3_4(cproxy, origin):
    u = url(origin, "cc=max-age%3D60&etag=%22v1%22&h=X-Gen:1&aged=100")      # stored stale
    _, _, first = get(cproxy, u)
    status, headers, body = get(cproxy, u)
    assert status == 200 and body == first                # the stored body, not "served 2"
    assert count(origin, u) == 2
    status, _, again = get(cproxy, u)
    assert again == first and count(origin, u) == 2       # fresh again after the 304
    assert result(cproxy, u, 2) == "TCP_REFRESH_UNMODIFIED/200"


def test_304_fields_replace_the_stored_ones_3_2(cproxy, origin):
    q = urllib.parse.urlencode([("cc", "max-age=60"), ("aged", "100"), ("etag", '"v1"'), ("h", "X-T:A"),
                                ("h", "Set-Cookie:a=b"), ("h304", "X-T:B"), ("h304", "Set-Cookie:a=c"),
                                ("h304", "Content-Type:text/plain;charset=utf-8")])
    u = url(origin, q)
    _, headers, first = get(cproxy, u)
    assert headers["x-t"] == "A" and headers["content-type"] == "text/plain"
    assert headers["set-cookie"] == "a=b"                 # a miss: the origin's reply, cookie and all
    for nth in (2, 3):          # the revalidated reply, then the stored one
        status, headers, body = get(cproxy, u)
        assert status == 200 and body == first
        assert headers["x-t"] == "B" and "set-cookie" not in headers    # served from the cache: no cookie (as Squid)
        assert headers["content-type"] == "text/plain;charset=utf-8"
    assert count(origin, u) == 2


def test_fields_named_by_a_qualified_no_cache_are_not_stored_5_2_2_4(cproxy, origin):
    u = url(origin, urllib.parse.urlencode([("cc", 'max-age=60, no-cache="X-A"'), ("h", "X-A:1"), ("h", "X-B:2")]))
    _, headers, _ = get(cproxy, u)
    assert headers["x-a"] == "1"                  # the client that fetched it sees everything
    _, headers, _ = get(cproxy, u)
    assert count(origin, u) == 1                  # reused without revalidation...
    assert "x-a" not in headers and headers["x-b"] == "2"      # ...but without the named field


def test_truncated_reply_is_never_stored(cproxy, origin):
    target = origin.url("/truncate")
    before = origin.count("/truncate")
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", cproxy.port), timeout=10) as s:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert data.endswith(b"\r\n\r\n" + b"t" * 10)
    assert origin.count("/truncate") == before + 2
    assert result(cproxy, target, 2) == "TCP_MISS_ABORTED/200"


def test_a_200_to_a_head_freshens_the_stored_get_4_3_5(cproxy, origin):
    u = url(origin, "cc=max-age%3D60&etag=%22v1%22&cond=200&aged=100")      # the origin ignores conditionals
    _, _, first = get(cproxy, u)
    status, headers, body = get(cproxy, u, method="HEAD")
    assert status == 200 and body == b"" and headers["etag"] == '"v1"'
    assert result(cproxy, u, 2) == "TCP_REFRESH_UNMODIFIED/200"
    assert get(cproxy, u)[2] == first and count(origin, u) == 2       # fresh again: a hit


def test_revalidation_with_last_modified_4_3_1(cproxy, origin):
    u = url(origin, "cc=max-age%3D60&lm=500&aged=100")
    get(cproxy, u)
    get(cproxy, u)
    req = [r for r in origin.requests if r[1] == path_of(u)][-1]
    assert "If-Modified-Since" in dict(req[2])
    assert result(cproxy, u, 2) == "TCP_REFRESH_UNMODIFIED/200"


def test_changed_object_replaces_the_stored_one(cproxy, origin):
    u = url(origin, "cc=max-age%3D60&aged=100")           # stored stale, no validators: a plain refetch
    _, _, first = get(cproxy, u)
    _, _, second = get(cproxy, u)
    assert first != second and b"served 2" in second
    _, _, third = get(cproxy, u)
    assert third == second and count(origin, u) == 2


def test_client_conditionals_answered_from_cache(cproxy, origin):
    u = url(origin, "cc=max-age%3D60&etag=%22v9%22&lm=1000")
    get(cproxy, u)
    status, headers, body = get(cproxy, u, 'If-None-Match: "v9"\r\n')
    assert status == 304 and body == b"" and headers["etag"] == '"v9"'
    assert result(cproxy, u, 2) == "TCP_INM_HIT/304"
    from email.utils import formatdate
    status, _, _ = get(cproxy, u, f"If-Modified-Since: {formatdate(time.time(), usegmt=True)}\r\n")
    assert status == 304 and result(cproxy, u, 3) == "TCP_IMS_HIT/304"
    status, _, _ = get(cproxy, u, 'If-None-Match: "other"\r\n')
    assert status == 200
    assert count(origin, u) == 1


# ------------------------------------------------------------ stale and errors

def _private_origin():
    o = Origin().start()
    return o


def test_must_revalidate_never_serves_stale_504_5_2_2_2(cproxy):
    o = _private_origin()
    u = o.url("/obj/mr?cc=max-age%3D60%2C+must-revalidate&h=Connection:close&aged=100")
    get(cproxy, u)
    o.stop()
    status, _, _ = get(cproxy, u, "Cache-Control: max-stale=100\r\n")
    assert status == 504


def test_stale_if_error_on_connect_failure_rfc5861_4(cproxy):
    o = _private_origin()
    u = o.url("/obj/sie?cc=max-age%3D60%2C+stale-if-error%3D600&h=Connection:close&aged=100")
    _, _, first = get(cproxy, u)
    o.stop()
    status, _, body = get(cproxy, u)
    assert status == 200 and body == first
    assert result(cproxy, u, 2) == "TCP_REFRESH_FAIL_OLD/200"


def test_stale_served_after_a_5xx_names_the_origin_it_asked(cproxy, origin):
    u = url(origin, "cc=max-age%3D60%2C+stale-if-error%3D600&etag=%22e%22&cond=500&aged=100")
    _, _, first = get(cproxy, u)
    status, _, body = get(cproxy, u)
    assert status == 200 and body == first
    assert result(cproxy, u, 2) == "TCP_REFRESH_FAIL_OLD/200"
    assert cproxy.log_line(f" {u} ").split()[8] == "HIER_DIRECT/127.0.0.1"


def test_stale_5xx_keeps_the_stale_reply_within_max_stale(tuned, cproxy, origin):
    """Squid's handleIMSReply: an error while revalidating serves the stale reply unless it
    is stale beyond max_stale (or refresh_pattern's max-stale=N, 0 in Squid's built-in rule)."""
    u = url(origin, "cc=max-age%3D60&etag=%22e%22&cond=503&aged=100")       # stored 40 s stale
    _, _, first = get(cproxy, u)
    strict = tuned                          # refresh_pattern . 0 20% 4320 max-stale=0
    strict_u = url(origin, "cc=max-age%3D60&etag=%22e%22&cond=503&aged=100")
    get(strict, strict_u)
    status, _, body = get(cproxy, u)
    assert (status, body) == (200, first)
    assert result(cproxy, u, 2) == "TCP_REFRESH_FAIL_OLD/200"
    status, _, body = get(strict, strict_u)
    assert status == 503 and body != first
    assert result(strict, strict_u, 2) == "TCP_REFRESH_FAIL_ERR/503"


@pytest.mark.parametrize("cc, request_cc, served", [
    ("max-age%3D60", "", True),                         # disconnected: Squid's TCP_REFRESH_FAIL_OLD
    ("max-age%3D60%2C+must-revalidate", "", False),     # 5.2.2.2
    ("max-age%3D60%2C+no-cache", "", False),            # 5.2.2.4
    ("max-age%3D60", "Cache-Control: max-age=0\r\n", True),   # Squid revalidates, then serves it stale
])
def test_stale_when_the_origin_is_unreachable_4_2_4(cproxy, cc, request_cc, served):
    o = _private_origin()
    u = o.url(f"/obj/down{uuid.uuid4().hex[:6]}?cc={cc}&etag=%22e%22&h=Connection:close&aged=100")
    _, _, first = get(cproxy, u)
    o.stop()
    status, _, body = get(cproxy, u, request_cc)
    if served:
        assert (status, body) == (200, first)
        assert result(cproxy, u, 2) == "TCP_REFRESH_FAIL_OLD/200"
    else:
        assert status in (502, 503, 504) and body != first


def test_stale_while_revalidate_rfc5861_3(cproxy, origin):
    """Stored 40 s stale (within stale-while-revalidate): served stale at once, refreshed in
    the background; the refreshed copy is fresh for a minute, so the next request is a hit
    however long the machine takes to get there."""
    from tests.proxyproc import wait_for
    u = url(origin, "cc=max-age%3D60%2C+stale-while-revalidate%3D600&aged=100")
    _, _, first = get(cproxy, u)
    status, _, body = get(cproxy, u)
    assert status == 200 and body == first                 # answered stale, at once
    assert wait_for(lambda: count(origin, u) >= 2, 10)     # refreshed in the background
    # until the refreshed copy is stored a request may get the stale one (and refresh again)
    fresh = wait_for(lambda: (lambda b: b if b != first else None)(get(cproxy, u)[2]), 10)
    assert fresh and b"served 1" not in fresh
    asked = count(origin, u)
    assert get(cproxy, u)[2] == fresh and count(origin, u) == asked     # fresh now: a hit


# ------------------------------------------------------------ Vary (4.1)

def test_vary_keeps_one_variant_per_request_value_4_1(cproxy, origin):
    u = url(origin, "cc=max-age%3D60&vary=Accept-Language")
    _, _, en = get(cproxy, u, "Accept-Language: en\r\n")
    _, _, fr = get(cproxy, u, "Accept-Language: fr\r\n")
    assert en != fr and count(origin, u) == 2
    assert get(cproxy, u, "Accept-Language:   EN\r\n")[2] == en     # normalised
    assert get(cproxy, u, "Accept-Language: fr\r\n")[2] == fr
    assert count(origin, u) == 2


def test_vary_star_is_never_reused_4_1(cproxy, origin):
    u = url(origin, "cc=max-age%3D60&vary=*")
    get(cproxy, u)
    get(cproxy, u)
    assert count(origin, u) == 2


# ------------------------------------------------------------ invalidation (4.4)

def test_unsafe_method_invalidates_4_4(cproxy, origin):
    """A successful POST invalidates its target URI and the same-origin URI its Location names."""
    name = uuid.uuid4().hex[:8]
    other_path = f"/obj/{name}-other?cc=max-age%3D60"
    other = origin.url(other_path)
    u = url(origin, "cc=max-age%3D60&loc=" + urllib.parse.quote(other_path, safe=""), name=name)
    bystander = url(origin)
    for target in (u, other, bystander):
        get(cproxy, target)
    with socket.create_connection(("127.0.0.1", cproxy.port), timeout=10) as s:
        s.sendall(f"POST {u} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
        status, headers, _ = read_response(s.makefile("rb"))
        assert status == 200 and headers["location"] == other_path
    for target in (u, other, bystander):
        get(cproxy, target)
    assert count(origin, u) == 3                           # GET, POST, GET again
    assert count(origin, other) == 2                       # named by Location: fetched again
    assert count(origin, bystander) == 1                   # anything else stays


# ------------------------------------------------------------ ranges (RFC 9110 14)

def test_ranges_from_a_complete_entry(cproxy, origin):
    u = url(origin, "cc=max-age%3D60&size=1000")
    _, _, full = get(cproxy, u)
    status, headers, body = get(cproxy, u, "Range: bytes=10-19\r\n")
    assert status == 206 and body == full[10:20] and headers["content-range"] == "bytes 10-19/1000"
    status, headers, body = get(cproxy, u, "Range: bytes=0-1,-2\r\n")
    assert status == 206 and headers["content-type"].startswith("multipart/byteranges")
    assert full[:2] in body and full[-2:] in body
    status, headers, _ = get(cproxy, u, "Range: bytes=5000-\r\n")
    assert status == 416 and headers["content-range"] == "bytes */1000"
    assert count(origin, u) == 1


def test_range_on_a_miss_is_forwarded_and_a_full_reply_is_stored(cproxy, origin):
    """As Squid: the Range goes to the origin; this one ignores it and sends the whole
    object, which the client gets as sent and the cache keeps for later ranges."""
    u = url(origin, "cc=max-age%3D60&size=1000")
    status, _, body = get(cproxy, u, "Range: bytes=0-9\r\n")
    assert status == 200 and len(body) == 1000
    req = [r for r in origin.requests if r[1] == path_of(u)][-1]
    assert dict(req[2]).get("Range") == "bytes=0-9"
    status, _, part = get(cproxy, u, "Range: bytes=0-9\r\n")
    assert (status, part) == (206, body[:10]) and count(origin, u) == 1


# ------------------------------------------------------------ collapsed forwarding

def test_concurrent_misses_collapse_into_one_fetch(cproxy, origin):
    u = url(origin, "cc=max-age%3D60&delay=0.5")
    bodies = []

    def one():
        bodies.append(get(cproxy, u)[2])

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert len(bodies) == 8 and len(set(bodies)) == 1
    assert count(origin, u) == 1


# ------------------------------------------------------------ PURGE and sizes

def test_purge(cproxy, origin):
    u = url(origin)
    get(cproxy, u)
    assert get(cproxy, u, method="PURGE")[0] == 200
    assert get(cproxy, u, method="PURGE")[0] == 404
    get(cproxy, u)
    assert count(origin, u) == 2


def test_purge_needs_the_acl(tuned, origin):
    u = url(origin)
    get(tuned, u)
    assert get(tuned, u, method="PURGE")[0] == 403
    get(tuned, u)
    assert count(origin, u) == 1                            # still stored


def test_objects_over_maximum_object_size_pass_unstored(tuned, origin):
    proxy = tuned                           # maximum_object_size 10 KB
    big = url(origin, "cc=max-age%3D60&size=20000")
    small = url(origin, "cc=max-age%3D60&size=2000")
    for u in (big, big, small, small):
        assert get(proxy, u)[0] == 200
    assert count(origin, big) == 2 and count(origin, small) == 1


def test_cache_deny_acl(tuned, origin):
    u = url(origin, name="nc-" + uuid.uuid4().hex[:6])      # cache deny nocache
    get(tuned, u)
    get(tuned, u)
    assert count(origin, u) == 2
    u = url(origin)
    get(tuned, u)
    get(tuned, u)
    assert count(origin, u) == 1


def test_offline_mode_serves_stale(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "offline_mode on\n")
    u = url(origin, "cc=max-age%3D60&aged=100")           # stored stale
    get(proxy, u)
    get(proxy, u)
    assert count(origin, u) == 1
    assert result(proxy, u, 2) == "TCP_OFFLINE_HIT/200"


# ------------------------------------------------------------ quick_abort
def _leave_early(proxy, target: str) -> None:
    """A client with a tiny receive buffer reads the reply's start and goes away."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(15)
    s.connect(("127.0.0.1", proxy.port))
    try:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = b""
        while len(got) < 20_000:
            piece = s.recv(4096)
            if not piece:
                break
            got += piece
        assert got.startswith(b"HTTP/1.1 200 ")
    finally:
        s.close()


@pytest.mark.parametrize("settings, kept", [
    ("quick_abort_min -1 KB\n", True),                      # always finish what is being stored
    ("", False),                                            # Squid's defaults: far from the end, abort
])
def test_quick_abort_finishes_a_fetch_its_client_left(make_proxy, origin, settings, kept):
    proxy = make_proxy(LOCAL_POLICY + "cache_mem 64 MB\nmaximum_object_size_in_memory 8 MB\n"
                       "maximum_object_size 8 MB\n" + settings)
    u = url(origin, "cc=max-age%3D600&size=6000000")
    _leave_early(proxy, u)
    from tests.proxyproc import wait_for
    assert wait_for(lambda: result(proxy, u, 1), 10) == "TCP_MISS_ABORTED/200"
    if kept:
        # the rest arrives and is stored with nobody to send it to; the next client gets a hit
        polls = [0]

        def stored() -> bool:       # each poll is a logged request too (TCP_MISS/504 until stored)
            polls[0] += 1
            return get(proxy, u, "Cache-Control: only-if-cached\r\n")[0] == 200
        wait_for(stored, 30)
        status, _, body = get(proxy, u)
        assert status == 200 and len(body) == 6_000_000
        assert result(proxy, u, 2 + polls[0]) == "TCP_MEM_HIT/200" and count(origin, u) == 1
    else:
        status, _, body = get(proxy, u)
        assert status == 200 and len(body) == 6_000_000
        assert result(proxy, u, 2) == "TCP_MISS/200" and count(origin, u) == 2
