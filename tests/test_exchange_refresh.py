"""Exchange transcripts for refresh_pattern's options and the global refresh directives:
events in, commands out, an injected clock (the stored reply's age is set, never waited)."""

from __future__ import annotations

from email.utils import formatdate

from squidpy.cache.policy import DEFAULT_RULE
from squidpy.cache.refresh import RefreshSettings, parse_refresh_pattern
from squidpy.exchange import commands as c
from squidpy.exchange import events as ev
from tests.exchange_kit import NOW, FakeCache, FakeShared, kinds, make, response_head, sent, stored, upstream

URL = "http://o.test/a"
GET = b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\n\r\n"
RELOAD = b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\nCache-Control: no-cache\r\n\r\n"
PRAGMA = b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\nPragma: no-cache\r\n\r\n"
MAX_AGE_0 = b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\nCache-Control: max-age=0\r\n\r\n"
LM = "Sat, 01 Jan 2000 00:00:00 GMT"
IMS = b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\nIf-Modified-Since: " + LM.encode() + b"\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 2\r\n\r\n"
NOT_MODIFIED = b"HTTP/1.1 304 Not Modified\r\n\r\n"


def shared_with(line: str = ". 0 20% 4320", **settings) -> FakeShared:
    rule = parse_refresh_pattern(line.split()).rule
    hack = rule.ignore_reload or rule.reload_into_ims or settings.get("reload_into_ims", False)
    return FakeShared(cache=FakeCache(rule=rule, settings=RefreshSettings(nocache_hack=hack, **settings)))


def entry(cc: str = "max-age=600", age: float = 10, extra=()):
    headers = [(b"Cache-Control", cc.encode()), (b"Last-Modified", LM.encode()), (b"ETag", b'"v1"'),
               (b"Content-Length", b"5"), *extra]
    return stored(URL, headers, b"hello", age=age)


def looked_up(raw: bytes, shared: FakeShared, reply, body=b"hello"):
    """Start the request and answer its lookup with ``reply``; the commands that follow."""
    x = make(raw, shared)
    out = x.handle(ev.RequestStarted)
    if out != [c.LookUpCache(URL, x.head.headers)]:
        return x, out
    return x, x.handle(ev.CacheFound(reply, body, ()))


def origin_answers(x, reply: bytes, body: bytes = b""):
    out = x.handle(ev.Connected("192.0.2.1", 80))
    request = upstream(out)
    events = [ev.ResponseStarted(response_head(reply))] + ([ev.ResponseBody(body)] if body else [])
    out = x.handle_all(events + [ev.ResponseEnd(True)])
    return request, out


def logged(out):
    return next(cmd.entry for cmd in out if isinstance(cmd, c.Log))


# ------------------------------------------------------------ override-expire, override-lastmod

def test_override_expire_serves_an_expired_reply_younger_than_min():
    shared = shared_with(". 10 20% 4320 override-expire")          # MIN 600 s
    _, out = looked_up(GET, shared, entry("max-age=60", age=300))
    assert kinds(out) == ["SendToClient", "Log", "Finished"] and logged(out).result == "TCP_MEM_HIT"
    _, out = looked_up(GET, shared, entry("max-age=60", age=700))
    assert out == [c.Connect("http", "o.test", 80)]                 # older than MIN: revalidated
    _, out = looked_up(GET, shared_with(), entry("max-age=60", age=300))
    assert out == [c.Connect("http", "o.test", 80)]                 # without the option


def test_override_lastmod_serves_past_the_lm_factor_while_younger_than_min():
    def recent():
        """Received 300 s ago, generated then, modified 1000 s before: an LM-factor of 200 s."""
        return stored(URL, [(b"Date", formatdate(NOW - 300, usegmt=True).encode()),
                            (b"Last-Modified", formatdate(NOW - 1300, usegmt=True).encode()),
                            (b"Content-Length", b"5")], b"hello", age=300)
    _, out = looked_up(GET, shared_with(". 10 20% 4320 override-lastmod"), recent())
    assert logged(out).result == "TCP_MEM_HIT"
    _, out = looked_up(GET, shared_with(". 10 20% 4320"), recent())
    assert out == [c.Connect("http", "o.test", 80)]


# ------------------------------------------------------------ client reloads

def test_reload_without_options_is_a_plain_miss_with_no_lookup():
    x = make(RELOAD, shared_with())
    assert x.handle(ev.RequestStarted) == [c.Connect("http", "o.test", 80)]


def test_ignore_reload_serves_the_fresh_reply_for_no_cache_pragma_and_max_age_0():
    for raw in (RELOAD, PRAGMA, MAX_AGE_0):
        _, out = looked_up(raw, shared_with(". 0 20% 4320 ignore-reload"), entry())
        assert logged(out).result == "TCP_MEM_HIT", raw


def test_reload_into_ims_revalidates_with_our_validators():
    x, out = looked_up(RELOAD, shared_with(". 0 20% 4320 reload-into-ims"), entry())
    assert out == [c.Connect("http", "o.test", 80)]
    request, out = origin_answers(x, NOT_MODIFIED)
    assert b'If-None-Match: "v1"\r\n' in request and b"If-Modified-Since: " + LM.encode() in request
    assert logged(out).result == "TCP_REFRESH_UNMODIFIED" and sent(out).endswith(b"hello")


def test_global_reload_into_ims():
    x, out = looked_up(PRAGMA, shared_with(reload_into_ims=True), entry())
    request, out = origin_answers(x, OK, b"ok")
    assert b"If-None-Match" in request and logged(out).result == "TCP_REFRESH_MODIFIED"


