"""End to end: what `squidpy run` says when it starts, and how it refuses to start — one line
on stderr, a FATAL line in cache_log, exit status 1, no traceback, nothing left behind."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys

import pytest

from tests.conftest import LOCAL_POLICY
from tests.proxyproc import wait_for

ROOT = os.geteuid() == 0


def config(tmp_path, extra: str, port: int = 0) -> str:
    path = tmp_path / "squidpy.conf"
    path.write_text(LOCAL_POLICY + f"http_port 127.0.0.1:{port}\ncache_log {tmp_path}/cache.log\n"
                    f"access_log {tmp_path}/access.log\npid_filename {tmp_path}/squidpy.pid\n" + extra)
    return str(path)


def run(conf: str, timeout: float = 30, prefix: list[str] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "squidpy", "run", "-f", conf],
                          capture_output=True, text=True, timeout=timeout)


def assert_refused(out, tmp_path, line: str) -> None:
    """Exactly one line on stderr, the same reason as FATAL in cache_log, nothing left behind."""
    assert out.returncode == 1, out.stderr
    assert out.stderr.splitlines() == [f"squidpy: cannot start: {line}"]
    cache_log = (tmp_path / "cache.log").read_text()
    assert f"FATAL: {line}" in cache_log
    assert "Traceback" not in cache_log + out.stderr
    assert not (tmp_path / "squidpy.pid").exists()


def test_a_cache_dir_under_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    out = run(config(tmp_path, f"cache_dir diskcache {tmp_path}/file/cache 10\n"))
    assert_refused(out, tmp_path, f"cache_dir {tmp_path}/file/cache: Not a directory (a part of the path is a file)")


def test_a_cache_dir_on_a_read_only_file_system(tmp_path):
    """A tmpfs mounted read-only in a mount namespace of the squidpy process's own."""
    ro = tmp_path / "ro"
    ro.mkdir()
    conf = config(tmp_path, f"cache_dir diskcache {ro}/cache 10\n")
    unshare = ["unshare", "--mount", "--propagation", "private"] + ([] if ROOT else ["--map-root-user"])
    script = f'mount -t tmpfs -o ro,size=1m none "{ro}" && exec "{sys.executable}" -m squidpy run -f "{conf}"'
    out = subprocess.run([*unshare, "sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert_refused(out, tmp_path, f"cache_dir {ro}/cache: Read-only file system")


def test_a_cache_dir_squidpy_may_not_write(public_tmp):
    """Root made the directory, squidpy runs as someone else (cache_effective_user as root,
    a directory without write permission otherwise)."""
    d = public_tmp
    cache = d / "cache"
    cache.mkdir(mode=0o755)
    if ROOT:
        conf = config(d, f"cache_dir diskcache {cache} 10\ncache_effective_user nobody\n")
        who = "nobody"
    else:
        cache.chmod(0o555)
        conf = config(d, f"cache_dir diskcache {cache} 10\n")
        who = pwd.getpwuid(os.geteuid()).pw_name
    out = run(conf)
    assert out.returncode == 1
    assert len(out.stderr.splitlines()) == 1
    assert out.stderr.startswith(f"squidpy: cannot start: cache_dir {cache}: Permission denied (squidpy runs as {who})")
    assert "Traceback" not in out.stderr + (d / "cache.log").read_text()


def test_a_port_already_in_use_is_said_on_stderr_and_in_cache_log(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        out = run(config(tmp_path, "", port))
    assert_refused(out, tmp_path, f"cannot listen on 127.0.0.1:{port}: Address already in use")


def test_workers_that_cannot_start_stop_the_master_in_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    out = run(config(tmp_path, f"workers 2\ncache_dir diskcache {tmp_path}/file/cache 10\n"))
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"squidpy: cannot start: cache_dir {tmp_path}/file/cache: Not a directory (a part of the path is a file)"]
    assert "Traceback" not in (tmp_path / "cache.log").read_text()
    assert not (tmp_path / "squidpy.pid").exists()


def test_startup_says_which_configuration_which_ports_and_where_the_logs_are(tmp_path):
    conf = config(tmp_path, f"cache_dir diskcache {tmp_path}/cache 10\n")
    err = tmp_path / "stderr"
    with open(err, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "squidpy", "run", "-f", conf], stdout=subprocess.DEVNULL,
                                stderr=stderr)
    try:
        assert wait_for(lambda: err.read_text().count("\n") >= 3, 15)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    lines = err.read_text().splitlines()
    port = int(lines[1].rsplit(":", 1)[1])
    assert lines == [f"squidpy/0.1.0: configuration {conf}", f"squidpy/0.1.0 listening on 127.0.0.1:{port}",
                     f"squidpy/0.1.0: cache_log {tmp_path}/cache.log; access_log {tmp_path}/access.log"]
    cache_log = (tmp_path / "cache.log").read_text()
    for said in (f"Starting squidpy/0.1.0 (pid {proc.pid}) with {conf}", f"Accepting HTTP connections at 127.0.0.1:{port}",
                 f"access_log: {tmp_path}/access.log", f"cache_log: {tmp_path}/cache.log",
                 f"cache_dir: {tmp_path}/cache (10 MB)"):
        assert said in cache_log


@pytest.mark.parametrize("directive", ["cache_effective_user nosuchuserhere", "cache_effective_group nosuchgrouphere"])
def test_an_unknown_effective_user_or_group(tmp_path, directive):
    extra = directive + ("\ncache_effective_user nobody\n" if "group" in directive else "\n")
    conf = config(tmp_path, extra)
    if ROOT:
        out = run(conf)
        what, name = directive.split()
        assert out.returncode == 1
        assert out.stderr.splitlines() == [f"squidpy: cannot start: {what} '{name}' does not exist on this machine"]
        return
    # not started as root: there is nothing to give up, and the directives are ignored, as in Squid
    proc = subprocess.Popen([sys.executable, "-m", "squidpy", "run", "-f", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        log = tmp_path / "cache.log"
        assert wait_for(lambda: log.exists() and "Accepting HTTP connections" in log.read_text(), 15)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
