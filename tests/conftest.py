"""Shared fixtures: a real origin on loopback and real squidpy processes.

The suite runs in parallel (pytest-xdist, ``-n auto`` in setup.cfg: one process per
worker, each with its own ``origin`` and its own copy of every module-scoped fixture).
tests/README.md says what a test must do to stay fast and safe to run that way.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import sys
import tempfile
import time

import pytest

from tests.origin import Origin
from tests.proxyproc import ProxyProcess, public_dir


def _compiled_files_outside_the_tree() -> None:
    """With PYTHONDONTWRITEBYTECODE set (as on this project's machines, to keep source trees
    clean) every squidpy a test starts compiles squidpy again (50 ms of CPU, hundreds of times
    a run) and every worker rewrites every test module; for the suite, compiled files go to a
    cache outside the tree instead (inherited by the workers and every process they start)."""
    if os.environ.get("PYTHONDONTWRITEBYTECODE") and not os.environ.get("PYTHONPYCACHEPREFIX"):
        prefix = os.path.join(tempfile.gettempdir(), f"squidpy-test-pycache-{os.getuid()}")
        os.environ["PYTHONPYCACHEPREFIX"] = sys.pycache_prefix = prefix
        del os.environ["PYTHONDONTWRITEBYTECODE"]
        sys.dont_write_bytecode = False


_compiled_files_outside_the_tree()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """``-n auto``: three workers per CPU.  Most tests wait on other processes (a proxy
    starting, an origin answering, a log line appearing), so more workers than CPUs keep
    them busy (measured on 2 cores, whole suite: 4 workers 105 s, 6 workers 87-89 s, 8
    workers 88 s: beyond that, only their own start-up and collection).
    SQUIDPY_TEST_WORKERS overrides it."""
    wanted = os.environ.get("SQUIDPY_TEST_WORKERS")
    if wanted:
        return int(wanted)
    return 3 * (len(os.sched_getaffinity(0)) or 1)

# The policy most end-to-end tests run under: loopback clients only.
LOCAL_POLICY = """
acl local src 127.0.0.0/8 ::1
http_access allow local
http_access deny all
"""


MODULE_SECONDS = "squidpy/module-seconds"      # in pytest's cache (.pytest_cache)


def pytest_collection_modifyitems(config, items):
    """The longest modules first, each module's tests kept together and in order: each
    module runs on one worker (--dist loadscope), and a long one must not be the last to
    start.  How long a module takes is what the last whole-suite run measured (pytest's
    cache, written by pytest_sessionfinish below); a module it did not measure comes
    before the measured ones, those with a test marked ``slow`` first (without a cache,
    on a fresh checkout: the slow modules, then the others in file order)."""
    seconds = config.cache.get(MODULE_SECONDS, {}) if getattr(config, "cache", None) else {}
    slow = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}

    def order(item):
        module = item.nodeid.split("::")[0]
        if module not in seconds:
            return (0 if module in slow else 1, 0.0)
        return (2, -seconds[module])
    items.sort(key=order)


_module_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report):
    """Each module's duration (setup, call and teardown of its tests), added up where the
    reports arrive: in the controller of a parallel run."""
    module = report.nodeid.split("::")[0]
    _module_seconds[module] = _module_seconds.get(module, 0.0) + report.duration


def pytest_sessionfinish(session):
    """After a run of the whole suite (no paths, -k, -m or --lf), remember how long each
    module took, for the next run's order."""
    config = session.config
    if hasattr(config, "workerinput") or getattr(config, "cache", None) is None or not _module_seconds:
        return
    whole = (config.args_source == pytest.Config.ArgsSource.TESTPATHS and not config.option.keyword
             and not config.option.markexpr and not getattr(config.option, "lf", False)
             and not getattr(config.option, "failedfirst", False))
    if whole:
        config.cache.set(MODULE_SECONDS, {m: round(s, 2) for m, s in sorted(_module_seconds.items())})


@pytest.fixture(scope="session")
def origin():
    server = Origin().start()
    yield server
    server.stop()


@pytest.fixture
def make_proxy(tmp_path):
    """``make_proxy(config_text, **kw)`` starts squidpy; all are stopped at teardown."""
    started = []

    def make(config: str = LOCAL_POLICY, name: str = "proxy", **kw) -> ProxyProcess:
        proxy = ProxyProcess(tmp_path / f"{name}{len(started)}", config, **kw)
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()
    for proxy in started:
        assert_no_tracebacks(proxy)


@pytest.fixture(scope="module")
def shared_proxy(tmp_path_factory):
    """``shared_proxy(config_text)``: a squidpy with that configuration, started the first
    time a test of the module asks for that text and shared by the module's tests that ask
    for it again (each worker of a parallel run has its own).  For tests that only send
    requests: one that signals, reconfigures, stops the proxy or needs its cache or log
    empty uses ``make_proxy``.  Look for this test's access.log line by something only it
    requested (a unique URL or query): the line of the test before may still be the last."""
    started: dict[str, ProxyProcess] = {}

    def get(config: str = LOCAL_POLICY) -> ProxyProcess:
        if config not in started:
            started[config] = ProxyProcess(tmp_path_factory.mktemp("shared"), config)
        return started[config]

    yield get
    for proxy in started.values():
        proxy.stop()
    for proxy in started.values():
        assert_no_tracebacks(proxy)


