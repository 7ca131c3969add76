"""ClientSession transcripts: which request runs, where body bytes go, when the
connection closes — pure, no sockets."""

from __future__ import annotations

from squidpy.exchange.session import Begin, ClientSession, Close, Idle, PauseReading, ResumeReading
from tests.exchange_kit import make

GET = b"GET http://o.test/%d HTTP/1.1\r\nHost: o.test\r\n\r\n"
GET_CLOSE = b"GET http://o.test/%d HTTP/1.1\r\nHost: o.test\r\nConnection: close\r\n\r\n"
POST = b"POST http://o.test/p HTTP/1.1\r\nContent-Length: 3\r\n\r\n"


def x(raw: bytes, n: int = 0):
    return make(raw % n if b"%d" in raw else raw)


def test_pipelined_requests_run_one_at_a_time_in_order():
    s = ClientSession()
    a, b, c = x(GET, 1), x(GET, 2), x(GET, 3)
    assert s.received(a, False) == [Begin(a)]
    assert s.received(b, False) == []
    assert s.received(c, False) == []
    assert s.finished(a, keep_alive=True, body_done=True) == [ResumeReading("body"), Begin(b)]
    assert s.finished(b, keep_alive=True, body_done=True) == [ResumeReading("body"), Begin(c)]
    assert s.finished(c, keep_alive=True, body_done=True) == [ResumeReading("body"), Idle]


def test_a_later_connection_close_still_answers_every_request_in_order():
    s = ClientSession()
    a, b, c = x(GET, 1), x(GET, 2), x(GET_CLOSE, 3)
    s.received(a, False), s.received(b, False), s.received(c, False)
    assert s.closing                                  # nothing more is read ...
    assert s.finished(a, True, True)[-1] == Begin(b)  # ... but each is answered
    assert s.finished(b, True, True)[-1] == Begin(c)
    assert s.finished(c, False, True)[-1] == Close(linger=False)


def test_a_refused_request_drops_the_queue_and_lingers_while_its_body_comes():
    s = ClientSession()
    post, get = x(POST), x(GET, 1)
    s.received(post, True)
    s.received(get, False)
    assert s.finished(post, keep_alive=False, body_done=False) == [ResumeReading("body"), Close(linger=True)]
    assert s.queue == [] and s.closed


def test_body_bytes_go_to_the_request_they_follow():
    s = ClientSession()
    a, post = x(GET, 1), x(POST)
    s.received(a, False)
    s.received(post, True)
    assert s.body_target() is post          # not the active one: it is still queued
    s.body_ended()
    assert s.body_target() is None


def test_too_many_pipelined_requests_pause_reading_until_the_queue_shrinks():
    s = ClientSession()
    first = x(GET, 0)
    s.received(first, False)
    queued = [x(GET, n) for n in range(1, 18)]
    outs = [s.received(q, False) for q in queued]
    assert outs[-1] == [PauseReading("pipeline")] and all(o == [] for o in outs[:-1])
    assert s.finished(first, True, True) == [ResumeReading("body"), ResumeReading("pipeline"), Begin(queued[0])]


def test_half_close_finishes_what_was_asked_then_closes():
    s = ClientSession()
    a = x(GET, 1)
    s.received(a, False)
    assert s.half_closed() == []
    assert s.finished(a, True, True)[-1] == Close(linger=False)
    assert ClientSession().half_closed() == [Close(linger=False)]


def test_a_refused_connect_never_keeps_the_connection():
    s = ClientSession()
    connect = make(b"CONNECT o.test:443 HTTP/1.1\r\n\r\n")
    s.received(connect, False)
    assert s.finished(connect, keep_alive=True, body_done=True)[-1] == Close(linger=False)


def test_a_connect_challenged_407_keeps_the_connection_for_the_handshake():
    from squidpy.exchange import events as ev
    from tests.exchange_kit import FakeShared
    shared = FakeShared("auth_param basic program /bin/true\nacl u proxy_auth REQUIRED\nhttp_access allow u\n")
    s = ClientSession()
    connect = make(b"CONNECT o.test:443 HTTP/1.1\r\n\r\n", shared)
    s.received(connect, False)
    connect.handle(ev.RequestStarted)
    assert connect.entry.status == 407
    assert s.finished(connect, keep_alive=True, body_done=True)[-1] == Idle


def test_gone_hands_back_the_active_exchange_and_drops_the_rest():
    s = ClientSession()
    a, b = x(GET, 1), x(GET, 2)
    s.received(a, False), s.received(b, False)
    assert s.gone() is a
    assert s.queue == [] and s.closed