def test_reload_of_another_pattern_is_a_client_refresh_miss():
    """Once some pattern has ignore-reload, reloads are looked up; for a URL whose
    own pattern has neither option the reply is fetched anew: TCP_CLIENT_REFRESH_MISS."""
    shared = shared_with()
    shared.cache.refresh_settings = RefreshSettings(nocache_hack=True)
    x, out = looked_up(RELOAD, shared, entry())
    assert out == [c.Connect("http", "o.test", 80)]
    request, out = origin_answers(x, OK, b"ok")
    assert b"If-None-Match" not in request and b"If-Modified-Since" not in request
    assert logged(out).result == "TCP_CLIENT_REFRESH_MISS" and "StoreEnd" in kinds(out)


# ------------------------------------------------------------ refresh-ims, refresh_all_ims

def test_refresh_ims_sends_a_fresh_entry_s_ims_request_to_the_origin():
    x, out = looked_up(IMS, shared_with(". 0 20% 4320 refresh-ims"), entry())
    assert out == [c.Connect("http", "o.test", 80)]
    request, out = origin_answers(x, NOT_MODIFIED)
    assert b'If-None-Match: "v1"' in request
    assert logged(out).result == "TCP_REFRESH_UNMODIFIED" and sent(out).startswith(b"HTTP/1.1 304 ")
    _, out = looked_up(IMS, shared_with(), entry())
    assert logged(out).result == "TCP_IMS_HIT"                      # without it: answered here


def test_refresh_all_ims():
    _, out = looked_up(IMS, shared_with(refresh_all_ims=True), entry())
    assert out == [c.Connect("http", "o.test", 80)]


# ------------------------------------------------------------ failures: max_stale, max-stale=N

def failing(shared, reply):
    x, out = looked_up(GET, shared, reply)
    assert out == [c.Connect("http", "o.test", 80)]
    return x.handle(ev.ConnectFailed("ERR_CONNECT_FAIL", "(111) Connection refused", 503, "192.0.2.1"))


def test_stale_reply_is_served_when_the_origin_is_down_within_max_stale():
    out = failing(shared_with(), entry("max-age=60", age=3600))
    assert logged(out).result == "TCP_REFRESH_FAIL_OLD" and sent(out).endswith(b"hello")
    out = failing(shared_with(max_stale=600), entry("max-age=60", age=3600))
    assert logged(out).result == "TCP_REFRESH_FAIL_ERR" and sent(out).startswith(b"HTTP/1.1 503 ")
    out = failing(shared_with(". 0 20% 4320 max-stale=600"), entry("max-age=60", age=3600))
    assert logged(out).result == "TCP_REFRESH_FAIL_ERR"


def test_squids_builtin_rule_never_serves_stale():
    shared = FakeShared(cache=FakeCache(rule=DEFAULT_RULE))
    out = failing(shared, entry("max-age=60", age=120))
    assert logged(out).result == "TCP_REFRESH_FAIL_ERR"


def test_5xx_while_revalidating_keeps_the_stale_reply_unless_max_stale_is_past():
    x, _ = looked_up(GET, shared_with(), entry("max-age=60", age=120))
    _, out = origin_answers(x, b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
    assert logged(out).result == "TCP_REFRESH_FAIL_OLD" and sent(out).endswith(b"hello")
    x, _ = looked_up(GET, shared_with(max_stale=10), entry("max-age=60", age=120))
    _, out = origin_answers(x, b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
    assert logged(out).result == "TCP_REFRESH_FAIL_ERR" and sent(out).startswith(b"HTTP/1.1 500 ")


# ------------------------------------------------------------ storing: ignore-no-store, ignore-private,
# store-stale, minimum_expiry_time

def fetched(shared, reply: bytes, body: bytes, raw: bytes = GET):
    x, out = looked_up(raw, shared, None)
    assert out[-1] == c.Connect("http", "o.test", 80)
    return origin_answers(x, reply, body)[1]


def test_ignore_no_store():
    reply = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600, no-store\r\nContent-Length: 2\r\n\r\n"
    assert "StoreEnd" not in kinds(fetched(shared_with(), reply, b"ok"))
    assert "StoreEnd" in kinds(fetched(shared_with(". 0 20% 4320 ignore-no-store"), reply, b"ok"))
    no_store_request = b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\nCache-Control: no-store\r\n\r\n"
    assert "StoreEnd" in kinds(fetched(shared_with(". 0 20% 4320 ignore-no-store"), OK, b"ok", no_store_request))


def test_ignore_private_stores_and_revalidates_every_hit():
    reply = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600, private\r\nContent-Length: 2\r\n\r\n"
    assert "StoreEnd" not in kinds(fetched(shared_with(), reply, b"ok"))
    shared = shared_with(". 0 20% 4320 ignore-private")
    assert "StoreEnd" in kinds(fetched(shared, reply, b"ok"))
    _, out = looked_up(GET, shared, entry("max-age=600, private"))
    assert out == [c.Connect("http", "o.test", 80)]


def test_minimum_expiry_time_and_store_stale_for_empty_replies():
    empty = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=30\r\nContent-Length: 0\r\n\r\n"
    assert "StoreStart" not in kinds(fetched(shared_with(), empty, b""))
    assert "StoreStart" in kinds(fetched(shared_with(minimum_expiry_time=10), empty, b""))
    assert "StoreStart" in kinds(fetched(shared_with(". 0 20% 4320 store-stale"), empty, b""))
