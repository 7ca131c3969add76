"""Start the real Squid 5.7 (Debian's ``squid``) on a loopback port, for differential tests.

``SquidProcess(tmp_path, config_text)`` writes a configuration into ``tmp_path`` (adding
``http_port``, logs, pid file, a loopback-only DNS setup and an unprivileged user unless the
text sets them), runs ``squid -N -f FILE`` in the foreground and waits until it accepts
connections.  It mirrors :class:`tests.proxyproc.ProxyProcess`: ``port``, ``url``,
``access_log``, ``log_lines()``, ``log_line()``, ``stop()``.

Squid must never reach the network: its DNS goes to 127.0.0.1 (where nothing answers unless
a test starts a server) and names a test needs come from ``hosts`` (written as Squid's
``hosts_file``).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.proxyproc import wait_for

SQUID = shutil.which("squid") or "/usr/sbin/squid"


def free_port() -> int:
    """A loopback port below the ephemeral range that binds without SO_REUSEADDR
    (Squid's own bind fails on a port that still has TIME_WAIT sockets)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free loopback port for Squid")


class SquidProcess:
    def __init__(self, tmp_path: Path, config: str, hosts: dict[str, str] | None = None, start: bool = True,
                 prefix: list[str] | None = None):
        if not os.path.exists(SQUID):
            raise RuntimeError("Squid 5.7 is not installed: .ci/run installs Debian's squid package")
        self.dir = Path(tmp_path)
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o777)       # Squid drops to the 'proxy' user when started as root
        self.access_log = self.dir / "access.log"
        self.cache_log = self.dir / "cache.log"
        self.pid_file = self.dir / "squid.pid"
        self.port = free_port()
        hosts_file = self.dir / "hosts"
        hosts_file.write_text("127.0.0.1 localhost\n::1 localhost\n" + "".join(
            f"{address} {name}\n" for name, address in (hosts or {}).items()))

        def given(directive: str) -> bool:
            return re.search(rf"^\s*{directive}\b", config, re.M) is not None

        lines = []
        defaults = {
            "http_port": f"127.0.0.1:{self.port}",
            "access_log": f"stdio:{self.access_log} squid",
            "cache_log": str(self.cache_log),
            "pid_filename": str(self.pid_file),
            "coredump_dir": str(self.dir),
            "dns_nameservers": "127.0.0.1",
            "hosts_file": str(hosts_file),
            "pinger_enable": "off",
            "shutdown_lifetime": "0 seconds",
            "visible_hostname": "squid-under-test",
            "buffered_logs": "off",
        }
        if os.geteuid() == 0:
            defaults["cache_effective_user"] = "proxy"
        for directive, value in defaults.items():
            if not given(directive):
                lines.append(f"{directive} {value}")
        if given("http_port"):
            found = re.search(r"^\s*http_port\s+(?:[\d.]+:)?(\d+)", config, re.M)
            self.port = int(found.group(1)) if found else self.port
        self.config_path = self.dir / "squid.conf"
        self.config_path.write_text(config + "\n" + "\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None
        self.prefix = list(prefix or ())     # e.g. ip netns exec NAME: run it inside a network namespace
        if start:
            self.start()

    def parse(self) -> subprocess.CompletedProcess:
        """``squid -k parse`` on the configuration: what Squid says of it."""
        return subprocess.run([SQUID, "-k", "parse", "-f", str(self.config_path)],
                              capture_output=True, text=True, timeout=30)

    def start(self) -> "SquidProcess":
        self.stderr = open(self.dir / "stderr.txt", "ab")
        self.proc = subprocess.Popen([*self.prefix, SQUID, "-N", "-f", str(self.config_path)],
                                     stdout=subprocess.DEVNULL, stderr=self.stderr)

        def accepting() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"squid exited with {self.proc.returncode}:\n{self.read_cache_log()}")
            return "Accepting HTTP Socket connections" in self.read_cache_log()

        if not wait_for(accepting, timeout=20):
            self.stop()
            raise RuntimeError(f"squid did not start:\n{self.read_cache_log()}")
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def read_cache_log(self) -> str:
        for path in (self.cache_log, self.dir / "stderr.txt"):
            try:
                text = path.read_text(errors="replace")
            except FileNotFoundError:
                continue
            if text:
                return text
        return ""

    def log_lines(self, count: int = 1, timeout: float = 5.0) -> list[str]:
        def lines():
            try:
                got = [line for line in self.access_log.read_text().splitlines() if line]
            except FileNotFoundError:
                return None
            return got if len(got) >= count else None
        return wait_for(lines, timeout) or []

    def log_line(self, needle: str, timeout: float = 5.0) -> str | None:
        def find():
            try:
                hits = [line for line in self.access_log.read_text().splitlines() if needle in line]
            except FileNotFoundError:
                return None
            return hits[-1] if hits else None
        return wait_for(find, timeout)

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
        deadline = time.monotonic() + 5
        while self.pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.proc.returncode
