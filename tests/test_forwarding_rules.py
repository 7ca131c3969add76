"""Retries on the next candidate: squidpy.peers.forwarding's rules, and what Squid 5.7 does."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from squidpy.peers.forwarding import NO_CANDIDATE, Forwarding, reforwardable_status
from tests.origin import Origin
from tests.squidproc import child_config, free_port, get_through, wait_until_forwarding


def test_statuses_worth_another_candidate():
    assert [s for s in (403, 500, 501, 502, 503, 504, 404, 200) if reforwardable_status(s, False)] == [502, 504]
    assert [s for s in (403, 500, 501, 502, 503, 504, 404) if reforwardable_status(s, True)] == [
        403, 500, 501, 502, 503, 504]


def test_when_a_failed_attempt_may_be_retried():
    fwd = Forwarding(max_tries=3)
    fwd.attempt()
    assert fwd.may_retry("POST", connected=False, body_sent=False, reply_sent=False)      # nothing was sent
    assert fwd.may_retry("GET", connected=True, body_sent=False, reply_sent=False)
    assert fwd.may_retry("PUT", connected=True, body_sent=False, reply_sent=False)
    assert not fwd.may_retry("POST", connected=True, body_sent=False, reply_sent=False)
    assert not fwd.may_retry("PUT", connected=True, body_sent=True, reply_sent=False)
    assert not fwd.may_retry("GET", connected=True, body_sent=False, reply_sent=True)
    fwd.attempt()
    fwd.attempt()
    assert fwd.exhausted and not fwd.may_retry("GET", connected=False, body_sent=False, reply_sent=False)


def test_when_a_reply_may_be_forwarded_elsewhere():
    fwd = Forwarding(max_tries=25)
    fwd.attempt()
    assert fwd.may_reforward(502, False, body_sent=False)
    assert not fwd.may_reforward(503, False, body_sent=False)
    assert fwd.may_reforward(503, True, body_sent=False)
    assert not fwd.may_reforward(504, False, body_sent=True)
    assert not Forwarding(max_tries=1, tries=1).may_reforward(502, False, body_sent=False)


# ------------------------------------------------------------ Squid 5.7, measured

class FixedParent(ThreadingHTTPServer):
    """A parent proxy that answers every request with one status, counting them."""

    daemon_threads = True

    def __init__(self, status: int):
        outer = self
        self.status, self.count = status, 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.count += 1
                body = b"fixed parent\n"
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def test_squid_with_every_parent_dead_and_never_direct(make_squid):
    squid = make_squid(child_config([f"cache_peer 127.0.0.1 parent {free_port()} 0 no-query no-digest name=gone"]))
    status, headers, _ = get_through(squid.port, "http://www.example.test/x")
    assert (status, headers["x-squid-error"]) == (NO_CANDIDATE[1], f"{NO_CANDIDATE[0]} 0")
    assert squid.log_line("TCP_MISS/502 ") and squid.log_line("HIER_NONE/-")


@pytest.mark.parametrize("first_status, retried", [(502, True), (504, True), (503, False), (500, False)])
def test_squid_tries_the_next_parent_after_a_502_or_504(make_squid, first_status, retried):
    bad = FixedParent(first_status)
    good = Origin().start()
    try:
        squid = make_squid(child_config([
            f"cache_peer 127.0.0.1 parent {bad.port} 0 no-query no-digest name=bad",
            f"cache_peer 127.0.0.1 parent {good.port} 0 no-query no-digest name=good"]))
        assert wait_until_forwarding(squid.port, good.url("/size/1?warm"))
        bad.count = 0
        status, _, body = get_through(squid.port, good.url("/size/5"))
        assert bad.count == 1
        if retried:
            assert (status, body) == (200, b"xxxxx")
            assert squid.log_line("TCP_MISS/200 ") and squid.log_line("ANY_OLD_PARENT/127.0.0.1")
        else:
            assert status == first_status and body == b"fixed parent\n"
            assert squid.log_line(f"TCP_MISS/{first_status} ") and squid.log_line("FIRSTUP_PARENT/127.0.0.1")
    finally:
        bad.stop()
        good.stop()
