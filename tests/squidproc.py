"""Start the real Squid 5.7 (Debian's ``squid``) on a loopback port, for differential tests.

``SquidProcess(tmp_path, config_text)`` writes a configuration (adding ``http_port``, logs,
pid file, a loopback-only DNS setup and an unprivileged user unless the text sets them), runs
``squid -N -f FILE`` in the foreground and waits until it accepts connections.  It mirrors
:class:`tests.proxyproc.ProxyProcess`: ``port``, ``url``, ``access_log``, ``log_lines()``,
``log_line()``, ``stop()``.

Started as root, Squid becomes the 'proxy' user, who cannot enter pytest's private
``tmp_path``: its files live in a directory of its own under /tmp (``dir``, which that user
may enter), removed by ``stop()`` after its logs and configuration are copied into
``tmp_path`` (where ``access_log`` and ``cache_log`` then point), for post-mortems.

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
import weakref
from pathlib import Path

from tests.proxyproc import public_dir, wait_for

SQUID = shutil.which("squid") or "/usr/sbin/squid"
# Debian's squid-openssl (SslBump, security_file_certgen), unpacked beside it by .ci/run
SQUID_OPENSSL = "/opt/squid-openssl/usr/sbin/squid"


# not the random module's generator: Hypothesis seeds that one for each example, which
# would hand every worker (and every run) the same ports
_PORTS = random.SystemRandom()


def free_port() -> int:
    """A loopback port below the ephemeral range that binds without SO_REUSEADDR
    (Squid's own bind fails on a port that still has TIME_WAIT sockets)."""
    for _ in range(200):
        port = _PORTS.randint(20000, 32000)
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
    USER = "proxy"          # whom Squid becomes when started as root (Debian's cache_effective_user)
    starts = 0              # processes started in this process (tests/cpu_accounting.py reports them)

    def __init__(self, tmp_path: Path | None, config: str, hosts: dict[str, str] | None = None,
                 start: bool = True, binary: str = SQUID, prefix: list[str] | None = None):
        if not os.path.exists(binary):
            raise RuntimeError(f"{binary} is not installed: .ci/run installs Debian's squid and unpacks squid-openssl")
        self.binary = binary
        self.prefix = list(prefix or ())     # e.g. ip netns exec NAME: run it inside a network namespace
        self.keep = Path(tmp_path) if tmp_path is not None else None
        self.dir = public_dir("squid-", self.USER)
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.dir), True)    # even if never stopped
        self.access_log = self.dir / "access.log"
        self.cache_log = self.dir / "cache.log"
        self.pid_file = self.dir / "squid.pid"
        self.hosts_file = self.dir / "hosts"
        self.hosts_file.write_text("127.0.0.1 localhost\n::1 localhost\n" + "".join(
            f"{address} {name}\n" for name, address in (hosts or {}).items()))
        self.config_text = config
        self.config_path = self.dir / "squid.conf"
        found = re.search(r"^\s*http_port\s+(?:[\d.]+:)?(\d+)", config, re.M)
        self.own_port = not self._given("http_port")
        self.port = free_port() if self.own_port else (int(found.group(1)) if found else None)
        self._write_config()
        self.proc: subprocess.Popen | None = None
        self.terminated = False
        self.removed = False
        if start:
            self.start()

    def _given(self, directive: str) -> bool:
        return re.search(rf"^\s*{directive}\b", self.config_text, re.M) is not None

    def _write_config(self) -> None:
        defaults = {
            "http_port": f"127.0.0.1:{self.port}",
            "access_log": f"stdio:{self.access_log} squid",
            "cache_log": str(self.cache_log),
            "pid_filename": str(self.pid_file),
            "coredump_dir": str(self.dir),
            "dns_nameservers": "127.0.0.1",
            "hosts_file": str(self.hosts_file),
            "pinger_enable": "off",
            "shutdown_lifetime": "0 seconds",
            "visible_hostname": "squid-under-test",
            "buffered_logs": "off",
        }
        if os.geteuid() == 0:
            defaults["cache_effective_user"] = self.USER
        lines = [f"{directive} {value}" for directive, value in defaults.items() if not self._given(directive)]
        self.config_path.write_text(self.config_text + "\n" + "\n".join(lines) + "\n")

    def parse(self) -> subprocess.CompletedProcess:
        """``squid -k parse`` on the configuration: what Squid says of it."""
        return subprocess.run([self.binary, "-k", "parse", "-f", str(self.config_path)],
                              capture_output=True, text=True, timeout=30)

    def start(self) -> "SquidProcess":
        for attempt in range(3):
            SquidProcess.starts += 1
            self.terminated = False
            self.stderr = open(self.dir / "stderr.txt", "ab")
            self.proc = subprocess.Popen([*self.prefix, self.binary, "-N", "-f", str(self.config_path)],
                                         stdout=subprocess.DEVNULL, stderr=self.stderr)

            def accepting() -> bool:
                return self.proc.poll() is not None or re.search(
                    r"Accepting (SSL bumped |NAT intercepted |TPROXY intercepted )?HTTP Socket connections", self.read_cache_log()) is not None

            if wait_for(accepting, timeout=20) and self.proc.poll() is None:
                return self
            log = self.read_cache_log()
            self._end_process()
            if not (self.own_port and "Address already in use" in log and attempt < 2):
                self._remove()
                raise RuntimeError(f"squid did not start (exit status {self.proc.returncode}):\n{log}")
            self.port = free_port()
            self.cache_log.unlink(missing_ok=True)
            self._write_config()
        raise AssertionError("unreachable")

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

    def log_line(self, needle: str, timeout: float = 5.0, count: int = 1) -> str | None:
        def find():
            try:
                hits = [line for line in self.access_log.read_text().splitlines() if needle in line]
            except FileNotFoundError:
                return None
            return hits[-1] if len(hits) >= count else None
        return wait_for(find, timeout)

    def terminate(self) -> None:
        """Tell Squid to stop (SIGTERM) without waiting for it: ``stop()`` waits."""
        if self.proc is not None and self.proc.poll() is None and not self.terminated:
            self.terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def _end_process(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.stderr.close()

    def stop(self, timeout: float = 15.0) -> int | None:
        """Stop Squid, keep its logs and configuration in ``tmp_path``, remove its directory."""
        if self.proc is None:
            self._remove()
            return None
        self._end_process(timeout)
        self._remove()
        return self.proc.returncode

    def _remove(self) -> None:
        if self.removed:
            return
        self.removed = True
        if self.keep is not None:
            self.keep.mkdir(parents=True, exist_ok=True)
            for name in ("access.log", "cache.log", "stderr.txt", "squid.conf"):
                if (self.dir / name).exists():
                    shutil.copyfile(self.dir / name, self.keep / name)
            self.access_log, self.cache_log = self.keep / "access.log", self.keep / "cache.log"
            self.config_path = self.keep / "squid.conf"
        self._cleanup()

# ---------------------------------------------------------------- Squid as a parent or a child

def squid_root(prefix: str = "squid-") -> Path:
    """A fresh directory under /tmp that the 'proxy' user (whom Squid becomes when started as
    root) may enter: pytest's own tmp_path is private to root."""
    import tempfile
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o755)
    return root


