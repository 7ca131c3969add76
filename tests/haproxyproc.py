"""Start HAProxy (Debian's ``haproxy``) on a loopback port in front of loopback servers, for tests.

``HAProxyProcess(tmp_path, servers, proxy="v1")`` writes a TCP-mode configuration
(one frontend on a free loopback port, one backend with ``servers``, each sent the
PROXY protocol header ``proxy`` names: "v1" is ``send-proxy``, "v2"
``send-proxy-v2``, None none), runs ``haproxy -db -f FILE`` in the foreground and
waits until the frontend accepts connections.  With ``check=True`` HAProxy checks
each server every 200 ms (sending the PROXY header first, as a require-proxy-header
port wants) and takes a dead one out after one failed check; a connection a server
refuses is sent to another (``option redispatch``).  ``stop()`` ends it.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from pathlib import Path

from tests.proxyproc import wait_for
from tests.squidproc import free_port

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
SEND = {None: "", "v1": " send-proxy", "v2": " send-proxy-v2"}
CHECK_SEND = {None: "", "v1": " check-send-proxy", "v2": " check-send-proxy"}


class HAProxyProcess:
    def __init__(self, tmp_path: Path, servers: list[tuple[str, int]], proxy: str | None = "v1",
                 balance: str = "roundrobin", check: bool = False, start: bool = True):
        if not Path(HAPROXY).exists():
            raise RuntimeError("HAProxy is not installed: .ci/run installs Debian's haproxy package")
        self.dir = Path(tmp_path)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.pid_file = self.dir / "haproxy.pid"
        lines = [
            "global",
            "    maxconn 4096",
            f"    pidfile {self.pid_file}",
            "defaults",
            "    mode tcp",
            "    retries 3",
            "    option redispatch",
            "    timeout connect 5s",
            "    timeout client 60s",
            "    timeout server 60s",
            "    timeout check 1s",
            "frontend fleet_in",
            f"    bind 127.0.0.1:{self.port}",
            "    default_backend fleet",
            "backend fleet",
            f"    balance {balance}",
        ]
        for i, (host, port) in enumerate(servers):
            health = f" check inter 200ms fall 1 rise 1{CHECK_SEND[proxy]}" if check else ""
            lines.append(f"    server s{i} {host}:{port}{SEND[proxy]}{health}")
        self.config_path = self.dir / "haproxy.cfg"
        self.config_path.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None
        if start:
            self.start()

    def start(self) -> "HAProxyProcess":
        self.stderr = open(self.dir / "haproxy.stderr", "ab")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.config_path)],
                                     stdout=self.stderr, stderr=self.stderr)

        def accepting() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.proc.returncode}:\n{self.read_stderr()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        if not wait_for(accepting, timeout=10):
            self.stop()
            raise RuntimeError(f"haproxy did not start:\n{self.read_stderr()}")
        return self

    def read_stderr(self) -> str:
        try:
            return (self.dir / "haproxy.stderr").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)       # soft stop: finish what is under way
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.stderr.close()
        return self.proc.returncode
