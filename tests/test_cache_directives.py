"""Issue 12's cache directives: their syntax (Squid's), and their decisions as pure code
and exchange transcripts (no sockets, a fixed clock)."""

from __future__ import annotations

import pytest

from squidpy.cache.quick_abort import QuickAbort, keeps_fetching
from squidpy.config.loader import ConfigErrors, load
from squidpy.exchange import State
from squidpy.exchange import commands as c
from squidpy.exchange import events as ev
from tests.exchange_kit import FakeCache, FakeShared, kinds, make, response_head, upstream


# ------------------------------------------------------------ syntax
@pytest.mark.parametrize("line, kind", [
    ("cache_dir ufs /tmp/sq 100 16 256", "ufs"),
    ("cache_dir aufs /tmp/sq 100 16 256 min-size=0", "aufs"),
    ("cache_dir diskd /tmp/sq 100 16 256", "diskd"),
    ("cache_dir rock /tmp/sq 100 max-size=32768", "rock"),
    ("cache_dir diskcache /tmp/sq 100", "diskcache"),
])
def test_cache_dir_types_map_to_the_diskcache_store(line, kind):
    config = load(text=line + "\n")
    assert (config.cache_dir.path, config.cache_dir.size_mb, config.cache_dir.kind) == ("/tmp/sq", 100, kind)


def test_cache_dir_warns_that_the_format_differs_and_checks_squids_syntax():
    warnings = [w.message for w in load(text="cache_dir aufs /tmp/sq 100 16 256\n").warnings]
    assert warnings == ["cache_dir aufs: squidpy keeps its own diskcache store in /tmp/sq (100 MB); "
                        "the on-disk format differs from Squid's aufs, so a Squid cache there is not read"]
    assert load(text="cache_dir diskcache /tmp/sq 100\n").warnings == []
    with pytest.raises(ConfigErrors, match="L1 L2"):
        load(text="cache_dir ufs /tmp/sq 100\n")
    with pytest.raises(ConfigErrors, match="coss"):
        load(text="cache_dir coss /tmp/sq 100\n")


@pytest.mark.parametrize("value", ["lru", "heap GDSF", "heap LFUDA", "heap LRU", "heap gdsf"])
def test_replacement_policies(value):
    config = load(text=f"cache_replacement_policy {value}\nmemory_replacement_policy {value}\n")
    assert config.cache_replacement_policy.lower() == value.lower()
    assert config.memory_replacement_policy.lower() == value.lower()
    with pytest.raises(ConfigErrors):
        load(text="cache_replacement_policy heap ARC\n")


def test_defaults_are_squids():
    config = load(text="")
    assert (config.quick_abort_min, config.quick_abort_max, config.quick_abort_pct) == (16384, 16384, 95)
    assert config.cache_miss_revalidate and config.cache_replacement_policy == "lru"
    assert config.memory_replacement_policy == "lru"
    assert load(text="quick_abort_min -1 KB\n").quick_abort_min == -1


# ------------------------------------------------------------ quick_abort (store_client.cc)
@pytest.mark.parametrize("settings, storing, length, received, waiters, goes_on", [
    (QuickAbort(), True, 100_000, 90_000, 0, True),          # under 16 KB left
    (QuickAbort(), True, 100_000, 10_000, 0, False),         # more than 16 KB left
    (QuickAbort(), True, None, 10_000, 0, False),            # unknown length
    (QuickAbort(), False, 100_000, 99_000, 0, False),        # not being stored
    (QuickAbort(), False, 100_000, 1_000, 2, True),          # others wait for it
    (QuickAbort(-1), True, 10 ** 9, 0, 0, True),              # quick_abort_min -1 KB
    (QuickAbort(0, 0), True, 100_000, 99_999, 0, False),     # 0 KB and 0 KB: never
    (QuickAbort(16384, 10 ** 9, 50), True, 10 ** 6, 600_000, 0, True),   # past quick_abort_pct
    (QuickAbort(16384, 10 ** 9, 50), True, 10 ** 6, 400_000, 0, False),
    (QuickAbort(), True, 1_000, 2_000, 0, False),            # more than announced
])
def test_quick_abort(settings, storing, length, received, waiters, goes_on):
    assert keeps_fetching(settings, storing, 100, length, received, waiters) is goes_on


