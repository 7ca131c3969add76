"""The running proxy: listening ports, shared state, and Squid's -k actions.

:class:`ProxyService` owns what every connection shares (the configuration,
DNS cache, origin connection pool, logs, error pages, timeouts) and carries
out reconfigure (SIGHUP), rotate (SIGUSR1) and shutdown (SIGTERM/SIGINT).
A reconfigure swaps the configuration for new transactions and reconciles
the listening ports; live connections and listening sockets that stay are
untouched.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import time
from collections import Counter

from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.internet.task import LoopingCall

from squidpy import __version__
from squidpy.config import loader
from squidpy.errors import ErrorPages
from squidpy.http.message import via_value
from squidpy.log.access_log import AccessLog
from squidpy.log.cache_log import CacheLog
from squidpy.proxy.client_side import ClientFactory
from squidpy.proxy.closing import lose
from squidpy.proxy.dns import DnsCache, build_resolver
from squidpy.proxy.server_side import ServerPool
from squidpy.proxy.timeouts import Timeouts

log = logging.getLogger("squidpy")


class AlreadyRunning(Exception):
    pass


class ProxyService:
    def __init__(self, config, reactor, echo: bool = False, kid: int | None = None):
        self.reactor = reactor
        self.config = config
        self.echo = echo
        self.kid = kid                # the kid number under 'workers N', else None
        self.listeners: dict[tuple[str, int], object] = {}
        self.clients: set = set()
        self._per_ip: Counter = Counter()
        self.shutting_down = False
        self.started = time.time()
        self._over_capacity = False
        self.timeouts = Timeouts(_sweep_interval(config))
        self.pool = ServerPool(reactor, self.timeouts, config)
        self.dns = None
        self.access_log = None
        self.cache_log = None
        self.cache = None
        self._cache_dir = None
        self._flush = LoopingCall(self.flush_logs)
        self.fd_limit = raise_fd_limit(config.max_filedescriptors)
        self._apply(config)

    # ------------------------------------------------------------ configuration
    def _apply(self, config) -> None:
        """Derive everything that depends on the configuration."""
        self.config = config
        self.visible_hostname = config.visible_hostname
        self.via_name = config.visible_hostname if config.via else None
        self.via_header = via_value("1.1", config.visible_hostname) if config.via else None
        self.x_cache_miss = b"MISS from " + config.visible_hostname.encode("latin-1")
        self.x_cache_hit = b"X-Cache: HIT from " + config.visible_hostname.encode("latin-1") + b"\r\n"
        self._configure_cache(config)
        self.error_pages = ErrorPages(config.error_directory, config.visible_hostname, config.cache_mgr)
        self.dns = DnsCache(build_resolver(config.dns_nameservers), config.positive_dns_ttl,
                            config.negative_dns_ttl, config.dns_timeout,
                            (config.ipcache_size, config.ipcache_low, config.ipcache_high), config.fqdncache_size)
        self.max_clients = config.max_client_connections or max(16, self.fd_limit // 2)
        self.pool.configure(config)
        self.timeouts.set_interval(_sweep_interval(config))

    def _configure_cache(self, config) -> None:
        """The cache outlives reconfigurations unless its cache_dir changes."""
        from squidpy.cache.store import DiskTier, Store
        from squidpy.proxy.cache_side import Cache

        wanted = (config.cache_dir.path, config.cache_dir.size_mb) if config.cache_dir else None
        if self.cache is not None and wanted == self._cache_dir:
            self.cache.configure(config)
            return
        if self.cache is not None:
            self.cache.close()
        disk = DiskTier(*wanted) if wanted else None
        self.cache = Cache(self, config, Store(config.cache_mem, config.maximum_object_size_in_memory, disk))
        self._cache_dir = wanted

    def start(self) -> None:
        """Open logs, write the pid file, listen.  Raises on a port that cannot be opened."""
        config = self.config
        self.cache_log = CacheLog(config.cache_log, echo=self.echo, tag=self._tag())
        self.cache_log.capture_twisted()
        if self.kid is None:
            write_pid_file(config.pid_filename)
        self.access_log = AccessLog.from_config(config)
        log.info("Starting squidpy/%s (pid %d) with %s", __version__, os.getpid(), config.source)
        for warning in config.warnings:
            log.warning("%s", warning)
        try:
            for listen in config.http_port:
                self._listen(listen)
        except Exception:
            if self.kid is None:
                remove_pid_file(config.pid_filename)
            raise
        self.timeouts.start()
        self._flush.start(1.0, now=False)
        from squidpy.proxy.reactor import tune_gc, tune_malloc
        tune_gc()
        tune_malloc()

    def _tag(self) -> str | None:
        return f"kid{self.kid}" if self.kid is not None else None

    def _listen(self, listen) -> None:
        factory = ClientFactory(self, listen)
        if self.kid is not None or "reuseport" in listen.options:
            port = self._listen_reuseport(listen, factory)
        elif listen.host:
            port = self.reactor.listenTCP(listen.port, factory, backlog=1024, interface=listen.host)
        else:
            try:
                port = self.reactor.listenTCP(listen.port, factory, backlog=1024, interface="::")
            except ierror.CannotListenError:
                port = self.reactor.listenTCP(listen.port, factory, backlog=1024, interface="0.0.0.0")
        self.listeners[listen.key] = port
        address = port.getHost()
        shown = f"[{address.host}]" if ":" in address.host else address.host
        log.info("Accepting HTTP connections at %s:%d", shown, address.port)

    def _listen_reuseport(self, listen, factory):
        """A listening socket other processes may share (SO_REUSEPORT): the kernel spreads
        new connections among them."""
        host = listen.host or "::"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6 and not listen.host:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((host, listen.port))
            sock.listen(1024)
            sock.setblocking(False)
            return self.reactor.adoptStreamPort(sock.fileno(), family, factory)
        except OSError as e:
            raise ierror.CannotListenError(host, listen.port, e) from None
        finally:
            sock.close()

    def listening_ports(self) -> list[int]:
        return [p.getHost().port for p in self.listeners.values()]

    @property
    def my_port(self) -> int:
        """The port of the first http_port (as bound), which Squid puts in its own
        URLs (``http://visible_hostname:PORT/...``)."""
        for listen in self.config.http_port:
            port = self.listeners.get(listen.key)
            if port is not None:
                return port.getHost().port
        return 0

    def reconfigure(self) -> None:
        """Re-read the configuration file; on any error keep the running one."""
        log.info("Reconfiguring squidpy from %s", self.config.source)
        try:
            new = loader.load(self.config.source)
        except loader.ConfigErrors as e:
            for err in e.errors:
                log.error("reconfigure: %s", err)
            log.error("reconfigure failed: the previous configuration stays in force")
            return
        from squidpy.config.helper_directives import not_yet_served
        refused = not_yet_served(new)
        if refused:
            for problem in refused:
                log.error("reconfigure: %s", problem)
            log.error("reconfigure failed: the previous configuration stays in force")
            return
        for warning in new.warnings:
            log.warning("%s", warning)
        old = self.config
        wanted = {listen.key: listen for listen in new.http_port}
        for key in list(self.listeners):
            if key not in wanted:
                port = self.listeners.pop(key)
                port.stopListening()
                log.info("Closed HTTP port %s:%d", key[0] or "*", key[1])
        for key, listen in wanted.items():
            if key not in self.listeners:
                try:
                    self._listen(listen)
                except ierror.CannotListenError as e:
                    log.error("reconfigure: cannot listen on %s:%d: %s", key[0] or "*", key[1], e.socketError)
            else:
                self.listeners[key].factory.listen = listen
        self._apply(new)
        if new.cache_log != old.cache_log:
            self.cache_log.close()
            self.cache_log = CacheLog(new.cache_log, echo=self.echo, tag=self._tag())
        self.access_log = AccessLog.from_config(new, previous=self.access_log)
        if new.pid_filename != old.pid_filename and self.kid is None:
            remove_pid_file(old.pid_filename)
            write_pid_file(new.pid_filename)
        log.info("Reconfigured: %d http_port(s), %d http_access rule(s)",
                 len(self.listeners), len(new.http_access.rules))

    def rotate(self) -> None:
        keep = self.config.logfile_rotate
        self.access_log.rotate(keep)
        self.cache_log.rotate(keep)
        log.info("Rotated logs (keeping %d)", keep)

    def reopen_logs(self) -> None:
        """Under workers the master renamed the files: write on in new ones."""
        self.access_log.reopen()
        self.cache_log.rotate(0)

    # ------------------------------------------------------------ shutdown
    def shutdown(self) -> defer.Deferred:
        """Stop accepting, let transactions finish for shutdown_lifetime, then stop."""
        if self.shutting_down:
            return defer.succeed(None)
        self.shutting_down = True
        lifetime = self.config.shutdown_lifetime
        log.info("Shutting down: waiting up to %.0f seconds for %d active transaction(s)",
                 lifetime, sum(1 for c in self.clients if c.active is not None or c.tunnel is not None))
        stops = [defer.maybeDeferred(p.stopListening) for p in self.listeners.values()]
        self.listeners.clear()
        for client in list(self.clients):
            client.closing = True
            if client.active is None and not client.queue and client.tunnel is None:
                lose(client.transport)
        self.pool.close_idle()
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
        done.addCallback(lambda _: self._stopped())
        return done

    def _stopped(self) -> None:
        self.timeouts.stop()
        if self._flush.running:
            self._flush.stop()
        if self.access_log is not None:
            self.access_log.close()
        if self.cache is not None:
            self.cache.close()
        log.info("squidpy/%s stopped", __version__)
        if self.kid is None:
            remove_pid_file(self.config.pid_filename)
        if self.cache_log is not None:
            self.cache_log.close()

    # ------------------------------------------------------------ shared state for connections
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
        elif len(self.clients) > self.max_clients:
            if not self._over_capacity:
                log.warning("%d client connections: refusing new ones (max_client_connections)", len(self.clients))
            self._over_capacity = True
            client.refuse_now("ERR_CANNOT_FORWARD", "this proxy is serving as many connections as it can", 503)
        elif self._over_capacity and len(self.clients) < self.max_clients * 0.9:
            self._over_capacity = False

    def client_disconnected(self, client) -> None:
        if client in self.clients:
            self.clients.discard(client)
            self._per_ip[client.client_ip] -= 1
            if self._per_ip[client.client_ip] <= 0:
                del self._per_ip[client.client_ip]
        self.timeouts.discard(client)

    def connections_from(self, ip: str) -> int:
        return self._per_ip.get(ip, 0)

    def manager_report(self) -> dict:
        """What the cache manager pages show."""
        info = {
            "version": __version__, "pid": os.getpid(), "uptime_seconds": int(time.time() - self.started),
            "client_connections": len(self.clients),
            # the tables that grow with distinct names, each bounded (docs/security.md)
            "ipcache_entries": self.dns.ipcache_entries, "fqdncache_entries": self.dns.fqdncache_entries,
            "idle_server_origins": len(self.pool.idle),
        }
        if self.kid is not None:
            info["kid"] = self.kid
        if self.cache is not None:
            info.update(self.cache.stats())
        return {"info": info, "objects": self.cache.objects if self.cache is not None else list}

    def log_transaction(self, entry, checklist) -> None:
        if self.cache is not None:
            self.cache.record(entry)
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

    def _stop_reactor(self) -> None:
        d = self.shutdown()
        d.addBoth(lambda _: self.reactor.stop() if self.reactor.running else None)


def write_pid_file(path: str | None) -> None:
    """Write our pid; refuses when another live squidpy holds the file."""
    if path is None:
        return
    other = read_pid(path)
    if other is not None and other != os.getpid() and _alive(other):
        raise AlreadyRunning(f"squidpy is already running as process {other} (pid_filename {path})")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")


def remove_pid_file(path: str | None) -> None:
    if path is not None and read_pid(path) == os.getpid():
        _unlink(path)


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


def read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unlink(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


def _sweep_interval(config) -> float:
    """Sweep often enough that the shortest timeout fires within a quarter of itself."""
    shortest = min(config.request_timeout, config.read_timeout, config.client_idle_pconn_timeout,
                   config.server_idle_pconn_timeout, config.connect_timeout)
    return max(0.05, min(1.0, shortest / 4))
