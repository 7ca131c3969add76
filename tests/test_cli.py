"""The squidpy command as an admin types it: one rule for the configuration option (-f FILE,
--config FILE, before or after a group's subcommand), no configuration mistaken for a log,
refusals explained by the line that made them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import LOCAL_POLICY
from tests.proxyproc import ProxyProcess

ENV = dict(os.environ, TZ="UTC")


def squidpy(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "squidpy", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


@pytest.fixture
def conf(tmp_path):
    """A configuration whose access log holds one line."""
    log = tmp_path / "access.log"
    log.write_text("1795341610.000    120 10.0.0.1 TCP_MISS/200 1000 GET http://www.example.com/a - "
                   "HIER_DIRECT/93.184.216.34 text/html\n")
    path = tmp_path / "squidpy.conf"
    path.write_text(LOCAL_POLICY + f"http_port 127.0.0.1:0\naccess_log {log} squid\n"
                    f"pid_filename {tmp_path}/squidpy.pid\ncache_log {tmp_path}/cache.log\n"
                    f"cache_dir diskcache {tmp_path}/cache 10\n")
    return path


@pytest.mark.parametrize("args", [
    ["parse", "-f", "{conf}"], ["parse", "--config", "{conf}"],
    ["check", "http://www.example.com/", "-f", "{conf}"],
    ["logs", "-f", "{conf}", "tail"], ["logs", "tail", "-f", "{conf}"], ["logs", "tail", "--config", "{conf}"],
    ["logs", "report", "-f", "{conf}"], ["logs", "--config", "{conf}", "report"],
    ["cache", "-f", "{conf}", "stats"], ["cache", "stats", "-f", "{conf}"], ["cache", "ls", "--config", "{conf}"],
])
def test_the_configuration_option_is_the_same_in_every_command(conf, args):
    out = squidpy(*[a.format(conf=conf) for a in args])
    assert out.returncode == 0, out.stderr
    if args[0] == "logs":
        assert "www.example.com" in out.stdout        # the log the configuration names was read
    if "stats" in args:
        assert "not running: figures read from the cache_dir" in out.stdout      # the cache_dir it names


def test_two_different_configurations_are_refused(conf, tmp_path):
    out = squidpy("cache", "-f", str(conf), "stats", "-f", str(tmp_path / "other.conf"))
    assert out.returncode == 2 and "two configuration files given" in out.stderr


def test_a_configuration_is_never_read_as_a_log(conf):
    for args in (["logs", "tail", str(conf)], ["logs", "tail", "-F", str(conf)], ["logs", "report", str(conf)]):
        out = squidpy(*args, timeout=20)
        assert out.returncode == 2, args
        assert f"{conf} is a squidpy configuration, not an access log: give it with -f {conf}" in out.stderr


def test_tail_f_without_a_file_says_what_f_means_now(conf):
    out = squidpy("logs", "tail", "-f")
    assert out.returncode == 2 and "-F (--follow) follows the log" in out.stderr
    out = squidpy("logs", "tail", "-f", "--denied")
    assert out.returncode == 2 and "-f names the configuration file" in out.stderr


def test_cache_names_the_http_access_line_that_refused_it(tmp_path):
    """Safe_ports without the proxy's own port: 'deny !Safe_ports' refuses the manager request,
    and that line is named, not the manager ACL."""
    text = ("visible_hostname proxy.test\nacl Safe_ports port 80 443\nhttp_access deny !Safe_ports\n"
            "http_access allow localhost manager\nhttp_access deny manager\nhttp_access allow localhost\n")
    proxy = ProxyProcess(tmp_path / "p", text, listen="127.0.0.1:0", start=False)
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proxy.config_path.write_text(proxy.config_path.read_text().replace("http_port 127.0.0.1:0",
                                                                       f"http_port 127.0.0.1:{port}"))
    proxy.start()
    try:
        out = squidpy("cache", "stats", "-f", str(proxy.config_path))
    finally:
        proxy.stop()
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert lines[0] == "squidpy cache: the proxy refused the cache manager (403)"
    # the request as the proxy saw it: addressed to itself, http://VISIBLE_HOSTNAME:PORT/...
    assert lines[1].startswith(f"DENY  GET http://proxy.test:{port}/squid-internal-mgr/info")
    assert f"decided by {proxy.config_path}:3: http_access deny !Safe_ports" in out.stderr
    assert "because !Safe_ports (port) matches (Safe_ports does not)" in out.stderr
    assert "manager" not in out.stderr.split("decided by")[1].split("\n")[0]