GET = b"GET http://o.test/big HTTP/1.1\r\nHost: o.test\r\n\r\n"


def relaying(config: str = "", length: int = 100_000):
    shared = FakeShared(config_text="acl local src 10.0.0.0/8\nhttp_access allow local\n" + config,
                        cache=FakeCache())
    x = make(GET, shared)
    x.handle(ev.RequestStarted)
    x.handle(ev.CacheFound(None, None, ()))
    x.handle(ev.Connected("192.0.2.1", 80))
    head = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: %d\r\n\r\n" % length
    x.handle(ev.ResponseStarted(response_head(head)))
    return x


def test_client_gone_near_the_end_finishes_and_stores():
    x = relaying()
    x.handle(ev.ResponseBody(b"x" * 90_000))
    out = x.handle(ev.ClientGone)
    assert kinds(out) == ["Log", "Finished", "DetachClient"]
    assert out[0].entry.result == "TCP_MISS_ABORTED" and x.state is State.DONE
    out = x.handle(ev.ResponseBody(b"x" * 10_000))
    assert kinds(out) == ["StoreBody"]
    out = x.handle(ev.ResponseEnd(True, 100_200))
    assert kinds(out) == ["ReleaseUpstream", "StoreEnd", "ReleaseFetch"]
    assert out[1].key == "http://o.test/big"


def test_client_gone_far_from_the_end_aborts_the_fetch():
    x = relaying()
    x.handle(ev.ResponseBody(b"x" * 1_000))
    out = x.handle(ev.ClientGone)
    assert kinds(out) == ["AbortUpstream", "StoreDiscard", "ReleaseFetch", "Log", "Finished"]


def test_quick_abort_min_minus_one_always_finishes_and_a_failure_discards():
    x = relaying("quick_abort_min -1 KB\n")
    x.handle(ev.ResponseBody(b"x" * 1_000))
    assert "DetachClient" in kinds(x.handle(ev.ClientGone))
    out = x.handle(ev.UpstreamFailed("ERR_READ_ERROR", "reset", 502))
    assert kinds(out) == ["StoreDiscard", "ReleaseFetch"]
    y = relaying("quick_abort_min -1 KB\n")
    y.handle(ev.ClientGone)
    assert kinds(y.handle(ev.TimedOut("read"))) == ["AbortUpstream", "StoreDiscard", "ReleaseFetch"]


# ------------------------------------------------------------ cache_miss_revalidate
CONDITIONAL = (b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\nIf-None-Match: \"x\"\r\n"
               b"If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT\r\n\r\n")


@pytest.mark.parametrize("setting, extra, forwarded", [
    ("on", b"", (True, True)),
    ("off", b"", (False, False)),
    ("off", b"If-Match: *\r\n", (True, False)),
    ("off", b"Authorization: Basic eDp5\r\n", (True, True)),
])
def test_cache_miss_revalidate(setting, extra, forwarded):
    shared = FakeShared(config_text="acl local src 10.0.0.0/8\nhttp_access allow local\n"
                                    f"cache_miss_revalidate {setting}\n", cache=FakeCache())
    x = make(CONDITIONAL[:-2] + extra + b"\r\n", shared)
    x.handle(ev.RequestStarted)
    assert x.handle(ev.CacheFound(None, None, ()))[-1] == c.Connect("http", "o.test", 80)
    sent_up = upstream(x.handle(ev.Connected("192.0.2.1", 80)))
    assert (b"If-None-Match" in sent_up, b"If-Modified-Since" in sent_up) == forwarded
