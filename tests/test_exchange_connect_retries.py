"""Exchange transcripts for connect_retries (Squid 5.7's ConnOpener): a connect() that
fails at once is tried again on the same destination, 50 ms later, within
connect_timeout, before the next candidate; a timeout is not.  Events in, commands out."""

from __future__ import annotations

import pytest

from squidpy.exchange import State
from squidpy.exchange import commands as c
from squidpy.exchange import events as ev
from squidpy.peers.forwarding import REOPEN_PAUSE, reopens
from tests.exchange_kit import FakeShared, kinds, make, peers_known

POLICY = "acl local src 10.0.0.0/8 127.0.0.0/8\nhttp_access allow local\nhttp_access deny all\n"
GET = b"GET http://o.test/a HTTP/1.1\r\nHost: o.test\r\n\r\n"
REFUSED = ev.ConnectFailed("ERR_CONNECT_FAIL", "(111) Connection refused", 503, "192.0.2.1", errno=111)
TIMED_OUT = ev.ConnectFailed("ERR_CONNECT_FAIL", "(110) Connection timed out", 503, "192.0.2.1")


def exchange(lines: str):
    shared = FakeShared(lines + POLICY)
    return make(GET, shared), shared


@pytest.mark.parametrize("retries, failures, errno, left, again", [
    (0, 1, 111, 60.0, False),
    (1, 1, 111, 60.0, False),           # Squid counts failures against the setting: 1 is one try
    (2, 1, 111, 60.0, True),
    (2, 2, 111, 60.0, False),
    (10, 9, 113, 60.0, True),
    (10, 10, 111, 60.0, False),
    (5, 1, None, 60.0, False),          # a timeout is never repeated
    (5, 1, 111, REOPEN_PAUSE, False),   # connect_timeout would end during the pause
])
def test_reopens_as_conn_opener_counts(retries, failures, errno, left, again):
    assert reopens(retries, failures, errno, left) is again


def test_without_connect_retries_a_refusal_is_the_answer():
    x, _ = exchange("")
    assert x.handle(ev.RequestStarted) == [c.Connect("http", "o.test", 80)]
    out = x.handle(REFUSED)
    assert kinds(out) == ["SendToClient", "Log", "Finished"]
    assert out[1].entry.result == "TCP_MISS" and out[1].entry.status == 503


def test_refused_connects_are_tried_again_up_to_the_setting_then_fail():
    x, shared = exchange("connect_retries 3\nconnect_timeout 10 seconds\n")
    assert x.handle(ev.RequestStarted) == [c.Connect("http", "o.test", 80)]
    shared.clock += 0.01
    out = x.handle(REFUSED)
    assert out == [c.Connect("http", "o.test", 80, fresh=True, delay=REOPEN_PAUSE, timeout=pytest.approx(9.94))]
    assert x.state is State.CONNECTING
    shared.clock += 0.06
    out = x.handle(REFUSED)
    assert out == [c.Connect("http", "o.test", 80, fresh=True, delay=REOPEN_PAUSE, timeout=pytest.approx(9.88))]
    out = x.handle(REFUSED)             # the third failure of three tries
    assert kinds(out) == ["SendToClient", "Log", "Finished"]
    assert out[1].entry.status == 503


def test_a_retry_that_connects_is_an_ordinary_miss():
    x, _ = exchange("connect_retries 2\n")
    x.handle(ev.RequestStarted)
    assert kinds(x.handle(REFUSED)) == ["Connect"]
    out = x.handle(ev.Connected("192.0.2.1", 80))
    assert kinds(out) == ["SendUpstream"] and x.state is State.AWAITING_REPLY


def test_a_timed_out_connect_is_not_tried_again():
    x, _ = exchange("connect_retries 5\n")
    x.handle(ev.RequestStarted)
    assert kinds(x.handle(TIMED_OUT)) == ["SendToClient", "Log", "Finished"]


def test_no_retry_past_connect_timeout():
    x, shared = exchange("connect_retries 5\nconnect_timeout 2 seconds\n")
    x.handle(ev.RequestStarted)
    shared.clock += 1.97            # 0.03 s left: less than the pause
    assert kinds(x.handle(REFUSED)) == ["SendToClient", "Log", "Finished"]


PEERS = """
cache_peer p1.test parent 3128 0 no-query name=p1 connect-timeout=4
cache_peer p2.test parent 3128 0 no-query name=p2
never_direct allow all
"""


def test_each_peer_is_tried_again_before_the_next_and_tries_are_not_forward_max_tries():
    shared = FakeShared(PEERS + "connect_retries 2\nforward_max_tries 2\n" + POLICY)
    peers_known(shared)
    x = make(GET, shared)
    out = x.handle(ev.RequestStarted)
    assert [(cmd.host, cmd.fresh, cmd.delay) for cmd in out if isinstance(cmd, c.Connect)] == [
        ("p1.test", False, 0.0)]
    out = x.handle(REFUSED)
    assert [(cmd.host, cmd.fresh, cmd.delay, cmd.timeout) for cmd in out if isinstance(cmd, c.Connect)] == [
        ("p1.test", True, REOPEN_PAUSE, pytest.approx(4 - REOPEN_PAUSE))]      # its connect-timeout
    out = x.handle(REFUSED)
    assert [(cmd.host, cmd.delay) for cmd in out if isinstance(cmd, c.Connect)] == [("p2.test", 0.0)]
    out = x.handle(REFUSED)
    assert [(cmd.host, cmd.delay) for cmd in out if isinstance(cmd, c.Connect)] == [("p2.test", REOPEN_PAUSE)]
    out = x.handle(REFUSED)
    assert "Log" in kinds(out) and not any(isinstance(cmd, c.Connect) for cmd in out)


def test_connect_retries_above_ten_is_ten_with_squids_warning():
    from squidpy.config.loader import load
    config = load(text="connect_retries 12\n")
    assert config.connect_retries == 10
    assert any("connect_retries cannot be larger than 10. Resetting to 10." in str(w) for w in config.warnings)
