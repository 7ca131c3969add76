"""Bad input and faults around helpers, with the real proxy (issue 13): garbage
and oversized Proxy-Authorization from raw sockets, helpers that crash, hang,
answer garbage or answer out of order (tests/helpers/fake_helper.py), every
helper busy, a rewriter that does not answer in time, credentials kept out of
logs.  Nothing is forwarded unauthenticated, nothing crashes the proxy (the
make_proxy fixture fails a test whose proxy logged a traceback)."""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import raw_request
from tests.proxyproc import wait_for
from tests.test_auth_e2e import REQUIRE, curl, log_fields

# about 15 s of wall-clock time: on a fresh checkout (no timings in pytest's cache) it starts first
pytestmark = pytest.mark.slow

FAKE = Path(__file__).parent / "helpers" / "fake_helper.py"
# A request a hung helper holds stays until its client resets the connection (a
# half-closed client still gets its answer) or the proxy stops; these tests stop
# the proxy at once rather than wait shutdown_lifetime for it.
HELD = "shutdown_lifetime 1 second\n"


def fake(mode: str, *extra: str) -> str:
    return " ".join([sys.executable, str(FAKE), mode, *extra])


def basic(credentials: bytes) -> bytes:
    return b"Basic " + base64.b64encode(credentials)


def ask(proxy, origin, path: str, authorization: bytes | None = None, extra: bytes = b"") -> bytes:
    head = b"GET " + origin.url(path).encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    if authorization is not None:
        head += b"Proxy-Authorization: " + authorization + b"\r\n"
    return raw_request(proxy.port, head + extra + b"\r\n", timeout=15)


# ---------------------------------------------------------------- hostile credentials
GARBAGE = [
    b"Basic !!!!", b"Basic", b"basic " + base64.b64encode(b"nocolon"), b"Basic " + base64.b64encode(b":pw"),
    b"Basic " + base64.b64encode(b"al\x00ice:pw"), b"Basic " + base64.b64encode(b"alice:p\r\nX-Evil: 1"),
    b"Basic " + base64.b64encode(b"alice:"), b"NTLM", b"Negotiate a b", b"Digest nonsense", b"Bearer x",
    b"Basic " + b"QUFB" * 12000, b"\xc3\xa9\xc3\xa9 \xc3\xa9", b"Basic YWxpY2U6cHc=\x7f",
]


def test_garbage_credentials_get_407_and_nothing_is_forwarded(make_proxy, origin):
    proxy = make_proxy(f"auth_param basic program {fake('ok')}\n" + REQUIRE)
    for n, value in enumerate(GARBAGE):
        path = f"/echo?garbage{n}"
        reply = ask(proxy, origin, path, value)
        assert reply.startswith((b"HTTP/1.1 407 ", b"HTTP/1.1 400 ")), (value[:40], reply[:80])
        assert origin.count(path) == 0


def test_credentials_larger_than_the_head_limit_are_431_like_squid(make_proxy, origin):
    proxy = make_proxy(f"auth_param basic program {fake('ok')}\n" + REQUIRE)
    reply = ask(proxy, origin, "/echo?huge", b"Basic " + b"A" * 70000)
    assert reply.startswith(b"HTTP/1.1 431 ")
    assert origin.count("/echo?huge") == 0


def test_two_proxy_authorization_fields_take_the_first(make_proxy, origin):
    proxy = make_proxy(f"auth_param basic program {fake('ok')}\n" + REQUIRE)
    reply = ask(proxy, origin, "/echo?two", basic(b"alice:pw"), b"Proxy-Authorization: Basic !!!!\r\n")
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b"Proxy-Authorization" not in reply.split(b"\r\n\r\n", 1)[1]      # neither went upstream


def test_credentials_never_reach_a_log_or_a_page(make_proxy, origin):
    proxy = make_proxy(f"auth_param basic program {fake('ok')}\n" + REQUIRE, start=False)
    with proxy.config_path.open("a") as f:        # a second log that writes every request field
        f.write(f"logformat everything %ru %un %>h\naccess_log {proxy.dir}/full.log everything\n")
    proxy.start()
    secret = b"alice:s3cr3t-pw"
    ok = ask(proxy, origin, "/echo?secret", basic(secret))
    assert ok.startswith(b"HTTP/1.1 200 ")
    bad = ask(proxy, origin, "/echo?secret2", b"Basic s3cr3t!!")
    assert bad.startswith(b"HTTP/1.1 407 ")
    full = proxy.dir / "full.log"
    assert wait_for(lambda: full.exists() and full.read_text().count("\n") >= 2, 5)
    for text in (full.read_text(), proxy.access_log.read_text(), proxy.read_cache_log(), bad.decode("latin-1")):
        assert "s3cr3t" not in text and base64.b64encode(secret).decode() not in text
    assert "Proxy-Authorization:%20Basic%20%5Bhidden%5D" in full.read_text()


