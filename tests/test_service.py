"""End to end: the squidpy command, signals (reconfigure, rotate, shutdown) and the pid file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import uuid

from tests.conftest import LOCAL_POLICY, read_response
from tests.proxyproc import wait_for


def squidpy(*args, env=None, timeout=30):
    return subprocess.run([sys.executable, "-m", "squidpy", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def get(port, url, sock=None):
    s = sock or socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    status, headers, body = read_response(s.makefile("rb"))
    if sock is None:
        s.close()
    return status, body


# ------------------------------------------------------------ parse

def test_parse_ok(tmp_path):
    conf = tmp_path / "ok.conf"
    conf.write_text(LOCAL_POLICY)
    out = squidpy("parse", "-f", str(conf))
    assert out.returncode == 0
    assert "OK" in out.stdout


def test_parse_reports_every_error_with_file_and_line(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("http_port 3128\nhttp_access allow nobody\nconnect_timeout 1 lightyear\nfrobnicate on\n")
    out = squidpy("parse", "-f", str(conf))
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert lines[0] == f"{conf}:2: http_access: ACL 'nobody' is used before it is defined (define it with an 'acl nobody ...' line first)"
    assert lines[1].startswith(f"{conf}:3: connect_timeout: unknown time unit 'lightyear'")
    assert lines[2] == f"{conf}:4: unknown directive 'frobnicate'"


def test_parse_default_configuration():
    out = squidpy("parse")
    assert out.returncode == 0, out.stderr


def test_python_dash_m_and_version():
    out = squidpy("--version")
    assert out.returncode == 0 and "squidpy" in out.stdout


# ------------------------------------------------------------ reconfigure

def test_reconfigure_applies_new_rules_without_dropping_connections(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY)
    live = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    assert get(proxy.port, origin.url("/size/3"), live) == (200, b"xxx")
    proxy.config_path.write_text(proxy.config_path.read_text().replace(
        "http_access allow local", "acl blocked port %d\nhttp_access deny blocked\nhttp_access allow local" % origin.port))
    out = squidpy("signal", "reconfigure", "-f", str(proxy.config_path))
    assert out.returncode == 0, out.stderr
    assert wait_for(lambda: "Reconfigured" in proxy.read_cache_log(), 10)
    # the connection opened before the reload still works, under the new rules
    status, _ = get(proxy.port, origin.url("/size/3"), live)
    assert status == 403
    live.close()


def test_invalid_reconfigure_keeps_the_running_configuration(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY)
    good = proxy.config_path.read_text()
    proxy.config_path.write_text(good + "http_access allow nonexistent_acl\n")
    proxy.signal(signal.SIGHUP)
    assert wait_for(lambda: "reconfigure failed" in proxy.read_cache_log(), 10)
    assert "nonexistent_acl" in proxy.read_cache_log()
    assert get(proxy.port, origin.url("/size/2")) == (200, b"xx")
    assert proxy.proc.poll() is None


def test_reconfigure_with_a_cache_dir_it_cannot_use_changes_nothing(make_proxy, origin, tmp_path):
    """All or nothing: the ACL change that came with a bad cache_dir does not take effect."""
    proxy = make_proxy(LOCAL_POLICY)
    (tmp_path / "file").write_text("")
    good = proxy.config_path.read_text()
    proxy.config_path.write_text(good.replace("http_access allow local", f"acl blocked port {origin.port}\n"
                                              "http_access deny blocked\nhttp_access allow local")
                                 + f"cache_dir diskcache {tmp_path}/file/cache 10\n")
    proxy.signal(signal.SIGHUP)
    assert wait_for(lambda: "reconfigure failed" in proxy.read_cache_log(), 10)
    log = proxy.read_cache_log()
    assert f"reconfigure: cache_dir {tmp_path}/file/cache: Not a directory (a part of the path is a file)" in log
    assert "reconfigure failed: the previous configuration stays in force, unchanged" in log
    assert get(proxy.port, origin.url("/size/2")) == (200, b"xx")         # the ACL change did not happen
    # once the whole configuration can be applied, it is
    proxy.config_path.write_text(proxy.config_path.read_text().replace(f"{tmp_path}/file/cache", f"{tmp_path}/cache"))
    proxy.signal(signal.SIGHUP)
    assert wait_for(lambda: "Reconfigured" in proxy.read_cache_log(), 10)
    assert get(proxy.port, origin.url("/size/2"))[0] == 403
    assert (tmp_path / "cache" / "cache.db").exists()


def test_reconfigure_with_a_port_it_cannot_bind_changes_nothing(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        proxy.config_path.write_text(
            proxy.config_path.read_text().replace("http_access allow local", f"acl blocked port {origin.port}\n"
                                                  "http_access deny blocked\nhttp_access allow local")
            + f"http_port 127.0.0.1:{free}\nhttp_port 127.0.0.1:{taken}\n")
        proxy.signal(signal.SIGHUP)
        assert wait_for(lambda: "reconfigure failed" in proxy.read_cache_log(), 10)
    log = proxy.read_cache_log()
    assert f"reconfigure: cannot listen on 127.0.0.1:{taken}: Address already in use" in log
    assert f"Closed HTTP port 127.0.0.1:{free} again" in log            # the one that did open is closed
    assert wait_for(lambda: _refused(free), 5)     # (the close itself follows the log line)
    assert get(proxy.port, origin.url("/size/2")) == (200, b"xx")         # the old rules, whole
    assert proxy.proc.poll() is None


def test_reconfigure_opens_and_closes_ports(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY)
    text = proxy.config_path.read_text()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        second = probe.getsockname()[1]
    proxy.config_path.write_text(text + f"http_port 127.0.0.1:{second} name=second\n")
    proxy.signal(signal.SIGHUP)
    assert wait_for(lambda: f"127.0.0.1:{second}" in proxy.read_cache_log(), 10)
    assert get(second, origin.url("/size/1")) == (200, b"x")
    # the first port survived untouched
    assert get(proxy.port, origin.url("/size/1")) == (200, b"x")
    # and taking the line out again closes the second port; a connection it accepted
    # that had not sent anything yet (a bare descriptor, seam.Waiting) lives on, as in Squid
    silent = socket.create_connection(("127.0.0.1", second), timeout=10)
    # accepted first (one still in the port's backlog when it closes is reset, as in Squid)
    fds = f"http://127.0.0.1:{proxy.port}/squid-internal-mgr/filedescriptors"
    assert wait_for(lambda: f" 127.0.0.1:{silent.getsockname()[1]} " in get(proxy.port, fds)[1].decode(), 10)
    proxy.config_path.write_text(text)
    proxy.signal(signal.SIGHUP)
    assert wait_for(lambda: "Closed HTTP port" in proxy.read_cache_log(), 10)
    assert wait_for(lambda: _refused(second), 5)
    assert get(proxy.port, origin.url("/size/1")) == (200, b"x")
    with silent:
        assert get(second, origin.url("/size/2"), sock=silent) == (200, b"xx")


# ------------------------------------------------------------ rotate

def test_rotate_renames_logs(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "logfile_rotate 3\n")
    get(proxy.port, origin.url("/size/1"))
    assert proxy.log_lines(1)
    out = squidpy("signal", "rotate", "-f", str(proxy.config_path))
    assert out.returncode == 0, out.stderr
    rotated = proxy.access_log.with_name("access.log.0")
    assert wait_for(rotated.exists, 10)
    assert "TCP_MISS/200" in rotated.read_text()
    get(proxy.port, origin.url("/size/2"))
    assert wait_for(lambda: proxy.access_log.exists() and "size/2" in proxy.access_log.read_text(), 5)
    assert "size/2" not in rotated.read_text()


# ------------------------------------------------------------ shutdown

def test_graceful_shutdown_lets_a_transaction_finish(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "shutdown_lifetime 10 seconds\n")
    result = {}
    path = f"/slow/1.5?{uuid.uuid4().hex}"

    def slow():
        result["r"] = get(proxy.port, origin.url(path))

    t = threading.Thread(target=slow)
    t.start()
    assert wait_for(lambda: origin.count(path) == 1, 10)        # the transaction is under way
    out = squidpy("signal", "shutdown", "-f", str(proxy.config_path))
    assert out.returncode == 0
    # no new connections are accepted once shutdown began
    assert wait_for(lambda: _refused(proxy.port), 5)
    t.join(10)
    assert result["r"] == (200, b"slow\n")
    assert proxy.proc.wait(10) == 0
    assert proxy.log_line("/slow/1.5")
    assert not proxy.pid_file.exists()


def test_shutdown_lifetime_bounds_the_wait(make_proxy, origin):
    """A transaction that would last a minute does not hold a shutdown_lifetime of one
    second: the proxy is gone long before (the deadline below is a bound, not a measure)."""
    proxy = make_proxy(LOCAL_POLICY + "shutdown_lifetime 1 second\n")
    path = f"/slow/60?{uuid.uuid4().hex}"
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=30)
    s.sendall(f"GET {origin.url(path)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert wait_for(lambda: origin.count(path) == 1, 10)        # the transaction is under way
    proxy.signal(signal.SIGTERM)
    assert proxy.proc.wait(30) == 0
    try:
        cut = s.recv(65536)
    except ConnectionResetError:
        cut = b""
    assert b"slow" not in cut                   # cut short, not answered
    s.close()


def _refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


def test_sigint_stops_too(make_proxy):
    proxy = make_proxy(LOCAL_POLICY)
    proxy.signal(signal.SIGINT)
    assert proxy.proc.wait(10) == 0


# ------------------------------------------------------------ pid file, defaults

def test_second_instance_refuses_to_start(make_proxy, tmp_path):
    first = make_proxy(LOCAL_POLICY)
    conf = tmp_path / "second.conf"
    conf.write_text(LOCAL_POLICY + f"http_port 127.0.0.1:0\npid_filename {first.pid_file}\n"
                    f"cache_log {tmp_path}/c.log\naccess_log {tmp_path}/a.log\n")
    out = squidpy("run", "-f", str(conf), timeout=20)
    assert out.returncode == 1
    assert "already running" in out.stderr


def test_signal_without_running_proxy(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text(f"pid_filename {tmp_path}/none.pid\n")
    out = squidpy("signal", "reconfigure", "-f", str(conf))
    assert out.returncode == 1 and "no running squidpy" in out.stderr


def test_default_configuration_runs_without_root_under_xdg_dirs(tmp_path):
    """`squidpy run` with no -f: Squid's default policy, logs under $XDG_STATE_HOME."""
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    port_probe = socket.socket()
    port_probe.bind(("127.0.0.1", 3128))     # the default port must be free for this test
    port_probe.close()
    proc = subprocess.Popen([sys.executable, "-m", "squidpy", "run"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        state = tmp_path / "state" / "squidpy"
        assert wait_for(lambda: (state / "cache.log").exists() and "Accepting" in (state / "cache.log").read_text(), 15)
        assert (state / "squidpy.pid").read_text().strip() == str(proc.pid)
        # the default policy denies to_localhost: a loopback origin is refused, and logged
        with socket.create_connection(("127.0.0.1", 3128), timeout=10) as s:
            s.sendall(b"GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, headers, _ = read_response(s.makefile("rb"))
        assert status == 403
        assert wait_for(lambda: (state / "access.log").exists() and "TCP_DENIED/403" in (state / "access.log").read_text(), 5)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