def parent_config(name: str = "squid-parent", extra: str = "") -> str:
    """Squid as a parent: serves loopback children, fetches from origins itself.  Each proxy of
    a chain needs its own visible_hostname, or the next one sees a forwarding loop."""
    return (f"visible_hostname {name}\nhttp_access allow localhost\nhttp_access deny all\n"
            f"strip_query_terms off\n{extra}")


def child_config(peer_lines: list[str], name: str = "squid-child", never_direct: bool = True,
                 extra: str = "") -> str:
    """Squid as a child of the peers ``peer_lines`` (``cache_peer ...`` lines); with
    ``never_direct`` every request goes through them."""
    return "\n".join([f"visible_hostname {name}", "http_access allow localhost", "http_access deny all",
                      "strip_query_terms off", *(["never_direct allow all"] if never_direct else []),
                      *peer_lines, extra]) + "\n"


def get_through(port: int, url: str, headers: dict | None = None, timeout: float = 10.0):
    """``GET url`` through the proxy on ``port``: (status, headers, body)."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", url, headers={"Host": url.split("/")[2], **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def wait_until_forwarding(port: int, url: str, timeout: float = 20.0) -> bool:
    """Whether a request for ``url`` through the proxy on ``port`` comes back with a
    reply that is not the proxy's own error page, within ``timeout``: Squid counts
    its peers as down until its first probes connect to them."""
    def answered() -> bool:
        try:
            status, headers, _ = get_through(port, url, timeout=5)
        except OSError:
            return False
        return "x-squid-error" not in headers
    return bool(wait_for(answered, timeout=timeout, interval=0.2))