# ---------------------------------------------------------------- helpers that misbehave
def test_a_helper_that_crashes_is_replaced_and_requests_go_on(make_proxy, origin):
    proxy = make_proxy(f"auth_param basic program {fake('crash-after-2')}\nauth_param basic children 2\n" + REQUIRE)
    statuses = [curl(proxy, origin.url(f"/echo?c{n}"), "-U", f"user{n}:pw").status for n in range(6)]
    assert statuses.count(200) >= 4 and set(statuses) <= {200, 407}
    assert "basicauthenticator #" in proxy.read_cache_log() and "exited" in proxy.read_cache_log()


def test_a_helper_that_cannot_start_denies_quickly_and_the_proxy_serves_on(make_proxy, origin):
    proxy = make_proxy(f"auth_param basic program {fake('crash-at-start')}\n"
                       "acl users proxy_auth REQUIRED\nacl open urlpath_regex ^/echo\\?open\n"
                       "http_access allow open\nhttp_access allow users\nhttp_access deny all\n")
    assert curl(proxy, origin.url("/echo?x"), "-U", "alice:pw").status == 407
    assert curl(proxy, origin.url("/echo?open")).status == 200
    assert wait_for(lambda: "crashing too rapidly" in proxy.read_cache_log(), 5)


def test_a_hung_helper_holds_only_its_own_request(make_proxy, origin):
    proxy = make_proxy(f"auth_param basic program {fake('hang-on-slow')}\nauth_param basic children 3 startup=3\n"
                       + REQUIRE + HELD)
    stuck = subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3", "-x",
                              proxy.url, "-U", "slow:pw", origin.url("/echo?stuck")], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert curl(proxy, origin.url("/echo?other"), "-U", "alice:pw").status == 200
        assert curl(proxy, origin.url("/echo?open")).status == 407
    finally:
        assert stuck.communicate(timeout=20)[0] == "000"       # it gave up waiting; never let through
    assert origin.count("/echo?stuck") == 0
    assert curl(proxy, origin.url("/echo?after"), "-U", "bob:pw").status == 200


def test_garbage_answers_deny(make_proxy, origin):
    proxy = make_proxy(f"auth_param basic program {fake('garbage')}\n" + REQUIRE)
    assert curl(proxy, origin.url("/echo?g"), "-U", "alice:pw").status == 407
    assert origin.count("/echo?g") == 0


