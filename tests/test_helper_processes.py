"""The helper manager with real helper processes: Debian's Squid helpers and a
misbehaving helper of our own (tests/helpers/fake_helper.py).  Each scenario runs
in its own reactor in a subprocess (tests/helper_driver.py)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

# about 11 s of wall-clock time: on a fresh checkout (no timings in pytest's cache) it starts first
pytestmark = pytest.mark.slow

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "helper_driver.py")
FAKE = os.path.join(HERE, "helpers", "fake_helper.py")
SQUID_HELPERS = "/usr/lib/squid"



def run(scenario: dict, env: dict | None = None, timeout: float = 30) -> tuple[list[dict], dict]:
    """Answers by request number, and the closing report."""
    scenario.setdefault("deadline", 10)
    out = subprocess.run([sys.executable, DRIVER, json.dumps(scenario)], capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, **(env or {})})
    assert "Traceback" not in out.stderr, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    answers = {line["answer"]: line for line in lines if "answer" in line}
    report = lines[-1]
    assert "deadline" not in report and not any("deadline" in line for line in lines), lines
    return [answers[i] for i in sorted(answers)], report


def fake(mode: str, concurrent: bool = False) -> list[str]:
    return [sys.executable, FAKE, mode] + (["--concurrency"] if concurrent else [])


# ---------------------------------------------------------------- Debian's helpers


def test_basic_ncsa_auth_with_htpasswd_file(tmp_path):
    pw = tmp_path / "passwd"
    htpasswd = shutil.which("htpasswd")
    if htpasswd:
        subprocess.run([htpasswd, "-bcB", str(pw), "alice", "wonder land"], check=True, capture_output=True)
        subprocess.run([htpasswd, "-bm", str(pw), "bob", "b%b:x"], check=True, capture_output=True)
    else:
        pytest.fail("htpasswd (apache2-utils) is missing: .ci/run installs it")
    answers, report = run({
        "command": [f"{SQUID_HELPERS}/basic_ncsa_auth", str(pw)], "children": "3",
        "requests": [{"line": "alice wonder%20land"}, {"line": "bob b%25b%3Ax"},
                     {"line": "alice wrong"}, {"line": "nobody x"}]})
    assert [a["result"] for a in answers] == ["OK", "OK", "ERR", "ERR"]
    assert report["pids_alive"] == 0


def test_digest_file_auth_gives_ha1(tmp_path):
    plain, hashed = tmp_path / "plain", tmp_path / "ha1"
    plain.write_text("alice:secret\n")
    hashed.write_text("bob:Squid proxy:" + hashlib.md5(b"bob:Squid proxy:pw").hexdigest() + "\n")
    answers, _ = run({
        "command": [f"{SQUID_HELPERS}/digest_file_auth", str(plain)], "children": "1",
        "requests": [{"line": '"alice":"Squid proxy"'}, {"line": '"carol":"Squid proxy"'}]})
    assert answers[0]["result"] == "OK"
    assert dict(answers[0]["notes"])["ha1"] == hashlib.md5(b"alice:Squid proxy:secret").hexdigest()
    assert answers[1]["result"] == "ERR" and dict(answers[1]["notes"])["message"] == "No such user"
    answers, _ = run({
        "command": [f"{SQUID_HELPERS}/digest_file_auth", "-c", str(hashed)], "children": "1",
        "requests": [{"line": '"bob":"Squid proxy"'}]})
    assert dict(answers[0]["notes"])["ha1"] == hashlib.md5(b"bob:Squid proxy:pw").hexdigest()


def test_ext_file_userip_acl(tmp_path):
    conf = tmp_path / "userip"
    conf.write_text("127.0.0.1 alice\n10.0.0.0/255.0.0.0 bob\n")
    answers, _ = run({
        "command": [f"{SQUID_HELPERS}/ext_file_userip_acl", "-f", str(conf)], "children": "2",
        "requests": [{"line": "127.0.0.1 alice"}, {"line": "10.1.2.3 bob"}, {"line": "127.0.0.1 bob"}]})
    assert [a["result"] for a in answers] == ["OK", "OK", "ERR"]


def test_url_fake_rewrite_with_channels():
    answers, _ = run({
        "command": [f"{SQUID_HELPERS}/url_fake_rewrite"], "children": "2 startup=1 concurrency=5",
        "requests": [{"line": "http://example.com/ 127.0.0.1/- - GET"} for _ in range(8)]})
    assert [a["result"] for a in answers] == ["ERR"] * 8
    # five at once on the first child, then a second child is started for the rest
    assert [a["child"] for a in answers] == [1] * 5 + [2] * 3


# ---------------------------------------------------------------- misbehaving helpers


def test_out_of_order_replies_matched_by_channel():
    answers, _ = run({"command": fake("reverse-pairs", True), "children": "1 startup=1 concurrency=10",
                      "requests": [{"line": w} for w in ["a", "b", "c", "d"]]})
    assert [dict(a["notes"])["user"] for a in answers] == ["a", "b", "c", "d"]


def test_crashing_helper_is_restarted_and_logged():
    answers, report = run({"command": fake("crash-after-2"), "children": "1 startup=1",
                           "requests": [{"line": w, "at": i * 0.2} for i, w in enumerate("abcde")]})
    assert [a["result"] for a in answers] == ["OK"] * 5
    assert [a["child"] for a in answers] == [1, 1, 2, 2, 3]
    assert any("#1 exited (exit status 1)" in line for line in report["log"])
    assert report["pids_alive"] == 0


def test_helper_that_cannot_start_backs_off_and_answers():
    answers, report = run({"command": fake("crash-at-start"), "children": "2 startup=1",
                           "requests": [{"line": "a", "at": 0.5}, {"line": "b", "at": 1.7}], "linger": 0.3})
    assert [a["result"] for a in answers] == ["Unknown", "Unknown"]
    assert any("crashing too rapidly" in line for line in report["log"])
    # backed off: a few restarts, not one per request or per tick
    assert report["stats"]["restarts"] <= 3


def test_missing_program():
    answers, report = run({"command": ["/nonexistent/helper"], "children": "1",
                           "requests": [{"line": "a"}]})
    assert answers[0]["result"] == "Unknown"
    assert any("exited" in line or "Cannot run" in line for line in report["log"])


def test_hung_request_times_out_without_stalling_others():
    answers, report = run({"command": fake("hang-on-slow", True), "children": "1 startup=1 concurrency=4",
                           "timeout": 1, "requests": [{"line": "slow"}, {"line": "fast"}, {"line": "quick"}]})
    assert answers[0]["result"] == "TimedOut" and answers[0]["t"] >= 1
    assert [a["result"] for a in answers[1:]] == ["OK", "OK"] and all(a["t"] < 1 for a in answers[1:])


def test_hung_child_without_channels_is_replaced():
    answers, report = run({"command": fake("hang-on-slow"), "children": "2 startup=2", "timeout": 1,
                           "requests": [{"line": "slow"}, {"line": "fast", "at": 0.1},
                                        {"line": "later", "at": 1.6}]})
    assert answers[0]["result"] == "TimedOut"
    assert answers[1]["result"] == "OK" and answers[1]["t"] < 1
    assert answers[2]["result"] == "OK"
    assert any("did not answer within 1 seconds" in line for line in report["log"])
    assert report["pids_alive"] == 0


def test_garbage_reply_is_unknown_result():
    answers, _ = run({"command": fake("garbage"), "children": "1", "requests": [{"line": "a"}]})
    assert answers[0]["result"] == "Unknown"


def test_broken_helper_retried(tmp_path):
    answers, report = run({"command": fake("bh-once"), "children": "1", "requests": [{"line": "a"}]},
                          env={"FAKE_STATE": str(tmp_path / "state")})
    assert answers[0]["result"] == "OK"
    assert any("attempt #1 of 2" in line for line in report["log"])


def test_overflowing_helper_is_disconnected():
    answers, report = run({"command": fake("overflow"), "children": "1", "requests": [{"line": "a"}]})
    assert answers[0]["result"] == "Unknown"
    assert any("overflowed" in line for line in report["log"])
    assert report["pids_alive"] == 0


def test_helper_stderr_goes_to_cache_log():
    answers, report = run({"command": fake("stderr-noise"), "children": "1", "requests": [{"line": "a"}]})
    assert answers[0]["result"] == "OK"
    assert "test #1: noise about a" in report["log"]


def test_many_requests_through_a_busy_pool():
    answers, report = run({"command": fake("ok", True), "children": "3 startup=1 concurrency=2",
                           "requests": [{"line": f"u{i}"} for i in range(200)]})
    assert [dict(a["notes"])["user"] for a in answers] == [f"u{i}" for i in range(200)]
    assert report["running_at_end"] <= 3 and report["pids_alive"] == 0


def test_stop_ends_every_child():
    _, report = run({"command": fake("ok"), "children": "5 startup=5", "requests": []})
    assert report["running_at_end"] == 5 and report["pids_alive"] == 0
