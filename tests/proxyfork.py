"""A per-worker fork server for the proxies the tests start: the same ``squidpy run``,
without paying for its imports each time.

Starting a proxy costs ~0.2 s of CPU, nearly all of it importing Twisted and squidpy,
and the suite starts hundreds.  ``python -m tests.proxyfork`` (one per pytest worker,
started at its first proxy) imports what ``squidpy run`` imports, in the order it does
(``squidpy.cli``, then ``import_twisted_without_tls()``, then the service), and nothing
more: no reactor, no socket but its control socket, no thread.  For each proxy it forks
a *manager*, which forks the proxy: a fresh process with its own pid, the worker's stdin,
the stdout and stderr the test asked for, no other descriptor, the same environment,
directory, umask and argv, that runs ``squidpy.cli.main`` and exits through the
interpreter's normal exit as ``python -m squidpy run`` does.  The manager tells the
worker the proxy's pid and, when it has exited, keeps it a zombie (so its pid cannot be
reused while the test may still signal it) until the worker collects its status and CPU
time (:class:`ForkedProcess`, the part of ``subprocess.Popen`` tests use).

A test of how the program starts (console script, ``python -m squidpy``, what the
interpreter imports) starts its process itself or asks ``ProxyProcess(fork=False)``;
so does a proxy whose environment or limits differ from the worker's (``can_fork``).
``SQUIDPY_TEST_FORK=0`` execs every proxy.
"""

from __future__ import annotations

import json
import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time

