"""Exchange transcripts for range_offset_limit (Squid 5.7's decideIfWeDoRanges and
buildRangeHeader): whether a Range request's miss goes upstream with its Range or
fetches the whole object, stores it and cuts the range out.  Events in, commands out."""

from __future__ import annotations

import pytest

from squidpy.cache import policy
from squidpy.exchange import commands as c
from squidpy.exchange import events as ev
from tests.exchange_kit import FakeCache, FakeShared, kinds, make, response_head, sent, stored, upstream

POLICY = "acl local src 10.0.0.0/8 127.0.0.0/8\nhttp_access allow local\nhttp_access deny all\n"
WHOLE = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 10\r\nContent-Type: text/plain\r\n\r\n"
BODY = b"0123456789"
PART = (b"HTTP/1.1 206 Partial Content\r\nCache-Control: max-age=600\r\nContent-Range: bytes 2-4/10\r\n"
        b"Content-Length: 3\r\n\r\n")


def get(range_value: bytes, extra: bytes = b"") -> bytes:
    return (b"GET http://o.test/f HTTP/1.1\r\nHost: o.test\r\nRange: " + range_value
            + b"\r\nIf-Range: \"v1\"\r\n" + extra + b"\r\n")


def shared(limit_lines: str = "") -> FakeShared:
    return FakeShared(limit_lines + POLICY, cache=FakeCache())


def miss(x):
    """Start, a store miss (leading the fetch), connected: the commands up to the request sent."""
    x.handle(ev.RequestStarted)
    x.handle(ev.CacheFound(None, None, ()))
    return x.handle(ev.Connected("192.0.2.1", 80))


def relay(x, reply: bytes, chunks):
    events = [ev.ResponseStarted(response_head(reply))] + [ev.ResponseBody(b) for b in chunks]
    return x.handle_all(events + [ev.ResponseEnd(reusable=True, bytes_in=len(reply) + sum(map(len, chunks)))])


@pytest.mark.parametrize("specs, limit, exceeded", [
    ([(2, 4)], 0, True),                 # 0 (the default): the Range always goes upstream
    ([(2, 4)], -1, False),               # none: always the whole object
    ([(None, 3)], -1, False),
    ([(2, 4)], 2, False),                # the first byte within the limit (Squid: limit >= firstOffset)
    ([(3, 4)], 2, True),
    ([(None, 3)], 1 << 20, True),        # a suffix: Squid's first offset is unknown
    ([(5, 6), (1, 2)], 1, False),        # the lowest first byte counts
    ([(5, 6), (None, 2)], 1 << 20, True),
    ([(None, 2), (5, 6)], 5, False),     # Squid's walk: a known start after the suffix replaces it
])
def test_offset_limit_exceeded_as_squid_decides(specs, limit, exceeded):
    assert policy.range_offset_limit_exceeded(specs, limit) is exceeded


def test_default_limit_forwards_the_range_and_does_not_store_the_206():
    x = make(get(b"bytes=2-4"), shared())
    head = upstream(miss(x))
    assert b"Range: bytes=2-4\r\n" in head and b"If-Range" in head
    out = relay(x, PART, [b"234"])
    assert "StoreStart" not in kinds(out)
    assert sent(out).endswith(b"\r\n\r\n234")
    log = [cmd for cmd in out if isinstance(cmd, c.Log)][0].entry
    assert (log.result, log.status, log.reply_body_size) == ("TCP_MISS", 206, 3)


def test_none_fetches_the_whole_object_stores_it_and_sends_the_range():
    x = make(get(b"bytes=2-4"), shared("range_offset_limit none\n"))
    head = upstream(miss(x))
    assert b"Range" not in head and b"If-Range" not in head
    out = relay(x, WHOLE, [b"01234", b"56789"])
    assert kinds(out) == ["StoreStart", "SendToClient", "StoreBody", "SendToClient", "StoreBody",
                          "ReleaseUpstream", "StoreEnd", "ReleaseFetch", "Log", "Finished"]
    assert [cmd.data for cmd in out if isinstance(cmd, c.StoreBody)] == [b"01234", b"56789"]
    client = sent(out)
    assert client.startswith(b"HTTP/1.1 206 Partial Content\r\n")
    assert b"Content-Range: bytes 2-4/10\r\n" in client and b"Content-Length: 3\r\n" in client
    assert b"Content-Length: 10" not in client and client.endswith(b"\r\n\r\n234")
    log = [cmd for cmd in out if isinstance(cmd, c.Log)][0].entry
    assert (log.result, log.status, log.reply_body_size) == ("TCP_MISS", 206, 3)
    assert x.entry.reply_body_size == 10        # what came from the origin (the store's check)


def test_a_range_across_reads_is_cut_from_each():
    x = make(get(b"bytes=3-7"), shared("range_offset_limit none\n"))
    miss(x)
    out = relay(x, WHOLE, [b"01", b"234", b"5", b"6789"])
    assert [cmd.data for cmd in out if isinstance(cmd, c.SendToClient)][1:] == [b"34", b"5", b"67"]