def test_answers_out_of_order_reach_the_right_requests(make_proxy, origin):
    proxy = make_proxy(f"external_acl_type who children-max=1 concurrency=2 %>ha{{X-Who}} "
                       f"{fake('reverse-pairs', '--concurrency')}\n"
                       "acl known external who\nhttp_access allow known\nhttp_access deny all\n")
    results = {}

    def fetch(who):
        results[who] = curl(proxy, origin.url(f"/echo?{who}"), "-H", f"X-Who: {who}").status

    threads = [threading.Thread(target=fetch, args=(w,)) for w in ("ann", "ben")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {"ann": 200, "ben": 200}
    assert log_fields(proxy, "/echo?ann")[7] == "ann" and log_fields(proxy, "/echo?ben")[7] == "ben"


# ---------------------------------------------------------------- every helper busy, timeouts
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def queued(proxy, helper: str) -> float | None:
    """The helper's queue length as /metrics shows it."""
    import urllib.request
    with urllib.request.urlopen(f"{proxy.url}/metrics", timeout=10) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(f'squidpy_helper_queue_length{{helper="{helper}"}}'):
                return float(line.split()[-1])
    return None


def overloaded_for_three_minutes(make_proxy, origin, tmp_path, action: str):
    """One basic helper child stuck on its first request, ``queue-size=1`` and two more
    waiting (the queue past its size: overloaded), then the proxy's clock moved 200
    seconds on (libfaketime under the proxy, its offset read from a file at each clock
    call; Squid acts once the overload has lasted 180 seconds).  Returns the proxy and
    the held sockets."""
    import socket
    assert Path(LIBFAKETIME).exists(), "faketime is missing: .ci/run installs it"
    offset = tmp_path / "clock-offset"
    offset.write_text("+0\n")
    proxy = make_proxy(f"auth_param basic program {fake('hang-on-slow')}\n"
                       f"auth_param basic children 1 startup=1 queue-size=1 on-persistent-overload={action}\n"
                       "http_access allow localhost manager\n" + REQUIRE + HELD,
                       env={"LD_PRELOAD": LIBFAKETIME, "FAKETIME_TIMESTAMP_FILE": str(offset),
                            "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
    held = []
    for n in range(3):
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        sock.sendall(b"GET " + origin.url(f"/echo?slow{n}").encode() + b" HTTP/1.1\r\nHost: x\r\n"
                     b"Proxy-Authorization: " + basic(b"slow%d:pw" % n) + b"\r\n\r\n")
        held.append(sock)
        assert wait_for(lambda: queued(proxy, "basicauthenticator") == max(n, 0), 10), n
    offset.write_text("+200\n")
    return proxy, held


def test_on_persistent_overload_die_stops_the_proxy_as_squid_does(make_proxy, origin, tmp_path):
    proxy, held = overloaded_for_three_minutes(make_proxy, origin, tmp_path, "die")
    try:
        reply = ask(proxy, origin, "/echo?one-more", basic(b"alice:pw"))
        assert reply == b""                 # the proxy stops instead of answering
        assert proxy.proc.wait(15) == 1
    finally:
        for sock in held:
            sock.close()
    log = proxy.read_cache_log()
    assert log.count("FATAL: Too many queued basicauthenticator requests; see on-persistent-overload.") == 1, log
    assert [origin.count(p) for p in ("/echo?slow0", "/echo?slow1", "/echo?slow2", "/echo?one-more")] == [0] * 4


def test_on_persistent_overload_err_answers_err_without_the_helper(make_proxy, origin, tmp_path):
    proxy, held = overloaded_for_three_minutes(make_proxy, origin, tmp_path, "ERR")
    try:
        # the only child is still stuck: an answer at all means nobody waited for it
        for n in range(2):
            reply = ask(proxy, origin, f"/echo?dropped{n}", basic(b"alice:pw"))
            assert reply.startswith(b"HTTP/1.1 407 "), reply[:200]
            assert log_fields(proxy, f"/echo?dropped{n}")[3:4] == ["TCP_DENIED/407"]
        assert queued(proxy, "basicauthenticator") == 2 and proxy.proc.poll() is None
    finally:
        for sock in held:
            sock.close()
    log = proxy.read_cache_log()
    assert log.count("WARNING: dropping requests to overloaded basicauthenticator helper configured with "
                     "on-persistent-overload=err") == 1, log
    assert "FATAL" not in log
    assert [origin.count(p) for p in ("/echo?slow0", "/echo?slow1", "/echo?slow2", "/echo?dropped0",
                                      "/echo?dropped1")] == [0] * 5


def test_every_rewriter_busy_with_url_rewrite_bypass_passes_requests_unchanged(make_proxy, origin):
    proxy = make_proxy("acl local src 127.0.0.0/8\nhttp_access allow local\nhttp_access deny all\n"
                       f"url_rewrite_program {fake('hang-on-slow')}\nurl_rewrite_children 1 startup=1\n"
                       "url_rewrite_bypass on\n" + HELD)
    # the one rewriter never answers a URL with 'slow' in it: it stays busy
    stuck = subprocess.Popen(["curl", "-s", "-o", "/dev/null", "--max-time", "4", "-x", proxy.url,
                              origin.url("/echo?slow")])
    try:
        time.sleep(0.5)
        ok = curl(proxy, origin.url("/echo?bypassed"))
        assert ok.status == 200
    finally:
        stuck.terminate()       # its answer is not the question: no need to wait out --max-time
        stuck.wait(20)


def test_every_external_helper_busy_refuses_without_waiting(make_proxy, origin):
    proxy = make_proxy(f"external_acl_type slowpoke children-max=1 queue-size=0 %>ha{{X-Who}} {fake('hang-on-slow')}\n"
                       "acl ok external slowpoke\nhttp_access allow ok\nhttp_access deny all\n" + HELD)
    stuck = subprocess.Popen(["curl", "-s", "-o", "/dev/null", "--max-time", "4", "-x", proxy.url,
                              "-H", "X-Who: slow", origin.url("/echo?slow")])
    try:
        assert wait_for(lambda: "Starting new slowpoke helpers" in proxy.read_cache_log(), 5)
        time.sleep(0.5)
        busy = curl(proxy, origin.url("/echo?busy"), "-H", "X-Who: busy")
        assert busy.status == 403
        assert wait_for(lambda: "queue full" in proxy.read_cache_log(), 5)
    finally:
        stuck.terminate()       # its answer is not the question: no need to wait out --max-time
        stuck.wait(20)


@pytest.mark.parametrize("action, status", [("fail", 500), ("bypass", 200)])
def test_rewriter_timeout(make_proxy, origin, action, status):
    proxy = make_proxy("acl local src 127.0.0.0/8\nhttp_access allow local\nhttp_access deny all\n"
                       f"url_rewrite_program {fake('hang-on-slow')}\nurl_rewrite_children 2\n"
                       f"url_rewrite_timeout 1 second on_timeout={action}\n")
    answer = curl(proxy, origin.url("/echo?slow"))
    if action == "bypass":
        assert answer.status == 200 and origin.count("/echo?slow") == 1     # passed on unchanged
    else:
        assert answer.status == status and b"ERR_GATEWAY_FAILURE" in answer.body
    assert curl(proxy, origin.url("/echo?then")).status == 200
