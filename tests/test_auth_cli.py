"""Who went where, from the command line (issue 13): `squidpy logs tail --user` and
`squidpy logs report` (top users, denials per user, each user's sites and bytes, on
the terminal and in the HTML page) over the log of a real proxy that authenticates
its users; `squidpy cache` against a proxy that asks for credentials."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

from tests.proxyproc import ProxyProcess, wait_for
from tests.test_auth_e2e import REQUIRE, curl
from tests.test_auth_faults import fake

ENV = dict(os.environ, TZ="UTC")


def squidpy(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "squidpy", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def test_tail_and_report_by_user_over_a_real_log(make_proxy, origin, tmp_path):
    helper = tmp_path / "helper.py"
    helper.write_text("import sys\nfor line in sys.stdin:\n"
                      "    user, password = line.split()\n"
                      "    print('OK' if password == 'pw' else 'ERR', flush=True)\n")
    proxy = make_proxy(f"auth_param basic program {sys.executable} {helper}\n"
                       "acl users proxy_auth REQUIRED\nacl carol proxy_auth carol\nacl big urlpath_regex /size/\n"
                       "http_access deny carol big\nhttp_access allow users\nhttp_access deny all\n")
    for user, path in [("alice", "/size/5000"), ("alice", "/size/100"), ("alice", "/echo/a"), ("bob", "/echo/b"),
                       ("carol", "/size/700"), ("carol", "/echo/c")]:
        curl(proxy, origin.url(path), "-U", f"{user}:pw")
    curl(proxy, origin.url("/echo/x"), "-U", "bob:wrong")
    curl(proxy, origin.url("/echo/anonymous"))
    assert wait_for(lambda: len(proxy.log_lines(8)) >= 8, 5)
    conf = str(proxy.config_path)

    tail = squidpy("logs", "tail", "-f", conf, "--user", "alice", "-n", "50")
    assert tail.returncode == 0, tail.stderr
    shown = [line for line in tail.stdout.splitlines() if line.strip()]
    assert len(shown) == 3 and all(" alice " in line for line in shown)
    denied = squidpy("logs", "tail", "-f", conf, "--user", "carol", "--denied")
    assert "/size/700" in denied.stdout and "/echo/c" not in denied.stdout

    html = tmp_path / "report.html"
    report = squidpy("logs", "report", "-f", conf, "--html", str(html))
    assert report.returncode == 0, report.stderr
    out = report.stdout
    users = re.search(r"Top 10 users\n(.*?)\n\n", out, re.S).group(1).splitlines()[2:]
    assert [line.split()[0] for line in users] == ["alice", "bob", "carol"]
    denied_users = re.search(r"Denied requests by user \(top 10\)\n(.*?)\n\n", out, re.S).group(1).splitlines()[2:]
    assert [line.split()[:2] for line in denied_users] == [["bob", "1"], ["carol", "1"]]
    sites = re.search(r"Sites per user .*?\n(.*?)\n\n", out, re.S).group(1).splitlines()[2:]
    assert sites[0].split()[:3] == ["alice", "127.0.0.1", "3"]      # user, site, requests (then bytes)
    assert [line.split()[0] for line in sites] == ["alice", "bob", "carol"]
    page = html.read_text()
    assert '<section id="users">' in page and "<details><summary>alice: 3 requests" in page
    assert 'id="table-denied-users"' in page


def test_cache_commands_say_the_proxy_wants_credentials(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proxy = ProxyProcess(tmp_path / "p", f"auth_param basic program {fake('ok')}\n" + REQUIRE,
                         listen=f"127.0.0.1:{port}")
    try:
        out = squidpy("cache", "stats", "-f", str(proxy.config_path))
    finally:
        proxy.stop()
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "asks for credentials for the cache manager (407)" in out.stderr


def test_cache_refusal_explained_when_an_external_acl_decides(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proxy = ProxyProcess(tmp_path / "p", f"external_acl_type never %SRC {fake('garbage')}\n"
                         "acl ok external never\nhttp_access allow ok\nhttp_access deny all\n",
                         listen=f"127.0.0.1:{port}")
    try:
        out = squidpy("cache", "stats", "-f", str(proxy.config_path))
    finally:
        proxy.stop()
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "the proxy refused the cache manager (403)" in out.stderr
    assert "external_acl_type never's helper decides" in out.stderr