def test_a_limit_in_bytes_fetches_whole_only_within_it():
    lines = "range_offset_limit 4 KB\n"
    x = make(get(b"bytes=4096-5000"), shared(lines))
    assert b"Range" not in upstream(miss(x))
    y = make(get(b"bytes=4097-5000"), shared(lines))
    assert b"Range: bytes=4097-5000" in upstream(miss(y))


def test_the_first_line_whose_acls_match_decides():
    lines = ("acl iso urlpath_regex \\.iso$\nacl lan src 10.0.0.0/8\n"
             "range_offset_limit none iso\nrange_offset_limit 0 lan\nrange_offset_limit none\n")
    x = make(get(b"bytes=2-4"), shared(lines))             # not .iso, from 10/8: 0
    assert b"Range: bytes=2-4" in upstream(miss(x))
    y = make(get(b"bytes=2-4"), shared(lines), client_ip="127.0.0.9")     # no lan: none
    assert b"Range" not in upstream(miss(y))


def test_a_suffix_range_goes_upstream_unless_none():
    x = make(get(b"bytes=-3"), shared("range_offset_limit 1 MB\n"))
    assert b"Range: bytes=-3" in upstream(miss(x))
    y = make(get(b"bytes=-3"), shared("range_offset_limit none\n"))
    assert b"Range" not in upstream(miss(y))
    out = relay(y, WHOLE, [BODY])
    assert b"Content-Range: bytes 7-9/10" in sent(out) and sent(out).endswith(b"789")


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nTransfer-Encoding: chunked\r\n\r\n",   # length unknown
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\n",
])
def test_a_reply_that_cannot_be_cut_goes_to_the_client_whole(reply):
    x = make(get(b"bytes=2-4"), shared("range_offset_limit none\n"))
    miss(x)
    out = relay(x, reply, [BODY])
    assert b"Content-Range" not in sent(out) and BODY in sent(out)
    log = [cmd for cmd in out if isinstance(cmd, c.Log)][0].entry
    assert log.status == int(reply[9:12])


def test_several_ranges_on_a_whole_fetch_get_the_whole_200():
    x = make(get(b"bytes=0-1,5-6"), shared("range_offset_limit none\n"))
    miss(x)
    out = relay(x, WHOLE, [BODY])
    assert sent(out).startswith(b"HTTP/1.1 200 OK\r\n") and sent(out).endswith(BODY)
    assert "StoreEnd" in kinds(out)


def test_an_unsatisfiable_range_on_a_whole_fetch_gets_the_200():
    """Squid's buildRangeHeader: canonization fails, the range is ignored."""
    x = make(get(b"bytes=50-60"), shared("range_offset_limit none\n"))
    miss(x)
    out = relay(x, WHOLE, [BODY])
    assert sent(out).startswith(b"HTTP/1.1 200 OK\r\n")


def test_the_stored_whole_answers_the_next_range_as_a_hit():
    reply = stored("http://o.test/f", [(b"Cache-Control", b"max-age=600"), (b"Content-Length", b"10"),
                                       (b"ETag", b"\"v1\"")], BODY)
    x = make(get(b"bytes=6-8"), shared())
    x.handle(ev.RequestStarted)
    out = x.handle(ev.CacheFound(reply, BODY, ()))
    assert sent(out).startswith(b"HTTP/1.1 206 Partial Content\r\n") and sent(out).endswith(b"678")
    log = [cmd for cmd in out if isinstance(cmd, c.Log)][0].entry
    assert (log.result, log.status) == ("TCP_MEM_HIT", 206)


def test_an_uncacheable_request_forwards_its_range():
    """Squid does ranges itself only for a cachable request (no cache role: cache deny)."""
    x = make(get(b"bytes=2-4"), FakeShared("range_offset_limit none\n" + POLICY, cache=FakeCache(allows=False)))
    out = x.handle(ev.RequestStarted)
    out += x.handle(ev.Connected("192.0.2.1", 80))
    assert b"Range: bytes=2-4" in upstream(out)


def test_a_client_leaving_a_whole_fetch_under_none_does_not_stop_it():
    """range_offset_limit none overrides quick_abort (store_client.cc), so the fetch goes on."""
    lines = "range_offset_limit none\nquick_abort_min 0 KB\nquick_abort_max 0 KB\n"
    x = make(get(b"bytes=2-4"), shared(lines))
    miss(x)
    x.handle_all([ev.ResponseStarted(response_head(WHOLE)), ev.ResponseBody(b"0123")])
    out = x.handle(ev.ClientGone)
    assert "AbortUpstream" not in kinds(out) and x.upstream == "storing"
    out = x.handle_all([ev.ResponseBody(b"456789"), ev.ResponseEnd(True, 100)])
    assert "StoreEnd" in kinds(out)
    y = make(get(b"bytes=2-4"), shared("range_offset_limit 1 MB\nquick_abort_min 0 KB\nquick_abort_max 0 KB\n"))
    miss(y)
    y.handle_all([ev.ResponseStarted(response_head(WHOLE)), ev.ResponseBody(b"0123")])
    assert "AbortUpstream" in kinds(y.handle(ev.ClientGone))
