"""The running proxy: listening ports, shared state, and Squid's -k actions.

:class:`ProxyService` owns what every connection shares (the configuration,
DNS cache, origin connection pool, logs, error pages, timeouts) and carries
out start, reconfigure (SIGHUP), rotate (SIGUSR1) and shutdown (SIGTERM/SIGINT).
Starting fails in one line (:class:`StartupError`), never half-way.  A
reconfigure opens everything the new configuration needs first and takes it
whole or not at all; then it swaps the configuration for new transactions and
reconciles the listening ports; live connections and listening sockets that
stay are untouched.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import time
from collections import Counter
from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.internet.task import LoopingCall

from squidpy import __version__
from squidpy.config import loader
from squidpy.config.values import INTERCEPT, TPROXY
from squidpy.errors import ErrorPages
from squidpy.http.message import app_name, via_value
from squidpy.http.url import own_names
from squidpy.ip import ip_text as plain_ip
from squidpy.log.access_log import AccessLog
from squidpy.log.cache_log import CacheLog
from squidpy.mgr.stats import Stats
from squidpy.pac import PacSettings
from squidpy.proxy import privileges
from squidpy.proxy.client_side import ClientFactory
from squidpy.proxy.closing import lose
from squidpy.proxy.dns import DnsCache, build_resolver, read_hosts
from squidpy.proxy.notify import STATUS_INTERVAL, Notifier, rate, status_text
from squidpy.proxy.pidfile import AlreadyRunning, PidFile
from squidpy.proxy.seam import EPollReactor, Waiting, adopt_port, listen_tcp, set_transparent
from squidpy.proxy.server_side import ServerPool
from squidpy.proxy.throttle import Throttles
from squidpy.proxy.timeouts import Timeouts

if TYPE_CHECKING:
    from squidpy.config.loader import Config

log = logging.getLogger("squidpy")


class StartupError(Exception):
    """One line saying why squidpy cannot start (logged as FATAL in cache_log when it is open)."""


class ReconfigureError(Exception):
    """Why a new configuration cannot be applied as a whole."""


class Staged:
    """What a reconfigure opened before changing anything: all of it is taken, or none."""

    def __init__(self, config: Config):
        self.config = config
        self.ports: dict[tuple[str, int], object] = {}
        self.cache = None                 # a new Cache, when the cache_dir changes
        self.cache_log = None             # a new handler, when cache_log changes
        self.access_log = None
        self.pidfile = None               # a new lock, when pid_filename changes


class ProxyService:
    def __init__(self, config: Config, reactor, echo: bool = False, kid: int | None = None,
                 notifier: Notifier | None = None, identity: privileges.Identity | None = None,
                 run_dir: str | None = None):
        self.reactor = reactor
        self.run_dir = run_dir        # under workers: where the kids' report sockets are (kidstats)
        self.config = config
        self.echo = echo
        self.kid = kid                # the kid number under 'workers N', else None
        self.notifier = notifier or Notifier()
        self.identity = identity      # whom to become after binding ports (None: stay who we are)
        self.listeners: dict[tuple[str, str, int], object] = {}     # http_port and metrics_port
        self.my_port = 0
        self.clients: set = set()
        self._per_ip: Counter = Counter()
        self.shutting_down = False
        self.exit_code = 0
        self.started = time.time()
        self._over_capacity = False
        self.timeouts = Timeouts(_sweep_interval(config))
        # connections accepted that have sent nothing yet (counted in _per_ip, not in clients)
        self.waiting = Waiting(reactor, self._may_wait, self._uncount, config.request_start_timeout)
        self.timeouts.add(self.waiting)
        self.pool = ServerPool(reactor, self.timeouts, config)
        self.dns = None
        self.access_log = None
        self.cache_log = None
        self.cache = None
        self.pidfile = None
        self.running_helpers = None       # squidpy.helpers.running.RunningHelpers, when the configuration has helpers
        self.helpers = None               # what exchanges read: its HelperState (shared.helpers)
        self._cache_dir = None
        self._flush = LoopingCall(self.flush_logs)
        self._status = LoopingCall(self.report_status)
        self.stats = Stats(self.started)  # what the cache manager and /metrics show (squidpy.mgr.stats)
        self._tick = LoopingCall(self.tick_stats)
        self.kid_reports = None           # under workers: this kid's report socket (kidstats)
        self.throttles = Throttles(reactor, config)     # delay pools and client delay pools
        self._rate_mark = (0, time.monotonic())
        self.fd_limit = raise_fd_limit(config.max_filedescriptors)
        from squidpy.proxy.peering import Peering
        self.peering = Peering(self)
        self._derive(config)

    # ------------------------------------------------------------ configuration
    def _derive(self, config: Config) -> None:
        """Everything that follows from the configuration and cannot fail."""
        self.config = config
        self.visible_hostname = config.visible_hostname
        self.via_name = config.visible_hostname if config.via else None
        appname = app_name(config.httpd_suppress_version_string)
        # the names a URL may give this proxy by (its own URLs are answered, never forwarded)
        self.hostnames = own_names(config.visible_hostname, config.hostname_aliases)
        self.via_header = via_value("1.1", config.visible_hostname, appname) if config.via else None
        self.x_cache_miss = b"MISS from " + config.visible_hostname.encode("latin-1")
        self.x_cache_hit = b"HIT from " + config.visible_hostname.encode("latin-1")
        self.error_pages = ErrorPages(config.error_directory, config.visible_hostname, config.cache_mgr,
                                      config.error_default_language, appname, config.email_err_data,
                                      config.err_html_text or "")
        self.dns = DnsCache(build_resolver(config.dns_nameservers), config.positive_dns_ttl,
                            config.negative_dns_ttl, config.dns_timeout,
                            (config.ipcache_size, config.ipcache_low, config.ipcache_high), config.fqdncache_size,
                            hosts=read_hosts(config.hosts_file, config.append_domain), stats=self.stats)
        self.max_clients = config.max_client_connections or max(16, self.fd_limit // 2)
        self.pac = PacSettings.from_config(config)
        from squidpy.proxy.tls_side import TlsSide
        old, self.tls = getattr(self, "tls", None), TlsSide(config)
        if old is not None:
            old.stop()
        self.pool.configure(config)
        self.throttles.configure(config)
        self.timeouts.set_interval(_sweep_interval(config))
        self.waiting.timeout = config.request_start_timeout
        self.peering.configure(config)

    @property
    def peers(self):
        """The configuration's peers and their state (empty: every request goes direct)."""
        return self.peering.table

    @staticmethod
    def _cache_dir_of(config: Config):
        return (config.cache_dir.path, config.cache_dir.size_mb, config.cache_replacement_policy) \
            if config.cache_dir else None

    def _open_cache(self, config: Config):
        """A new cache for ``config``; raises CacheDirError when its cache_dir cannot be used."""
        from squidpy.cache.store import Store, open_cache_dir
        from squidpy.proxy.cache_side import Cache

        wanted = self._cache_dir_of(config)
        disk = open_cache_dir(*wanted) if wanted else None
        if disk is not None and self.kid is not None:
            disk.shared = True      # the other kids write it too
        return Cache(self, config, Store(config.cache_mem, config.maximum_object_size_in_memory, disk,
                                         config.memory_replacement_policy))

    # ------------------------------------------------------------ start
    def start(self) -> None:
        """Lock the pid file, open cache_log, listen, give up root, open the cache_dir and
        the access logs.  Raises AlreadyRunning or StartupError (one line, also in cache_log)."""
        config = self.config
        if self.kid is None:
            try:
                self.identity = privileges.effective_identity(config)
                if self.identity is not None:
                    privileges.make_usable(self.identity, *places_to_prepare(config))
            except privileges.PrivilegeError as e:
                raise StartupError(str(e)) from None
            except OSError as e:
                raise StartupError(f"cannot prepare {e.filename}: {e.strerror}") from None
            if config.pid_filename is not None:
                try:
                    self.pidfile = PidFile.acquire(config.pid_filename, _owner(self.identity))
                except OSError as e:
                    raise StartupError(f"pid_filename {config.pid_filename}: {e.strerror}") from None
        try:
            self.cache_log = CacheLog(config.cache_log, echo=self.echo, tag=self._tag())
        except OSError as e:
            self._release_pidfile()
            raise StartupError(f"cache_log {config.cache_log}: {e.strerror}") from None
        self.cache_log.capture_twisted()
        log.info("Starting squidpy/%s (pid %d) with %s", __version__, os.getpid(), config.source)
        for warning in config.warnings:
            log.warning("%s", warning)
        for listen in listening(config):
            try:
                self._listen(listen)
            except ierror.CannotListenError as e:
                self._fail_start(f"cannot listen on {_where(listen)}: {_socket_reason(e)}")
        self._find_my_port()
        if self.identity is not None:
            try:
                tproxy = any(listen.interception == TPROXY for listen in config.http_port)
                kept = privileges.become(self.identity, net_admin=tproxy)
            except privileges.PrivilegeError as e:
                self._fail_start(str(e))
            log.info("Running as %s%s", self.identity,
                     "" if kept else " (without CAP_NET_BIND_SERVICE: new ports below 1024 need a restart)"
                     if not tproxy else " (without CAP_NET_ADMIN: tproxy cannot connect with clients' addresses)")
        elif self.kid is None and os.geteuid() == 0:
            log.warning("Running as root: set cache_effective_user to give up root after binding the ports")
        from squidpy.cache.store import CacheDirError
        try:
            self.cache = self._open_cache(config)
        except CacheDirError as e:
            self._fail_start(str(e))
        self._cache_dir = self._cache_dir_of(config)
        self.access_log = AccessLog.from_config(config, on_fatal=self.fatal, resolve=self.resolve_name)
        for failure in self.access_log.failures():
            self._fail_start(failure)
        if self.run_dir is not None:
            from squidpy.proxy.kidstats import KidReports
            try:
                self.kid_reports = KidReports(self, self.run_dir)
            except OSError as e:
                self._fail_start(f"cannot open the report socket in {self.run_dir}: {e.strerror}")
        self._start_helpers(config)       # as the user squidpy runs as, like Squid's helpers
        self._announce()
        self.peering.start()
        self.timeouts.start()
        self._flush.start(1.0, now=False)
        self._tick.start(60.0, now=False)
        if self.notifier.wanted:
            self._status.start(STATUS_INTERVAL, now=False)
        self.notifier.ready(self.status_text())
        from squidpy.proxy.reactor import tune_gc, tune_malloc
        tune_gc()
        tune_malloc()

    def _fail_start(self, message: str):
        log.critical("FATAL: %s", message)
        for port in self.listeners.values():
            port.stopListening()
        self.listeners.clear()
        if self.cache is not None:
            self.cache.close()
            self.cache = None
        if self.access_log is not None:
            self.access_log.close()
        self._release_pidfile()
        if self.cache_log is not None:
            self.cache_log.close()
        raise StartupError(message)

    # ------------------------------------------------------------ helpers
    def _start_helpers(self, config: Config) -> None:
        """Start the helper programs ``config`` names (a reconfigure starts a new set
        and lets the old one finish what it holds)."""
        from squidpy.helpers.state import uses_helpers

        old = self.running_helpers
        self.running_helpers = self.helpers = None
        if uses_helpers(config):
            from squidpy.helpers.running import RunningHelpers     # its pool and processes: only when used

            running = RunningHelpers(config, self.reactor, on_fatal=self._helper_fatal, previous=old)
            running.start()
            self.running_helpers, self.helpers = running, running.state
        if old is not None:
            old.stop()

    def _helper_fatal(self, message: str) -> None:
        """on-persistent-overload=die: Squid stops when a helper stays overloaded."""
        self.fatal(message, "a helper stayed overloaded (children ... on-persistent-overload=ERR keeps serving, "
                            "answering ERR)")

    def release_connection_auth(self, connection_auth) -> None:
        """A client connection closed in the middle of a Negotiate/NTLM handshake: its
        helper child may serve others again."""
        running = self.running_helpers
        if running is not None and connection_auth.child is not None and connection_auth.scheme is not None:
            running.release(connection_auth.scheme, connection_auth.child)
            connection_auth.child = None

    def _announce(self) -> None:
        """Where everything is: the configuration was named at the start, the ports as they
        opened; then the logs and the cache."""
        files = [spec.destination.text for spec in self.config.access_log if spec.destination.kind != "none"]
        log.info("access_log: %s", ", ".join(files) if files else "none")
        log.info("cache_log: %s", self.config.cache_log)
        if self._cache_dir is not None:
            log.info("cache_dir: %s (%d MB)", *self._cache_dir[:2])
        else:
            log.info("cache_dir: none (cache_mem %d MB only)", self.config.cache_mem // (1024 * 1024))

    def startup_summary(self) -> list[str]:
        """What ``squidpy run`` prints on the terminal: the configuration, the ports, the logs."""
        name = f"squidpy/{__version__}" + (f" kid{self.kid}" if self.kid is not None else "")
        lines = [f"{name}: configuration {self.config.source}"] if self.kid in (None, 1) else []
        lines += [f"{name} listening on {where}" for where in self.listening_addresses()]
        if self.kid in (None, 1):
            files = [spec.destination.text for spec in self.config.access_log if spec.destination.kind != "none"]
            lines.append(f"{name}: cache_log {self.config.cache_log}; access_log {', '.join(files) or 'none'}")
        return lines

    def _tag(self) -> str | None:
        return f"kid{self.kid}" if self.kid is not None else None

    def _listen(self, listen, into: dict | None = None) -> None:
        factory = ClientFactory(self, listen)
        # a connection waits for its first bytes as a bare descriptor unless something
        # must happen before them (TLS, the original destination, the PROXY header), or
        # the reactor is not ours (no epoll: Twisted's default)
        waiting = (None if listen.https or listen.interception or listen.require_proxy_header
                   or not isinstance(self.reactor, EPollReactor) else self.waiting)
        if self.kid is not None or "reuseport" in listen.options or listen.interception == TPROXY:
            port = self._listen_socket(listen, factory, waiting)
        elif listen.host:
            port = listen_tcp(self.reactor, listen.port, factory, 1024, listen.host, waiting)
        else:
            try:
                port = listen_tcp(self.reactor, listen.port, factory, 1024, "::", waiting)
            except ierror.CannotListenError:
                port = listen_tcp(self.reactor, listen.port, factory, 1024, "0.0.0.0", waiting)
        (self.listeners if into is None else into)[listen.key] = port
        address = port.getHost()
        factory.bound_port = address.port
        shown = f"[{address.host}]" if ":" in address.host else address.host
        mode = {INTERCEPT: "NAT intercepted ", TPROXY: "TPROXY intercepted "}.get(listen.interception, "")
        kind = "metrics" if listen.kind == "metrics" else "HTTPS" if listen.https else "HTTP"
        log.info("Accepting %s%s connections at %s:%d", mode, kind, shown, address.port)

    def _listen_socket(self, listen, factory, waiting: Waiting | None):
        """A listening socket made here: one other processes may share (SO_REUSEPORT:
        the kernel spreads new connections among them), or a transparent one for
        tproxy (IP_TRANSPARENT: it accepts connections addressed to other hosts)."""
        host = listen.host or "::"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.kid is not None or "reuseport" in listen.options:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if listen.interception == TPROXY:
                try:
                    set_transparent(sock, family)
                except OSError as e:
                    raise OSError(e.errno, f"TPROXY support in the system does not work: IP_TRANSPARENT: "
                                           f"{e.strerror} (squidpy needs CAP_NET_ADMIN)") from None
            if family == socket.AF_INET6 and not listen.host:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((host, listen.port))
            sock.listen(1024)
            sock.setblocking(False)
            return adopt_port(self.reactor, sock.fileno(), family, factory, waiting)
        except OSError as e:
            raise ierror.CannotListenError(host, listen.port, e) from None
        finally:
            sock.close()

    def listening_ports(self) -> list[int]:
        return [p.getHost().port for key, p in self.listeners.items() if key[0] == "http"]

    def listening_addresses(self) -> list[str]:
        out = []
        for key, port in self.listeners.items():
            if key[0] != "http":
                continue
            address = port.getHost()
            mode = port.factory.listen.interception
            out.append((f"[{address.host}]:{address.port}" if ":" in address.host else f"{address.host}:{address.port}")
                       + (f" ({mode})" if mode else ""))
        return out

    def _find_my_port(self) -> None:
        """``my_port``: the port of the first http_port (as bound) that does not intercept,
        which Squid puts in its own URLs (``http://visible_hostname:PORT/...``); kept as a
        plain attribute, since every request compares its URL's port with it."""
        self.my_port = 0
        for listen in self.config.http_port:
            if listen.interception is not None:
                continue
            port = self.listeners.get(listen.key)
            if port is not None:
                self.my_port = port.getHost().port
                return

    # ------------------------------------------------------------ reconfigure
    def reconfigure(self) -> None:
        """Re-read the configuration file and apply it whole, or not at all.

        Everything the new configuration needs that can fail (its new ports, a new
        cache_dir, new log files, a new pid file) is opened first; only when all of it
        worked does the new configuration replace the old one.  Otherwise what was opened
        is closed again, and the running configuration stays as it was, untouched."""
        log.info("Reconfiguring squidpy from %s", self.config.source)
        self.notifier.reloading()
        try:
            new = loader.load(self.config.source)
        except loader.ConfigErrors as e:
            for err in e.errors:
                log.error("reconfigure: %s", err)
            log.error("reconfigure failed: the previous configuration stays in force")
            self.notifier.ready(self.status_text())
            return
        for warning in new.warnings:
            log.warning("%s", warning)
        try:
            staged = self._stage(new)
        except ReconfigureError as e:
            log.error("reconfigure: %s", e)
            log.error("reconfigure failed: the previous configuration stays in force, unchanged")
            self.notifier.ready(self.status_text())
            return
        self._commit(staged)
        log.info("Reconfigured: %d http_port(s), %d http_access rule(s)",
                 len(self.listeners), len(new.http_access.rules))
        self.notifier.ready(self.status_text())

    def _stage(self, new) -> Staged:
        """Open what ``new`` needs; on the first failure close it all and raise ReconfigureError."""
        from squidpy.cache.store import CacheDirError

        staged = Staged(new)
        try:
            for listen in listening(new):
                kept = self.listeners.get(listen.key)
                if kept is not None and (kept.factory.listen.interception == TPROXY) != (listen.interception == TPROXY):
                    raise ReconfigureError(f"http_port {_where(listen)}: tproxy cannot be switched on or off on a "
                                           "listening port (its socket must be made anew): restart squidpy")
                if listen.key not in self.listeners:
                    try:
                        self._listen(listen, into=staged.ports)
                    except ierror.CannotListenError as e:
                        raise ReconfigureError(f"cannot listen on {_where(listen)}: {_socket_reason(e)}") from None
            if self._cache_dir_of(new) != self._cache_dir:
                try:
                    staged.cache = self._open_cache(new)
                except CacheDirError as e:
                    raise ReconfigureError(str(e)) from None
            if new.cache_log != self.config.cache_log:
                try:
                    staged.cache_log = self.cache_log.prepare(new.cache_log)
                except OSError as e:
                    raise ReconfigureError(f"cache_log {new.cache_log}: {e.strerror}") from None
            if new.pid_filename != self.config.pid_filename and self.kid is None and new.pid_filename is not None:
                try:
                    staged.pidfile = PidFile.acquire(new.pid_filename)
                except (AlreadyRunning, OSError) as e:
                    raise ReconfigureError(f"pid_filename {new.pid_filename}: {getattr(e, 'strerror', None) or e}") from None
            staged.access_log = AccessLog.from_config(new, previous=self.access_log, on_fatal=self.fatal,
                                                      resolve=self.resolve_name)
            failures = staged.access_log.failures()
            if failures:
                raise ReconfigureError(failures[0])
        except ReconfigureError:
            self._unstage(staged)
            raise
        return staged

    def _unstage(self, staged: Staged) -> None:
        for key, port in staged.ports.items():
            port.stopListening()
            log.info("Closed %s port %s:%d again", _port_kind(key), key[1] or "*", key[2])
        if staged.cache is not None:
            staged.cache.close()
        if staged.cache_log is not None:
            staged.cache_log.close()
        if staged.pidfile is not None:
            staged.pidfile.release()
        if staged.access_log is not None:
            staged.access_log.discard()

    def _commit(self, staged: Staged) -> None:
        """Take the new configuration; nothing here can fail."""
        new, old = staged.config, self.config
        wanted = {listen.key: listen for listen in listening(new)}
        for key in list(self.listeners):
            if key not in wanted:
                self.listeners.pop(key).stopListening()
                log.info("Closed %s port %s:%d", _port_kind(key), key[1] or "*", key[2])
        self.listeners.update(staged.ports)
        for key, listen in wanted.items():
            self.listeners[key].factory.listen = listen
        self._derive(new)
        self._find_my_port()
        if staged.cache is not None:
            if self.cache is not None:
                self.cache.close()
            self.cache = staged.cache
            self._cache_dir = self._cache_dir_of(new)
        else:
            self.cache.configure(new)
        if staged.cache_log is not None:
            self.cache_log.switch(new.cache_log, staged.cache_log)
        staged.access_log.commit()
        self.access_log = staged.access_log
        if new.pid_filename != old.pid_filename and self.kid is None:
            self._release_pidfile()
            self.pidfile = staged.pidfile
        self._start_helpers(new)

    def rotate(self) -> None:
        keep = self.config.logfile_rotate
        self.access_log.rotate(keep)
        self.cache_log.rotate(keep)
        log.info("Rotated logs (keeping %d)", keep)

    def reopen_logs(self) -> None:
        """Under workers the master renamed the files: write on in new ones."""
        self.access_log.reopen()
        self.cache_log.rotate(0)
        log.info("Reopened the log files after rotation")

    # ------------------------------------------------------------ status and fatal errors
    def status_text(self) -> str:
        count, then = self._rate_mark
        return status_text(rate(self.stats.requests(), count, time.monotonic(), then), self.client_connections)

    def report_status(self) -> None:
        now = time.monotonic()
        count, then = self._rate_mark
        requests = self.stats.requests()
        self._rate_mark = (requests, now)
        self.notifier.status(rate(requests, count, now, then), self.client_connections)

    def tick_stats(self) -> None:
        """Once a minute: a copy of the counters for the 5 and 60 minute figures."""
        from squidpy.proxy.reports import update_process_counters
        update_process_counters(self)
        self.stats.tick(time.time())

    def fatal(self, message: str, why: str = "a log it must write cannot be written "
                                             "(access_log ... on-error=drop keeps serving instead)") -> None:
        """A failure squidpy must not serve on (an access_log under on-error=die, a helper
        under on-persistent-overload=die): say so in cache_log and stop now, exit status 1,
        as Squid's fatal() does."""
        if self.exit_code:
            return
        self.exit_code = 1
        log.critical("FATAL: %s", message)
        log.critical("squidpy/%s: stopping: %s", __version__, why)
        self.notifier.stopping()
        for port in self.listeners.values():
            port.stopListening()
        self.listeners.clear()
        self.shutting_down = True
        self.reactor.callLater(0, self._die)

    def _die(self) -> None:
        self.waiting.close_all()
        for client in list(self.clients):
            client.transport.abortConnection()
        if self.running_helpers is not None:
            self.running_helpers.stop(grace=0)
        self._stopped().addBoth(lambda _: self.reactor.stop() if self.reactor.running else None)

    # ------------------------------------------------------------ shutdown
    def shutdown(self) -> defer.Deferred:
        """Stop accepting, let transactions finish for shutdown_lifetime, then stop."""
        if self.shutting_down:
            return defer.succeed(None)
        self.shutting_down = True
        self.notifier.stopping()
        lifetime = self.config.shutdown_lifetime
        log.info("Shutting down: waiting up to %.0f seconds for %d active transaction(s)",
                 lifetime, sum(1 for c in self.clients if c.active is not None or c.tunnel is not None))
        stops = [defer.maybeDeferred(p.stopListening) for p in self.listeners.values()]
        self.listeners.clear()
        self.waiting.close_all()
        for client in list(self.clients):
            if client.shut_down():
                lose(client.transport)
        self.pool.close_idle()
        self.tls.stop()
        done = defer.Deferred()
        deadline = time.monotonic() + lifetime

        def check():
            busy = [c for c in self.clients if c.active is not None or c.tunnel is not None]
            if busy and time.monotonic() < deadline:
                self.reactor.callLater(0.1, check)
                return
            for client in list(self.clients):
                client.transport.abortConnection()
            self.reactor.callLater(0, done.callback, None)

        defer.DeferredList(stops).addCallback(lambda _: check())
        done.addCallback(lambda _: self._stop_helpers())
        done.addCallback(lambda _: self._stopped())
        return done

    def _stop_helpers(self):
        """The helpers' input closes: they exit once they have answered (killed after 2 seconds)."""
        running, self.running_helpers, self.helpers = self.running_helpers, None, None
        if running is None:
            return None
        return running.stop(grace=2.0)

    def _stopped(self) -> defer.Deferred:
        """Stop what runs; fires once the access log collectors got what was queued (or it
        was given up, within a second) and the rest is closed."""
        self.peering.stop()
        self.timeouts.stop()
        for loop in (self._flush, self._status, self._tick):
            if loop.running:
                loop.stop()
        self.throttles.stop()
        if self.kid_reports is not None:
            self.kid_reports.close()
            self.kid_reports = None
        closing = defer.succeed(None)
        if self.access_log is not None:
            self.access_log.on_fatal = None
            for writer in self.access_log.writers.values():
                writer.on_fatal = None          # stopping: what is lost now is only reported
            closing = self.access_log.close()
            self.access_log = None
        return closing.addBoth(lambda _: self._closed())

    def _closed(self) -> None:
        if self.cache is not None:
            self.cache.close()
            self.cache = None
        log.info("squidpy/%s stopped", __version__)
        self._release_pidfile()
        if self.cache_log is not None:
            self.cache_log.close()
            self.cache_log = None

    def _release_pidfile(self) -> None:
        if self.pidfile is not None:
            self.pidfile.release()
            self.pidfile = None

    # ------------------------------------------------------------ shared state for connections
    @property
    def client_connections(self) -> int:
        """Open client connections, the ones that have not sent anything yet included."""
        return len(self.clients) + len(self.waiting)

    def _may_wait(self, ip: str) -> str | None:
        """May a new connection from ``ip`` wait for its first bytes as a bare descriptor?
        Not one :meth:`client_connected` would refuse: that is said at once, as now.  The
        address it is counted under, or None."""
        ip = plain_ip(ip)
        per_ip = self.config.client_ip_max_connections
        if (self.shutting_down or self._over_capacity or self.client_connections >= self.max_clients
                or (per_ip >= 0 and self._per_ip[ip] >= per_ip)):
            return None
        self._per_ip[ip] += 1
        return ip

    def _uncount(self, ip: str) -> None:
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]

    def client_connected(self, client) -> None:
        """Count a new client; refuse it over the connection limits."""
        self.clients.add(client)
        self._per_ip[client.client_ip] += 1
        self.timeouts.add(client)
        if self.shutting_down:
            lose(client.transport)
            return
        per_ip = self.config.client_ip_max_connections
        if per_ip >= 0 and self._per_ip[client.client_ip] > per_ip:
            log.warning("client %s exceeds client_ip_max_connections %d: connection closed", client.client_ip, per_ip)
            client.transport.abortConnection()
        elif self.client_connections > self.max_clients:
            if not self._over_capacity:
                log.warning("%d client connections: refusing new ones (max_client_connections)",
                            self.client_connections)
            self._over_capacity = True
            client.refuse_now("ERR_CANNOT_FORWARD", "this proxy is serving as many connections as it can", 503)
        elif self._over_capacity and self.client_connections < self.max_clients * 0.9:
            self._over_capacity = False

    def client_disconnected(self, client) -> None:
        if client in self.clients:
            self.clients.discard(client)
            self._uncount(client.client_ip)
        self.timeouts.discard(client)

    def connections_from(self, ip: str) -> int:
        return self._per_ip.get(ip, 0)

    # what exchanges read (squidpy.exchange.shared.Shared)
    def now(self) -> float:
        return time.time()

    def boundary(self) -> bytes:
        return os.urandom(12).hex().encode("ascii")

    def cached_name(self, address: str) -> str | None:
        return self.dns.cached_name(address)

    def cached_addresses(self, host: str) -> list[str] | None:
        return self.dns.cached(host)

    def resolve_name(self, host: str) -> defer.Deferred:
        """The addresses of ``host`` from the running configuration's DNS cache (hosts_file,
        dns_nameservers): for access_log collectors named by a name."""
        return self.dns.resolve(host)

    def refresh_in_background(self, exchange, target: str, headers) -> None:
        """stale-while-revalidate (RFC 5861 3): a second exchange, with no client
        behind it, revalidates the entry after the stale answer left."""
        from squidpy.proxy.refresh_client import refresh_in_background
        refresh_in_background(self, exchange, target, headers)

    def collect_stats(self, action: str, needs: frozenset, params: dict) -> defer.Deferred:
        """The reports for a cache manager page or /metrics: this process's, and under
        workers every kid's (squidpy.proxy.kidstats); fires with a list."""
        from squidpy.proxy import reports
        own = reports.build(self, needs, params)
        if self.kid_reports is None:
            return own.addCallback(lambda report: [report])
        return self.kid_reports.collect(own, action, needs, params)

    def helper_pools(self) -> list:
        """The helper pools running for this process (auth_param, external_acl_type,
        url_rewrite ...), for /metrics."""
        if self.running_helpers is None:
            return []
        return [manager.pool for manager in self.running_helpers.managers.values()]

    def log_transaction(self, entry, checklist) -> None:
        self.stats.record(entry)
        if self.access_log is not None:
            self.access_log.log(entry, checklist)

    def log_error(self, fmt: str, *args) -> None:
        log.error(fmt, *args)

    def flush_logs(self) -> None:
        if self.access_log is not None:
            self.access_log.flush()

    # ------------------------------------------------------------ signals
    def install_signal_handlers(self) -> None:
        call = self.reactor.callFromThread
        # a file size limit makes writes fail (EFBIG), which the logs and the
        # cache handle; it must not kill the proxy
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, lambda *_: call(self.reconfigure))
        signal.signal(signal.SIGUSR1, lambda *_: call(self.rotate))
        signal.signal(signal.SIGUSR2, lambda *_: call(self.reopen_logs))
        signal.signal(signal.SIGTERM, lambda *_: call(self._stop_reactor))
        signal.signal(signal.SIGINT, lambda *_: call(self._stop_reactor))
        # helper programs: the reactor runs without its own signal handlers, so children
        # that end are reaped here (else a helper that exits before its pipes report
        # closing would never be seen to end, and its requests never answered)
        from twisted.internet.process import reapAllProcesses
        signal.signal(signal.SIGCHLD, lambda *_: call(reapAllProcesses))

    def _stop_reactor(self) -> None:
        d = self.shutdown()
        d.addBoth(lambda _: self.reactor.stop() if self.reactor.running else None)


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-file limit towards ``wanted`` (0: the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if wanted <= 0 else min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if target != resource.RLIM_INFINITY and target != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def places_to_prepare(config: Config) -> tuple[list[str], list[str]]:
    """(directories, files) squidpy writes, made usable for cache_effective_user while still
    root: the directories of its logs, pid file and cache_dir, and its log files."""
    files = [config.cache_log]
    files += [spec.destination.path for spec in config.access_log if spec.destination.is_file]
    directories = [os.path.dirname(path) for path in files]
    if config.pid_filename is not None:
        directories.append(os.path.dirname(config.pid_filename))
    if config.cache_dir is not None:
        directories.append(config.cache_dir.path)
    return [d for d in directories if d], files


def _owner(identity) -> tuple[int, int] | None:
    return (identity.uid, identity.gid) if identity is not None else None


def listening(config: Config) -> list:
    """Every port the configuration listens on: its http_ports, https_ports, then its metrics_ports."""
    return [*config.http_port, *config.https_port, *config.metrics_port]


def _port_kind(key) -> str:
    return "HTTP" if key[0] == "http" else key[0]


def _where(listen) -> str:
    host = listen.host or "*"
    return f"[{host}]:{listen.port}" if ":" in host else f"{host}:{listen.port}"


def _socket_reason(error: ierror.CannotListenError) -> str:
    reason = error.socketError
    return getattr(reason, "strerror", None) or str(reason)


def _sweep_interval(config: Config) -> float:
    """Sweep often enough that the shortest timeout fires within a quarter of itself."""
    shortest = min(config.request_timeout, config.read_timeout, config.client_idle_pconn_timeout,
                   config.server_idle_pconn_timeout, config.connect_timeout, config.request_start_timeout,
                   config.client_lifetime, config.write_timeout, config.pconn_lifetime or float("inf"))
    return max(0.05, min(1.0, shortest / 4))
