"""Squid's helper protocol and the pool's decisions, without processes (injected clock)."""

import pytest

from squidpy.helpers.pool import (
    BACKOFF_FIRST,
    OVERLOAD_GRACE,
    Answer,
    CloseInput,
    Fatal,
    HelperPool,
    Kill,
    Log,
    Spawn,
    Write,
)
from squidpy.helpers.protocol import (
    BH,
    ERR,
    OK,
    TIMEDOUT,
    TT,
    UNKNOWN,
    ChildConfig,
    LineSplitter,
    escape,
    format_request,
    parse_reply,
    split_channel,
    wordtok,
)

# ---------------------------------------------------------------- children N ...


def test_children_defaults_follow_squid():
    c = ChildConfig.parse(["5"])
    assert (c.n_max, c.startup, c.idle, c.concurrency, c.queue_size, c.on_persistent_overload) == \
        (5, 0, 1, 0, 10, "die")


def test_children_options():
    c = ChildConfig.parse("20 startup=3 idle=2 concurrency=8 queue-size=7 on-persistent-overload=ERR".split())
    assert (c.n_max, c.startup, c.idle, c.concurrency, c.queue_size, c.on_persistent_overload) == \
        (20, 3, 2, 8, 7, "ERR")


def test_children_caps_and_overrides_warn():
    notes = []
    c = ChildConfig.parse("2 startup=9 idle=0".split(), warn=notes.append)
    assert (c.startup, c.idle) == (2, 1)
    assert any("idle=0" in n for n in notes) and any("startup=9" in n for n in notes)


@pytest.mark.parametrize("args,message", [
    ([], "expected"),
    (["0"], "cannot be less than 1"),
    (["x"], "whole number"),
    (["5", "bogus=1"], "undefined option"),
    (["5", "on-persistent-overload=panic"], "unsupported"),
    (["5", "concurrency=-1"], "whole number"),
])
def test_children_errors(args, message):
    with pytest.raises(ValueError, match=message):
        ChildConfig.parse(args)


def test_need_new_is_squids():
    c = ChildConfig.parse("5 startup=2 idle=1".split())
    assert c.need_new(0, starting_up=True) == 2
    assert c.need_new(3) == 1
    assert c.need_new(4) == 1
    assert c.need_new(5) == 0


def test_url_rewrite_bypass_default_queue():
    c = ChildConfig.parse(["5"], default_queue_size=lambda n: 0)
    assert c.queue_size == 0
    assert ChildConfig.parse(["5", "queue-size=3"], default_queue_size=lambda n: 0).queue_size == 3


# ---------------------------------------------------------------- escaping


def test_escape_keeps_lines_whole():
    assert escape("alice") == "alice"
    assert escape("a b\nc%") == "a%20b%0Ac%25"
    assert escape('pa"ss\\') == "pa%22ss%5C"
    assert escape("é") == "%E9"                           # request text is Latin-1
    assert escape("a/b:c", reserved=True) == "a%2Fb%3Ac"
    assert "\n" not in escape("\r\n") and " " not in escape(" ")


# ---------------------------------------------------------------- replies


def test_wordtok_quotes_and_escapes():
    assert wordtok('  "a b" c') == ("a b", 8)
    assert wordtok(r'"x\"y"')[0] == 'x"y'
    assert wordtok("   ") == (None, 3)


@pytest.mark.parametrize("line,result,notes", [
    ("OK", OK, []),
    ("ERR", ERR, []),
    ("BH", BH, []),
    ("OK user=alice", OK, [("user", "alice")]),
    ("OK user=al%20ice tag=vip", OK, [("user", "al ice"), ("tag", "vip")]),
    ('OK message="hello world"', OK, [("message", "hello world")]),
    ("ERR message=bad%20password log=x", ERR, [("message", "bad password"), ("log", "x")]),
    ("OK group=a group=b", OK, [("group", "a"), ("group", "b")]),
    ("OK clt_conn_tag=c1", OK, [("clt_conn_tag", "c1")]),
    ("OK key=", OK, [("key", "")]),
    ("TT abc==", TT, [("token", "abc==")]),
    ("AF tok alice", OK, [("token", "tok"), ("user", "alice")]),
    ("AF alice", OK, [("user", "alice")]),
    ("NA bad user=x", ERR, [("message", "bad user=x")]),
    ("BH helper broken", BH, [("message", "helper broken")]),
    ("HELLO there", UNKNOWN, []),
    ("OKAY", UNKNOWN, []),
    ("", ERR, []),
])
def test_parse_reply(line, result, notes):
    reply = parse_reply(line)
    assert reply.result == result
    assert reply.notes == notes