@pytest.fixture(scope="session")
def squid_stops():
    """``squid_stops(*squids, then=cleanup)``: tell the Squids to stop now, and wait for
    them (then run ``cleanup``) in the background.  Squid takes a second or more to stop
    whatever shutdown_lifetime says (it waits shutdown_lifetime + 1 s): a test whose Squids'
    logs are read already need not wait for that.  Every stop has ended, or failed loudly,
    by the end of the session."""
    from concurrent.futures import ThreadPoolExecutor
    pool = ThreadPoolExecutor(4, thread_name_prefix="squid-stop")
    stops = []

    def stop_later(*squids, then=None):
        for squid in squids:
            squid.terminate()

        def stop():
            for squid in squids:
                squid.stop()
            if then is not None:
                then()
        stops.append(pool.submit(stop))

    yield stop_later
    pool.shutdown(wait=True)
    for stop in stops:
        stop.result()


@pytest.fixture
def make_squid(squid_stops):
    """``make_squid(config_text, **kw)`` starts the real Squid 5.7 (tests/squidproc.py) in a
    directory its 'proxy' user can enter; at teardown all are told to stop, and finish
    stopping (and their directory is removed) in the background (``squid_stops``)."""
    from tests.squidproc import SquidProcess, squid_root
    started = []
    root = squid_root()

    def make(config: str, **kw) -> SquidProcess:
        squid = SquidProcess(root / f"squid{len(started)}", config, **kw)
        started.append(squid)
        return squid

    yield make
    squid_stops(*started, then=lambda: shutil.rmtree(root, ignore_errors=True))


@pytest.fixture
def short_tmp():
    """A short directory for UNIX socket paths (108 bytes at most)."""
    import os
    import tempfile
    d = tempfile.mkdtemp(prefix="sq", dir="/tmp")
    yield d
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)


@pytest.fixture
def public_tmp():
    """A fresh directory under /tmp that another user may enter (a process that gives up
    root, such as squidpy with cache_effective_user, cannot enter pytest's tmp_path);
    removed afterwards."""
    path = public_dir("sqpy-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


LOCKS = "/tmp/squidpy-test-locks"


@contextlib.contextmanager
def exclusive(name: str, timeout: float = 600.0):
    """Hold the machine-wide lock ``name`` (an flock; released if the holder dies), for a
    test that changes state shared beyond its own processes and files (a fixed network
    namespace name, the host's firewall or routes, a systemd unit, a sysctl): tests run in
    parallel, and so may another checkout's suite.  Waits at most ``timeout`` seconds."""
    os.makedirs(LOCKS, mode=0o777, exist_ok=True)
    with open(os.path.join(LOCKS, f"{name}.lock"), "a") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the test lock {name!r} was held for more than {timeout:.0f} s") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """One squidpy with LOCAL_POLICY, shared by a test module."""
    p = ProxyProcess(tmp_path_factory.mktemp("proxy"), LOCAL_POLICY)
    yield p
    p.stop()
    assert_no_tracebacks(p)


def assert_no_tracebacks(proxy) -> None:
    """A proxy must never hit an unexpected exception, whatever a test threw at it."""
    log = proxy.read_cache_log()
    assert "Traceback" not in log, f"unexpected error in {proxy.cache_log}:\n{log[-3000:]}"


def raw_request(port: int, data: bytes, timeout: float = 5.0, read_until_close: bool = True) -> bytes:
    """Send raw bytes to the proxy and return everything it answers (bounded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if not read_until_close:
                    break
        except socket.timeout:
            pass
        return b"".join(chunks)


def read_response(f, method: str = "GET") -> tuple[int, dict, bytes]:
    """Read one HTTP/1.1 response from a binary file object: (status, headers, body).

    Header names are lower-cased; repeated headers are joined with ', '.
    """
    status_line = f.readline()
    if not status_line:
        raise EOFError("connection closed before a response")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    if method == "HEAD" or status < 200 or status in (204, 304):
        return status, headers, b""
    if "chunked" in headers.get("transfer-encoding", ""):
        out = []
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b""):
                    pass
                return status, headers, b"".join(out)
            out.append(f.read(size))
            f.readline()
    if "content-length" in headers:
        return status, headers, f.read(int(headers["content-length"]))
    return status, headers, f.read()


@pytest.fixture(scope="session")
def tls_origin(tmp_path_factory):
    """An HTTPS origin on loopback with a fresh self-signed certificate for 'localhost'."""
    import ssl
    import threading

    from tests.origin import Origin
    from tests.tlscert import make_self_signed

    d = tmp_path_factory.mktemp("tls")
    cert, key = make_self_signed(d, "localhost")
    server = Origin()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.cafile = str(cert)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_origins(tmp_path_factory):
    """TLS origins on loopback with good, expired, not yet valid, wrong-name, self-signed and
    unknown-CA certificates (tests/tlsorigins.py), signed by a test root in ``.cafile``."""
    from tests.tlsorigins import OriginSet

    origins = OriginSet(tmp_path_factory.mktemp("tls-origins"))
    yield origins
    origins.stop()