_RLIMITS = [getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")]
_VOLATILE = {"PYTEST_CURRENT_TEST"}       # changes with every test; read by nobody at start-up


def _limits() -> list:
    return [resource.getrlimit(limit) for limit in _RLIMITS]


def _startup_env(env: dict) -> dict:
    return {k: v for k, v in env.items() if k not in _VOLATILE}


# ------------------------------------------------------------------ the worker's side

class ForkedProcess:
    """The proxy a fork server started, seen from the worker as a ``subprocess.Popen``."""

    collected_cpu = 0.0         # CPU seconds of the collected proxies and their managers

    def __init__(self, args: list[str], conn: socket.socket, pid: int):
        self.args = args
        self.pid = pid
        self.returncode: int | None = None
        self._conn = conn

    def _collect(self, timeout: float | None) -> bool:
        if self.returncode is not None:
            return True
        ready, _, _ = select.select([self._conn], [], [], timeout)
        if not ready:
            return False
        if self._conn.recv(1) != b"x":
            raise RuntimeError(f"the manager of proxy {self.pid} went away")
        self._conn.sendall(b"r")                       # reap it now
        answer = json.loads(_read_line(self._conn, 30))
        ForkedProcess.collected_cpu += answer["cpu"]
        self.returncode = answer["status"]
        self._conn.close()
        return True

    def poll(self) -> int | None:
        self._collect(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._collect(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:                        # a zombie until collected: the pid is still its own
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(15)

    def kill(self) -> None:
        self.send_signal(9)


def _read_line(conn: socket.socket, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([conn], [], [], left)[0]:
            raise TimeoutError("the fork server did not answer")
        chunk = conn.recv(4096)
        if not chunk:
            raise RuntimeError("the fork server closed the connection")
        data += chunk
    return data


class ForkServer:
    """The worker's handle on its fork server (one per worker process)."""

    _instance: "ForkServer | None" = None
    _failed = False             # it could not start here (tests/ not importable from the cwd): exec
    _lock = threading.Lock()

    def __init__(self):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.env = _startup_env(dict(os.environ))
        self.cwd = os.getcwd()
        self.limits = _limits()
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.proxyfork", str(theirs.fileno())],
                                     pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL)
        theirs.close()
        self.ctl = mine
        if not select.select([mine], [], [], 60)[0] or mine.recv(16) != b"ready":
            self.proc.kill()
            self.proc.wait(10)
            raise RuntimeError("the proxy fork server did not start")

    @classmethod
    def get(cls) -> "ForkServer | None":
        with cls._lock:
            if not cls._failed and (cls._instance is None or cls._instance.proc.poll() is not None):
                try:
                    cls._instance = ForkServer()
                except RuntimeError:
                    cls._failed, cls._instance = True, None
            return cls._instance

    def can_fork(self, env: dict) -> bool:
        """Whether a fresh interpreter would start exactly as the forked one: same
        environment, directory and resource limits as when the server started."""
        return _startup_env(env) == self.env and os.getcwd() == self.cwd and _limits() == self.limits

    def start(self, args: list[str], env: dict, stdout, stderr) -> ForkedProcess:
        mine, theirs = socket.socketpair()
        umask = os.umask(0o22)
        os.umask(umask)
        request = json.dumps({"argv": args, "env": env, "umask": umask}).encode()
        out = stdout if isinstance(stdout, int) and stdout >= 0 else stdout.fileno()
        err = stderr if isinstance(stderr, int) and stderr >= 0 else stderr.fileno()
        with self._lock:
            socket.send_fds(self.ctl, [request], [theirs.fileno(), 0, out, err])
        theirs.close()
        pid = int(_read_line(mine, 30))
        return ForkedProcess(args, mine, pid)


def forked_cpu() -> float:
    """CPU seconds the fork server (its own work) and the proxies it forked (once
    collected) used so far in this worker, for tests/cpu_accounting.py."""
    server = ForkServer._instance
    own = 0.0
    if server is not None:
        try:
            with open(f"/proc/{server.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return ForkedProcess.collected_cpu + own


def popen(args: list[str], env: dict, stdout, stderr, fork: bool = True):
    """``subprocess.Popen(args, stdout=, stderr=, env=)`` for ``python -m squidpy ...``,
    forked from the worker's fork server when that starts the same process."""
    if fork and os.environ.get("SQUIDPY_TEST_FORK", "1") != "0" and args[:3] == [sys.executable, "-m", "squidpy"]:
        server = ForkServer.get()
        if server is not None and server.can_fork(env):
            devnull = os.open(os.devnull, os.O_RDWR)
            try:
                return server.start(args, env, devnull if stdout == subprocess.DEVNULL else stdout, stderr)
            finally:
                os.close(devnull)
    return subprocess.Popen(args, stdout=stdout, stderr=stderr, env=env)


# ------------------------------------------------------------------ the fork server

_import_randoms: list = []


def _preload() -> None:
    """What ``python -m squidpy run`` imports before it reads its configuration."""
    import squidpy.cli  # noqa: F401 - what squidpy/__main__.py imports
    from squidpy.proxy import reactor
    reactor.import_twisted_without_tls()
    import squidpy.proxy.service  # noqa: F401
    for module in ("twisted.internet.reactor", "OpenSSL", "cryptography"):
        assert module not in sys.modules, f"the fork server must not import {module}"
    import gc
    import random
    _import_randoms.extend(obj for obj in gc.get_objects() if isinstance(obj, random.Random))
    gc.collect()
    gc.freeze()     # what the proxy's tune_gc() does once started: its first collection need not copy every page


def _serve(ctl: socket.socket):
    """Fork a manager per request; return (in the manager) its request and descriptors."""
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(ctl, 1 << 20, 4)
        except ConnectionResetError:
            msg = b""
        if not msg:
            os._exit(0)                                # the worker has gone
        assert threading.active_count() == 1, "the fork server must not fork with threads"
        pid = os.fork()
        if pid == 0:
            ctl.close()
            return json.loads(msg), fds
        for fd in fds:
            os.close(fd)
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:     # managers whose proxy was collected
                pass
        except ChildProcessError:
            pass


def _manage(request: dict, fds: list[int]):
    """In the manager: fork the proxy, tell the worker its pid, hold its exit status for
    the worker.  Returns only in the proxy."""
    conn_fd, stdio = fds[0], fds[1:]
    pid = os.fork()
    if pid == 0:
        os.close(conn_fd)
        return request, stdio
    for fd in stdio:
        os.close(fd)
    conn = socket.socket(fileno=conn_fd)
    try:
        conn.sendall(b"%d\n" % pid)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        conn.sendall(b"x")
        conn.recv(1)                                   # "r", or nothing: the worker has gone
    except OSError:
        pass
    _, status, usage = os.wait4(pid, 0)
    own = resource.getrusage(resource.RUSAGE_SELF)
    try:
        conn.sendall(json.dumps({"status": os.waitstatus_to_exitcode(status),
                                 "cpu": usage.ru_utime + usage.ru_stime + own.ru_utime + own.ru_stime,
                                 }).encode() + b"\n")
    except OSError:
        pass
    os._exit(0)


def _become(request: dict, stdio: list[int]) -> list[str]:
    """In the proxy: the process ``subprocess.Popen(argv, env=, stdout=, stderr=)`` would exec."""
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
    for fd in stdio:
        if fd > 2:
            os.close(fd)
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2:
            try:
                os.close(int(name))
            except OSError:
                pass
    for rng in _import_randoms:     # seeded at import (RandomAcl.rng): each proxy its own sequence
        rng.seed()
    os.environ.clear()
    os.environ.update(request["env"])
    os.umask(request["umask"])
    import squidpy
    args = request["argv"][3:]
    sys.argv = [os.path.join(os.path.dirname(squidpy.__file__), "__main__.py"), *args]
    return args


def main() -> None:
    ctl = socket.socket(fileno=int(sys.argv[1]))
    _preload()
    ctl.send(b"ready")
    request, stdio = _manage(*_serve(ctl))
    args = _become(request, stdio)
    del request, stdio, ctl
    from squidpy.cli import main as squidpy_main
    squidpy_main(args=args, prog_name="python -m squidpy")


if __name__ == "__main__":
    main()