def test_reply_free_text_after_keys():
    reply = parse_reply("OK user=a then free text")
    assert reply.get("user") == "a" and reply.other == "then free text"


def test_reply_repr_hides_values():
    assert "secret" not in repr(parse_reply("OK password=secret"))


def test_channels_and_lines():
    assert split_channel("12 OK user=a") == (12, "OK user=a")
    assert split_channel("OK") == (None, "OK")
    assert split_channel("7") == (7, "")
    assert format_request("a b", 3) == b"3 a b\n"
    assert format_request("a b", None) == b"a b\n"
    s = LineSplitter(limit=10)
    assert s.feed(b"OK\r\nER") == ["OK"]
    assert s.feed(b"R\n") == ["ERR"]
    assert s.feed(b"x" * 11) is None


# ---------------------------------------------------------------- the pool


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def kinds(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def pool(children="2", **kw):
    clock = Clock()
    return HelperPool("basicauthenticator", ChildConfig.parse(children.split()), clock, **kw), clock


def test_first_request_starts_idle_children_and_is_sent():
    p, _ = pool("3")
    assert p.start() == []                    # startup=0: children come on demand
    acts = p.submit("alice secret", "t1")
    assert kinds(acts, Spawn) == [Spawn(1)]
    assert kinds(acts, Write) == [Write(1, b"alice secret\n")]


def test_startup_children():
    p, _ = pool("4 startup=2")
    assert p.start() == [Spawn(1), Spawn(2)]


def test_reply_answers_in_order_without_concurrency():
    p, _ = pool("1 startup=1")
    p.start()
    p.submit("a", "t1")
    acts = p.submit("b", "t2")               # child busy: queued (max reached)
    assert kinds(acts, Write) == [] and p.queued() == 1
    acts = p.received(1, b"OK user=a\n")
    assert kinds(acts, Answer)[0].token == "t1"
    assert kinds(acts, Write) == [Write(1, b"b\n")]
    acts = p.received(1, b"ERR\n")
    assert kinds(acts, Answer)[0].token == "t2" and kinds(acts, Answer)[0].reply.result == ERR


def test_busy_children_make_more_up_to_max():
    p, _ = pool("2 startup=1")
    p.start()
    p.submit("a", "t1")
    acts = p.submit("b", "t2")
    assert kinds(acts, Spawn) == [Spawn(2)] and kinds(acts, Write) == [Write(2, b"b\n")]
    acts = p.submit("c", "t3")
    assert kinds(acts, Spawn) == [] and p.queued() == 1


def test_channel_ids_match_out_of_order_replies():
    p, _ = pool("1 startup=1 concurrency=3")
    p.start()
    writes = []
    for word in "abc":
        writes += kinds(p.submit(word, word), Write)
    assert [w.data for w in writes] == [b"1 a\n", b"2 b\n", b"3 c\n"]
    acts = p.received(1, b"3 OK user=c\n1 OK user=a\n")
    assert [(a.token, a.reply.get("user")) for a in kinds(acts, Answer)] == [("c", "c"), ("a", "a")]
    acts = p.received(1, b"9 OK\n")
    assert kinds(acts, Answer) == [] and "unexpected reply on channel 9" in kinds(acts, Log)[0].message
    acts = p.received(1, b"garbage\n")
    assert kinds(acts, Answer) == [] and kinds(acts, Log)
    assert kinds(p.received(1, b"2 OK\n"), Answer)[0].token == "b"


def test_least_loaded_child_takes_requests():
    p, _ = pool("2 startup=2 concurrency=2")
    p.start()
    targets = [kinds(p.submit(w, w), Write)[0].index for w in "abcd"]
    assert targets == [1, 2, 1, 2]
    assert kinds(p.submit("e", "e"), Write) == [] and p.queued() == 1


def test_unexpected_read_without_request():
    p, _ = pool("1 startup=1")
    p.start()
    acts = p.received(1, b"OK\n")
    assert kinds(acts, Answer) == [] and "unexpected read" in kinds(acts, Log)[0].message


def test_bh_is_retried_then_answered():
    p, _ = pool("1 startup=1")
    p.start()
    p.submit("a", "t1")
    acts = p.received(1, b"BH broken\n")
    assert kinds(acts, Answer) == [] and kinds(acts, Write) == [Write(1, b"a\n")]
    assert "attempt #1 of 2" in kinds(acts, Log)[0].message
    p.received(1, b"BH broken\n")
    acts = p.received(1, b"BH broken\n")
    answer = kinds(acts, Answer)[0]
    assert answer.reply.result == BH and answer.reply.message == "broken"


def test_dead_child_answers_its_requests_and_is_replaced():
    p, clock = pool("1 startup=1")
    p.start()
    p.submit("a", "t1")
    p.received(1, b"OK\n")
    p.submit("b", "t2")
    clock.now += 60
    acts = p.exited(1, "exit status 1")
    assert kinds(acts, Answer)[0].token == "t2" and kinds(acts, Answer)[0].reply.result == UNKNOWN
    assert any("#1 exited" in log.message for log in kinds(acts, Log))
    assert kinds(acts, Spawn) == [Spawn(2)]


def test_rapid_crashes_back_off_and_are_reported():
    p, clock = pool("1 startup=1")
    p.start()
    acts = p.exited(1, "exit status 3")
    assert kinds(acts, Spawn) == []
    assert any("crashing too rapidly" in log.message for log in kinds(acts, Log))
    # while nothing runs and the restart waits, a request is answered at once
    answer = kinds(p.submit("a", "t1"), Answer)[0]
    assert answer.reply.result == UNKNOWN
    clock.now += BACKOFF_FIRST
    assert kinds(p.tick(), Spawn) == [Spawn(2)]
    p.exited(2)
    assert p.backoff == 2 * BACKOFF_FIRST
    clock.now += 2 * BACKOFF_FIRST
    assert kinds(p.tick(), Spawn) == [Spawn(3)]
    p.submit("b", "t2")
    p.received(3, b"OK\n")
    assert p.backoff == 0


def test_queue_overload_err_after_grace():
    p, clock = pool("1 startup=1 queue-size=1 on-persistent-overload=ERR")
    p.start()
    p.submit("a", "t0")                        # sent
    p.submit("b", "t1")                        # queued (1: full)
    p.submit("c", "t2")                        # queued (2: overloaded from now, as helper.cc's submitRequest syncs)
    assert p.overload_start == clock.now
    clock.now += OVERLOAD_GRACE
    acts = p.submit("c2", "t2b")               # 180 seconds is not yet persistent
    assert kinds(acts, Answer) == [] and p.queued() == 3
    clock.now += 1
    acts = p.submit("d", "t3")
    assert kinds(acts, Answer)[0].reply.result == ERR
    assert "dropping requests" in kinds(acts, Log)[0].message
    acts = p.submit("e", "t4")
    assert kinds(acts, Answer)[0].reply.result == ERR and kinds(acts, Log) == []
    acts = p.received(1, b"OK\n") + p.received(1, b"OK\n") + p.received(1, b"OK\n")   # queue back to 1
    assert any("no longer overloaded after dropping 2" in log.message for log in kinds(acts, Log))


def test_queue_overload_die():
    p, clock = pool("1 startup=1 queue-size=0")
    p.start()
    p.submit("a", "t0")
    p.submit("b", "t1")                        # queued past queue-size 0: overloaded from now
    clock.now += OVERLOAD_GRACE + 1
    acts = p.submit("c", "t2")
    assert kinds(acts, Fatal) and kinds(acts, Answer) == []     # Squid exits: no answer to anyone


def test_busy_warning_once_per_interval():
    p, clock = pool("1 startup=1 queue-size=1")
    p.start()
    p.submit("a", "t0")
    acts = p.submit("b", "t1")
    assert any("processes are busy" in log.message for log in kinds(acts, Log))
    acts = p.submit("c", "t2")
    assert not kinds(acts, Log)


def test_will_overload_for_bypass():
    p, _ = pool("1 startup=1 queue-size=0")
    p.start()
    assert not p.will_overload()
    p.submit("a", "t0")
    assert p.will_overload()


def test_timeout_with_channels_answers_and_ignores_late_reply():
    p, clock = pool("1 startup=1 concurrency=2", timeout=5)
    p.start()
    p.submit("a", "t0")
    clock.now += 5
    acts = p.tick()
    assert kinds(acts, Answer)[0].reply.result == TIMEDOUT and not kinds(acts, Kill)
    acts = p.received(1, b"1 OK\n")
    assert kinds(acts, Answer) == [] and kinds(acts, Log) == []


def test_timeout_configured_reply_and_retry():
    p, clock = pool("1 startup=1 concurrency=2", timeout=5, timed_out_reply="OK rewrite-url=http://x/")
    p.start()
    p.submit("a", "t0")
    clock.now += 6
    answer = kinds(p.tick(), Answer)[0]
    assert answer.reply.result == OK and answer.reply.get("rewrite-url") == "http://x/"
    p, clock = pool("1 startup=1 concurrency=2", timeout=5, retry_timed_out=True)
    p.start()
    p.submit("a", "t0")
    clock.now += 6
    acts = p.tick()
    assert kinds(acts, Answer) == [] and kinds(acts, Write) == [Write(1, b"2 a\n")]


def test_timeout_without_channels_replaces_the_stuck_child():
    p, clock = pool("2 startup=1", timeout=5)
    p.start()
    p.submit("a", "t0")
    clock.now += 5
    acts = p.tick()
    assert kinds(acts, Answer)[0].reply.result == TIMEDOUT
    assert kinds(acts, Kill) == [Kill(1)] and kinds(acts, Spawn) == [Spawn(2)]
    assert p.exited(1) == []                   # ended on purpose: no warning, no second start
    assert kinds(p.submit("b", "t1"), Write) == [Write(2, b"b\n")]


def test_overflowing_child_is_killed_and_replaced():
    p, _ = pool("1 startup=1")
    p.start()
    p.submit("a", "t0")
    acts = p.received(1, b"x" * (2 << 20))
    assert kinds(acts, Kill) == [Kill(1)] and "overflowed" in kinds(acts, Log)[0].message
    acts = p.exited(1)
    assert kinds(acts, Answer)[0].reply.result == UNKNOWN


def test_stateful_reservation_keeps_the_handshake_on_one_child():
    p, clock = pool("2 startup=2", stateful=True)
    p.start()
    p.submit("YR token1", "t0")
    answer = kinds(p.received(1, b"TT challenge\n"), Answer)[0]
    assert answer.child == 1 and answer.reply.result == TT
    p.reserve(1)
    assert kinds(p.submit("YR other", "t1"), Write) == [Write(2, b"YR other\n")]
    assert kinds(p.submit("KK token2", "t2", reservation=1), Write) == [Write(1, b"KK token2\n")]
    p.received(1, b"AF tok alice\n")
    p.received(2, b"TT x\n")
    clock.now += 65
    acts = p.tick()
    assert any("reservation expired" in log.message for log in kinds(acts, Log))


def test_shutdown_closes_input_and_answers_queue():
    p, _ = pool("1 startup=1")
    p.start()
    p.submit("a", "t0")
    p.submit("b", "t1")
    acts = p.shutdown()
    assert kinds(acts, CloseInput) == [CloseInput(1)]
    assert [a.token for a in kinds(acts, Answer)] == ["t1"]
    assert kinds(p.submit("c", "t2"), Answer)[0].reply.result == UNKNOWN


def test_request_must_be_one_line():
    p, _ = pool()
    with pytest.raises(ValueError):
        p.submit("a\nb", "t")
