"""``workers N``: N squidpy processes (Squid's kids) serving one port.

The master process locks the pid file, forks the kids before any reactor
exists, and turns signals into actions on all of them: SIGHUP and SIGTERM are
passed on; SIGUSR1 renames the log files once, here, and then tells every
kid to reopen them (SIGUSR2), so rotation happens once and no line is lost.
Each kid listens on every http_port with SO_REUSEPORT, so the kernel spreads
connections among them, then gives up root (cache_effective_user); they
share the cache_dir and append whole lines to the same access.log.  A kid
that dies is restarted, unless it keeps dying.

A page of the cache manager or /metrics shows every kid's figures: the master
makes a private directory for the run (``run_dir``), where each kid answers the
others' requests for its figures on a UNIX socket (squidpy.proxy.kidstats).

Kids report to the master through a pipe (``PID ready``, ``PID status RATE
CLIENTS``, ``PID fatal MESSAGE``): the master says READY to systemd once
every kid listens, sums their request rates into systemd's STATUS line, and
when a kid cannot start at all (a port in use, a cache_dir it cannot write)
stops everything with that kid's one-line reason and exit status 1.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import TYPE_CHECKING

from squidpy import __version__
from squidpy.log.access_log import file_destinations
from squidpy.log.rotate import rotate_numbered
from squidpy.proxy import notify

if TYPE_CHECKING:
    from squidpy.config.loader import Config
    from squidpy.proxy.pidfile import PidFile
    from squidpy.proxy.privileges import Identity

log = logging.getLogger("squidpy")

MAX_RESTARTS = 5            # within RESTART_WINDOW seconds, then give up on a kid
RESTART_WINDOW = 30.0
START_TIMEOUT = 60.0        # a kid that neither listens nor fails by then is given up


def resolve_port_zero(config: Config) -> None:
    """With several kids, 'port 0' must mean one port for all of them: pick it now."""
    for directive in ("http_port", "metrics_port"):
        resolved = []
        for listen in getattr(config, directive):
            if listen.port == 0:
                family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
                with socket.socket(family) as s:
                    s.bind((listen.host or "0.0.0.0", 0))
                    port = s.getsockname()[1]
                listen = type(listen)(listen.host, port, listen.name, listen.options, listen.kind)
            resolved.append(listen)
        setattr(config, directive, resolved)


class KidReports:
    """What the kids said through the pipe (pure: lines in, state out)."""

    def __init__(self):
        self.ready: set[int] = set()
        self.rates: dict[int, tuple[float, int]] = {}
        self.fatal: dict[int, str] = {}

    def feed(self, line: str) -> str | None:
        """Take one line; returns its kind ('ready', 'status', 'fatal') or None."""
        pid_text, _, rest = line.partition(" ")
        if not pid_text.isdigit():
            return None
        pid = int(pid_text)
        kind, _, value = rest.partition(" ")
        if kind == "ready":
            self.ready.add(pid)
        elif kind == "status":
            rate_text, _, clients = value.partition(" ")
            try:
                self.rates[pid] = (float(rate_text), int(clients))
            except ValueError:
                return None
        elif kind == "fatal":
            self.fatal[pid] = value
        else:
            return None
        return kind

    def forget(self, pid: int) -> None:
        self.ready.discard(pid)
        self.rates.pop(pid, None)

    def status(self, kids: int) -> str:
        total = sum(r for r, _ in self.rates.values())
        clients = sum(c for _, c in self.rates.values())
        return notify.status_text(total, clients, kids)


class Master:
    def __init__(self, config: Config, workers: int, echo: bool):
        self.config = config
        self.workers = workers
        self.echo = echo
        self.kids: dict[int, int] = {}            # pid -> kid number
        self.restarts: dict[int, list[float]] = {}
        self.stopping = False
        self.reports = KidReports()
        self.waiting_ready: set[int] | None = None  # kid pids we wait for before READY=1
        self.started = False
        self.identity: Identity | None = None
        self.pidfile: PidFile | None = None
        self.run_dir: str | None = None         # the kids' report sockets, once made

    def run(self) -> int:
        from squidpy.log.cache_log import CacheLog
        from squidpy.proxy import privileges
        from squidpy.proxy.pidfile import AlreadyRunning, PidFile
        from squidpy.proxy.service import places_to_prepare

        resolve_port_zero(self.config)
        try:
            self.identity = privileges.effective_identity(self.config)
            owner = (self.identity.uid, self.identity.gid) if self.identity is not None else None
            if self.identity is not None:
                privileges.make_usable(self.identity, *places_to_prepare(self.config))
            if self.config.pid_filename is not None:
                self.pidfile = PidFile.acquire(self.config.pid_filename, owner)
        except (AlreadyRunning, privileges.PrivilegeError) as e:
            print(f"squidpy: {e}", file=sys.stderr)
            return 1
        except OSError as e:
            print(f"squidpy: cannot start: {e.filename}: {e.strerror}", file=sys.stderr)
            return 1
        try:
            self.cache_log = CacheLog(self.config.cache_log, echo=self.echo, tag="master", owner=owner)
        except OSError as e:
            if self.pidfile is not None:
                self.pidfile.release()
            print(f"squidpy: cannot start: cache_log {self.config.cache_log}: {e.strerror}", file=sys.stderr)
            return 1
        log.info("Starting squidpy/%s master (pid %d) with %s: %d kids", __version__, os.getpid(),
                 self.config.source, self.workers)
        try:
            self.run_dir = make_run_dir(owner)
        except OSError as e:
            log.critical("FATAL: cannot make a directory for the kids' report sockets: %s", e)
            print(f"squidpy: cannot start: cannot make a directory for the kids' report sockets: {e}",
                  file=sys.stderr)
            self.cache_log.close()
            if self.pidfile is not None:
                self.pidfile.release()
            return 1
        self.pipe_r, self.pipe_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.pipe_r, False)
        signal.signal(signal.SIGHUP, self._reconfigure)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGUSR1, self._rotate)
        for number in range(1, self.workers + 1):
            self._spawn(number)
        self.waiting_ready = set(self.kids)
        code = self._loop()
        log.info("squidpy master stopped")
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.pidfile is not None:
            self.pidfile.release()
        self.cache_log.close()
        return code

    def _loop(self) -> int:
        buffered = b""
        next_status = time.monotonic() + notify.STATUS_INTERVAL
        start_deadline = time.monotonic() + START_TIMEOUT
        code = 0
        while self.kids:
            try:
                readable, _, _ = select.select([self.pipe_r], [], [], 0.2)
            except InterruptedError:
                readable = []
            if readable:
                try:
                    buffered += os.read(self.pipe_r, 65536)
                except BlockingIOError:
                    pass
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    self._report(line.decode("utf-8", "replace"))
            failed = self._reap()
            if failed is not None and not self.started:
                # a kid could not start: nothing will work better for the others
                print(f"squidpy: cannot start: {failed}", file=sys.stderr)
                self.stopping = True
                self._signal_kids(signal.SIGTERM)
                code = 1
            if not self.started and not self.stopping and time.monotonic() > start_deadline:
                log.error("kids did not start within %d seconds", START_TIMEOUT)
                self.stopping = True
                self._signal_kids(signal.SIGTERM)
                code = 1
            if time.monotonic() >= next_status:
                next_status = time.monotonic() + notify.STATUS_INTERVAL
                if self.started and not self.stopping:
                    notify.notify([f"STATUS={self.reports.status(len(self.kids))}"])
        if not self.stopping and code == 0:
            code = 1            # every kid died and none could be restarted
        return code

    def _report(self, line: str) -> None:
        kind = self.reports.feed(line)
        if kind == "ready" and self.waiting_ready is not None:
            pid = int(line.split(" ", 1)[0])
            self.waiting_ready.discard(pid)
            if not self.waiting_ready:
                self.waiting_ready = None
                self.started = True
                notify.notify(notify.ready_message(self.reports.status(len(self.kids))))

    def _reap(self) -> str | None:
        """Collect dead kids; restart them.  Returns the fatal message of a kid that could not start."""
        failed = None
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.kids.clear()
                return failed
            if pid == 0:
                return failed
            number = self.kids.pop(pid, None)
            self.reports.forget(pid)
            if self.waiting_ready is not None:
                self.waiting_ready.discard(pid)
            if number is None or self.stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            message = self.reports.fatal.pop(pid, None)
            log.error("kid%d (pid %d) exited with status %d%s", number, pid, code,
                      f": {message}" if message else "")
            if message is not None and not self.started:
                failed = message
                continue
            if self._may_restart(number):
                time.sleep(0.5)
                self._spawn(number)

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
                os.close(self.pipe_r)
                code = run_kid(self.config, number, self.echo, self.pipe_w, self.identity, self.run_dir)
            finally:
                os._exit(code)
        self.kids[pid] = number

    def _signal_kids(self, sig: int) -> None:
        for pid in list(self.kids):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _reconfigure(self, signum, frame) -> None:
        notify.notify(notify.reloading_message(notify.monotonic_usec()))
        self.waiting_ready = set(self.kids)
        self._signal_kids(signum)

    def _stop(self, signum, frame) -> None:
        if not self.stopping:
            notify.notify(notify.stopping_message())
        self.stopping = True
        self._signal_kids(signal.SIGTERM)

    def _rotate(self, signum, frame) -> None:
        keep = self.config.logfile_rotate
        for path, copies in file_destinations(self.config.access_log, keep):
            try:
                rotate_numbered(path, copies)
            except OSError as e:
                log.error("access_log %s: cannot rotate: %s", path, e.strerror)
        self.cache_log.rotate(keep)
        log.info("Rotated logs (keeping %d); the kids reopen them", keep)
        self._signal_kids(signal.SIGUSR2)


def make_run_dir(owner: tuple[int, int] | None) -> str:
    """A directory only the kids' user may enter, for their report sockets: in the
    service's RuntimeDirectory under systemd, else a fresh one in the temporary directory."""
    parent = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or None
    path = tempfile.mkdtemp(prefix="squidpy-kids-", dir=parent)
    if owner is not None:
        os.chown(path, *owner)
    return path


def run_kid(config: Config, number: int, echo: bool, pipe_w: int | None = None, identity=None,
            run_dir: str | None = None) -> int:
    """One kid: a full ProxyService with its own reactor, listening with SO_REUSEPORT."""
    from squidpy.proxy import reactor as squidpy_reactor
    from squidpy.proxy.service import ProxyService, StartupError

    reactor = squidpy_reactor.install()

    service = ProxyService(config, reactor, echo=echo, kid=number, notifier=notify.Notifier(pipe_w),
                           identity=identity, run_dir=run_dir)
    service.install_signal_handlers()
    try:
        service.start()
    except StartupError as e:
        if pipe_w is not None:
            message = " ".join(str(e).split())[:3000]
            try:
                os.write(pipe_w, f"{os.getpid()} fatal {message}\n".encode())
            except OSError as err:
                if err.errno != errno.EPIPE:
                    raise
        return 1
    for line in service.startup_summary():
        print(line, file=sys.stderr, flush=True)
    reactor.run(installSignalHandlers=False)
    return service.exit_code
