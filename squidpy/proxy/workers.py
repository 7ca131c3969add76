"""``workers N``: N squidpy processes (Squid's kids) serving one port.

The master process forks the kids before any reactor exists, writes the pid
file, and turns signals into actions on all of them: SIGHUP and SIGTERM are
passed on; SIGUSR1 renames the log files once, here, and then tells every
kid to reopen them (SIGUSR2), so rotation happens once and no line is lost.
Each kid listens on every http_port with SO_REUSEPORT, so the kernel spreads
connections among them; they share the cache_dir and append whole lines to
the same access.log.  A kid that dies is restarted, unless it keeps dying.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time

from squidpy.log.access_log import file_destinations
from squidpy.log.rotate import rotate_numbered

log = logging.getLogger("squidpy")

MAX_RESTARTS = 5            # within RESTART_WINDOW seconds, then give up on a kid
RESTART_WINDOW = 30.0


def resolve_port_zero(config) -> None:
    """With several kids, 'port 0' must mean one port for all of them: pick it now."""
    resolved = []
    for listen in config.http_port:
        if listen.port == 0:
            family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
            with socket.socket(family) as s:
                s.bind((listen.host or "0.0.0.0", 0))
                port = s.getsockname()[1]
            listen = type(listen)(listen.host, port, listen.name, listen.options)
        resolved.append(listen)
    config.http_port = resolved


class Master:
    def __init__(self, config, workers: int, echo: bool):
        self.config = config
        self.workers = workers
        self.echo = echo
        self.kids: dict[int, int] = {}            # pid -> kid number
        self.restarts: dict[int, list[float]] = {}
        self.stopping = False

    def run(self) -> int:
        from squidpy.log.cache_log import CacheLog
        from squidpy.proxy.service import AlreadyRunning, write_pid_file

        resolve_port_zero(self.config)
        self.cache_log = CacheLog(self.config.cache_log, echo=self.echo, tag="master")
        try:
            write_pid_file(self.config.pid_filename)
        except AlreadyRunning as e:
            print(f"squidpy: {e}", file=sys.stderr)
            return 1
        log.info("Starting %d kids", self.workers)
        signal.signal(signal.SIGHUP, self._forward)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGUSR1, self._rotate)
        for number in range(1, self.workers + 1):
            self._spawn(number)
        while self.kids:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            number = self.kids.pop(pid, None)
            if number is None or self.stopping:
                continue
            log.error("kid%d (pid %d) exited with status %d", number, pid, os.waitstatus_to_exitcode(status))
            if self._may_restart(number):
                time.sleep(0.5)
                self._spawn(number)
        log.info("squidpy master stopped")
        from squidpy.proxy.service import remove_pid_file
        remove_pid_file(self.config.pid_filename)
        self.cache_log.close()
        return 0

    def _may_restart(self, number: int) -> bool:
        now = time.monotonic()
        recent = [t for t in self.restarts.get(number, []) if now - t < RESTART_WINDOW] + [now]
        self.restarts[number] = recent
        if len(recent) > MAX_RESTARTS:
            log.error("kid%d keeps dying: not restarting it", number)
            return False
        return True

    def _spawn(self, number: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
                    signal.signal(sig, signal.SIG_DFL)
                code = run_kid(self.config, number, self.echo)
            finally:
                os._exit(code)
        self.kids[pid] = number

    def _signal_kids(self, sig: int) -> None:
        for pid in list(self.kids):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _forward(self, signum, frame) -> None:
        self._signal_kids(signum)

    def _stop(self, signum, frame) -> None:
        self.stopping = True
        self._signal_kids(signal.SIGTERM)

    def _rotate(self, signum, frame) -> None:
        keep = self.config.logfile_rotate
        for path, copies in file_destinations(self.config.access_log, keep):
            rotate_numbered(path, copies)
        self.cache_log.rotate(keep)
        self._signal_kids(signal.SIGUSR2)


def run_kid(config, number: int, echo: bool) -> int:
    """One kid: a full ProxyService with its own reactor, listening with SO_REUSEPORT."""
    from squidpy.proxy import reactor as squidpy_reactor
    from squidpy.proxy.service import ProxyService

    reactor = squidpy_reactor.install()

    service = ProxyService(config, reactor, echo=echo, kid=number)
    service.install_signal_handlers()
    service.start()
    reactor.run(installSignalHandlers=False)
    return 0
