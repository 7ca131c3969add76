"""Start the real squidpy as a subprocess on a free loopback port, for tests.

``ProxyProcess(tmp_path, config_text)`` writes a configuration (adding
``http_port 127.0.0.1:0``, logs and pid file in ``tmp_path`` unless the text
sets them), runs ``python -m squidpy run -f FILE``, and learns the port from
cache_log.  Everything stops by itself: every wait has a deadline.  The process is
forked from the worker's fork server after the imports (tests/proxyfork.py says when it
is not); ``fork=False`` execs a fresh interpreter, for a test of what one does at start.

The access_log it adds writes each line as the transaction ends (``buffer-size=1bytes``)
instead of once a second, so a test reading the log does not wait for the flush (as
Squid's default ``buffered_logs off`` does); a test of the buffering itself asks for
``flush_each_line=False`` or names its own ``access_log``.
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.proxyfork import popen

PORT_LINE = re.compile(r"Accepting (?:NAT intercepted |TPROXY intercepted )?HTTP connections at (\S+):(\d+)")
HTTPS_PORT_LINE = re.compile(r"Accepting HTTPS connections at (\S+):(\d+)")
ANY_HTTPS_PORT_LINE = re.compile(r"Accepting (?:NAT intercepted |TPROXY intercepted )?HTTPS connections at ")


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def public_dir(prefix: str, owner: str | None = None) -> Path:
    """A fresh directory under /tmp that every user may enter, for a process that runs as
    another user (pytest's tmp_path is private to the user running the tests); owned by
    ``owner`` when running as root.  The caller removes it (the ``public_tmp`` fixture does)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o755)
    if owner is not None and os.geteuid() == 0:
        user = pwd.getpwnam(owner)
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


class ProxyProcess:
    starts = 0          # processes started in this process (tests/cpu_accounting.py reports them)

    def __init__(self, tmp_path: Path, config: str, listen: str = "127.0.0.1:0", env: dict | None = None,
                 start: bool = True, flush_each_line: bool = True, prefix: list[str] | None = None,
                 fork: bool = True):
        self.dir = Path(tmp_path)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.access_log = self.dir / "access.log"
        self.cache_log = self.dir / "cache.log"
        self.pid_file = self.dir / "squidpy.pid"
        lines = []

        def given(directive: str) -> bool:
            return re.search(rf"^\s*{directive}\b", config, re.M) is not None

        if not given("http_port"):
            lines.append(f"http_port {listen}")
        if not given("access_log"):
            buffering = " buffer-size=1bytes" if flush_each_line else ""
            lines.append(f"access_log {self.access_log}{buffering} squid")
        if not given("cache_log"):
            lines.append(f"cache_log {self.cache_log}")
        if not given("pid_filename"):
            lines.append(f"pid_filename {self.pid_file}")
        self.config_path = self.dir / "squidpy.conf"
        self.config_path.write_text(config + "\n" + "\n".join(lines) + "\n")
        self.env = dict(os.environ, **(env or {}))
        self.prefix = list(prefix or ())     # e.g. ip netns exec NAME: run it inside a network namespace
        self.fork = fork and not self.prefix     # from the worker's fork server (tests/proxyfork.py)
        self.proc = None
        self.port = None
        self.ports: list[int] = []
        if start:
            self.start()

    def start(self) -> "ProxyProcess":
        ProxyProcess.starts += 1
        self.stderr = open(self.dir / "stderr.txt", "ab")
        self.proc = popen([*self.prefix, sys.executable, "-m", "squidpy", "run", "-f", str(self.config_path)],
                          env=self.env, stdout=subprocess.DEVNULL, stderr=self.stderr, fork=self.fork)
        found = wait_for(self._ports_from_log, timeout=15)
        if not found:
            self.stop()
            raise RuntimeError(f"squidpy did not start:\n{self.read_stderr()}\n{self.read_cache_log()}")
        self.ports = found
        self.port = found[0]
        return self

    def _ports_from_log(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"squidpy exited with {self.proc.returncode}:\n{self.read_stderr()}")
        text = self.read_cache_log()
        ports = [int(m.group(2)) for m in PORT_LINE.finditer(text)]
        # started once every port is listening: https_port lines are logged after http_port ones
        https_wanted = len(re.findall(r"^\s*https_port\s", self.config_path.read_text(), re.M))
        if len(ANY_HTTPS_PORT_LINE.findall(text)) < https_wanted:
            return None
        return ports or None

    @property
    def https_ports(self) -> list[int]:
        """The https_port lines' ports, as squidpy bound them."""
        return [int(m.group(2)) for m in HTTPS_PORT_LINE.finditer(self.read_cache_log())]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def read_cache_log(self) -> str:
        try:
            return self.cache_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def read_stderr(self) -> str:
        try:
            return (self.dir / "stderr.txt").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self, count: int = 1, timeout: float = 5.0) -> list[str]:
        """Wait (bounded) until the access log holds at least ``count`` lines."""
        def lines():
            try:
                text = self.access_log.read_text()
            except FileNotFoundError:
                return None
            got = [l for l in text.splitlines() if l]
            return got if len(got) >= count else None
        return wait_for(lines, timeout) or []

    def log_line(self, needle: str, timeout: float = 5.0, count: int = 1) -> str | None:
        """Wait (bounded) until ``count`` access log lines contain ``needle``; the last of them.
        (A client may have its reply before the proxy logged it: to see the line of a
        second request, ask for ``count=2``.)"""
        def find():
            try:
                text = self.access_log.read_text()
            except FileNotFoundError:
                return None
            hits = [l for l in text.splitlines() if needle in l]
            return hits[-1] if len(hits) >= count else None
        return wait_for(find, timeout)

    def sockets(self) -> int:
        """How many sockets the proxy process holds open (from /proc): a connection a
        client opened counts once the proxy has accepted it."""
        count = 0
        for fd in os.listdir(f"/proc/{self.proc.pid}/fd"):
            try:
                count += os.readlink(f"/proc/{self.proc.pid}/fd/{fd}").startswith("socket:")
            except OSError:
                pass
        return count

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.stderr.close()
        return self.proc.returncode
