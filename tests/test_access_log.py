"""The access log writers against real files and real sockets (no proxy): files, disk
full, removed files, rotation, syslog on a UNIX datagram socket, UDP and TCP collectors.

The UDP and TCP writers run on Twisted: these tests turn the (default, global) reactor
by hand with :func:`until`, so what the reactor does between two calls is explicit."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from twisted.internet import defer, reactor

from squidpy.acl.checklist import Checklist
from squidpy.config import loader
from squidpy.log.access_log import AccessLog, DnsError, FileLog, SyslogLog, TcpLog, UdpLog
from squidpy.log.destination import parse_destination
from squidpy.log.entry import LogEntry
from tests.proxyproc import wait_for


@pytest.fixture
def messages():
    """cache_log messages squidpy's logger emits during the test."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("squidpy")
    handler = Keep()
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(old)


def until(predicate, timeout: float = 10.0) -> bool:
    """Turn the reactor until ``predicate()`` holds (False after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        reactor.iterate(0.01)


def closed(writer) -> None:
    """Close a writer and turn the reactor until it is done (a network writer's close
    takes one second at most)."""
    done = defer.maybeDeferred(writer.close)
    assert until(lambda: done.called, 10)
    until(lambda: False, 0.05)       # the reactor closes the sockets it was told to


def lines_of(path) -> list[str]:
    with open(path, "rb") as f:
        return f.read().decode("latin-1").splitlines()


# ------------------------------------------------------------ files

def test_lines_wait_in_memory_until_the_flush(tmp_path):
    path = tmp_path / "logs" / "access.log"
    w = FileLog(str(path))
    w.write("one")
    w.write("two")
    assert path.read_bytes() == b""
    w.flush()
    assert lines_of(path) == ["one", "two"]
    w.close()


def test_a_full_buffer_is_written_before_the_second(tmp_path):
    path = tmp_path / "access.log"
    w = FileLog(str(path), buffer_size=100)
    for i in range(30):
        w.write(f"line {i:02d}")
    assert 0 < len(lines_of(path)) < 30
    w.close()
    assert lines_of(path) == [f"line {i:02d}" for i in range(30)]


def test_request_bytes_are_written_back_as_they_came(tmp_path):
    path = tmp_path / "access.log"
    w = FileLog(str(path))
    w.write("caf\u00e9")               # the byte 0xE9 as squidpy keeps it
    w.write("arrow \u2192")            # an admin's literal text beyond latin-1
    w.close()
    assert path.read_bytes() == b"caf\xe9\n" + "arrow \u2192\n".encode()


def test_disk_full_keeps_going_counts_and_recovers(tmp_path, messages):
    """/dev/full answers every write with ENOSPC, as a full disk does."""
    link = tmp_path / "access.log"
    os.symlink("/dev/full", link)
    w = FileLog(str(link))
    for i in range(5):
        w.write(f"lost {i}")
    w.flush()
    w.write("lost 5")
    w.flush()
    assert w.lost == 6
    assert sum("cannot write: No space left on device" in m for m in messages) == 1
    # space comes back: the name now leads to a real file
    real = tmp_path / "real.log"
    os.symlink(real, tmp_path / "tmp-link")
    os.replace(tmp_path / "tmp-link", link)
    w.write("kept")
    w.flush()
    assert lines_of(real) == ["kept"]
    assert "access_log %s: writing again; 6 line(s) were lost meanwhile" % link in messages
    w.close()


def test_a_write_cut_short_leaves_no_broken_line_after_recovery(tmp_path):
    """RLIMIT_FSIZE makes the kernel cut a write in the middle (EFBIG), like a disk filling up."""
    script = textwrap.dedent(f"""
        import os, resource, signal
        from squidpy.log.access_log import FileLog
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, hard))
        w = FileLog({str(tmp_path / 'access.log')!r})
        for i in range(10):
            w.write(f"line {{i}} " + "x" * 20)
        w.flush()
        print(w.lost)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        w.write("after")
        w.close()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = lines_of(tmp_path / "access.log")
    assert int(out.stdout) == 10 - 3          # 3 whole lines of 28 bytes fit in 100 bytes, the 4th is cut
    assert lines[:3] == [f"line {i} " + "x" * 20 for i in range(3)]
    assert lines[3] == "line 3 " + "x" * 9      # the cut line stays alone on its line
    assert lines[4:] == ["after"]


def test_a_removed_file_is_created_again(tmp_path, messages):
    path = tmp_path / "access.log"
    w = FileLog(str(path))
    w.write("before")
    w.flush()
    path.unlink()
    w.write("after")
    w.flush()
    assert lines_of(path) == ["after"]
    assert any("was removed or replaced" in m for m in messages)
    assert w.lost == 0
    w.close()


def test_a_vanished_directory_counts_lines_until_it_is_back(tmp_path, messages):
    """The log directory is replaced by a file (what even root cannot write through)."""
    d = tmp_path / "logs"
    path = d / "access.log"
    w = FileLog(str(path))
    path.unlink()
    d.rmdir()
    d.write_text("not a directory")
    w.write("lost")
    w.flush()
    assert w.lost == 1 and any("cannot open: Not a directory" in m for m in messages)
    d.unlink()
    w.write("kept")
    w.flush()                                  # the directory is made again
    assert lines_of(path) == ["kept"]
    assert any("writing again; 1 line(s) were lost meanwhile" in m for m in messages)
    w.close()


def test_rotate_keeps_n_copies(tmp_path):
    path = tmp_path / "access.log"
    w = FileLog(str(path))
    for n in range(5):
        w.write(f"generation {n}")
        w.rotate(3)
    w.write("current")
    w.close()
    assert lines_of(path) == ["current"]
    assert [lines_of(tmp_path / f"access.log.{i}") for i in range(3)] == [["generation 4"], ["generation 3"], ["generation 2"]]
    assert not (tmp_path / "access.log.3").exists()


def test_rotate_zero_only_reopens_for_logrotate(tmp_path):
    path = tmp_path / "access.log"
    w = FileLog(str(path))
    w.write("old")
    os.rename(path, tmp_path / "access.log.1")         # what logrotate does first
    w.rotate(0)                                        # then 'squidpy signal rotate'
    w.write("new")
    w.close()
    assert lines_of(tmp_path / "access.log.1") == ["old"]
    assert lines_of(path) == ["new"]


# ------------------------------------------------------------ syslog

def test_syslog_sends_one_rfc3164_datagram_per_line(short_tmp):
    path = os.path.join(short_tmp, "log")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    w = SyslogLog(parse_destination("syslog:local3.notice"), path)
    w.write("1795369446.165 13 10.0.0.7 TCP_MISS/200 1450 GET http://example.com/ - HIER_DIRECT/1.2.3.4 text/html")
    w.write("second")
    w.flush()
    first, second = server.recv(4096).decode(), server.recv(4096).decode()
    # <PRI> is facility * 8 + priority: local3 (19) * 8 + notice (5) = 157
    assert first.startswith("<157>") and f" squidpy[{os.getpid()}]: 1795369446.165 13 10.0.0.7 TCP_MISS/200" in first
    assert time.strftime("%b %e ") in first[5:12]
    assert second.endswith(": second")
    w.close()
    server.close()


def test_syslog_down_then_up(short_tmp, messages):
    path = os.path.join(short_tmp, "log")
    w = SyslogLog(parse_destination("syslog"), path)
    w.write("waits")
    w.flush()
    assert any("cannot reach the syslog socket" in m for m in messages)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    assert wait_for(lambda: (w.flush(), not w.queue)[1], timeout=5, interval=0.1)
    assert server.recv(4096).decode().startswith("<166>")      # local4.info, Squid's default
    w.close()
    server.close()


def test_syslog_that_does_not_keep_up_loses_lines_instead_of_blocking(short_tmp, messages):
    path = os.path.join(short_tmp, "log")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)                # bound, never read: its queue fills up
    w = SyslogLog(parse_destination("syslog:daemon.info"), path)
    w.backlog = 200_000
    for i in range(3000):
        w.write(f"{i} " + "x" * 500)
        if i % 100 == 0:
            w.flush()                # never waits: what the daemon cannot take stays queued
    w.flush()
    assert w.lost > 0 and 0 < w.queued <= w.backlog
    assert any("the syslog daemon does not keep up" in m for m in messages)
    for _ in range(2000):            # the daemon catches up: the waiting lines go out
        try:
            server.recv(4096, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
    w.flush()
    assert w.queued < 200_000
    w.close()
    server.close()


# ------------------------------------------------------------ UDP and TCP

@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_udp_sends_each_line_as_a_datagram(family, host):
    server = socket.socket(family, socket.SOCK_DGRAM)
    try:
        server.bind((host, 0))
    except OSError:
        pytest.skip(f"no {host} here")
    server.settimeout(5)
    port = server.getsockname()[1]
    place = f"[{host}]" if ":" in host else host
    w = UdpLog(parse_destination(f"udp://{place}:{port}"))
    w.write("one")
    w.write("two")
    w.flush()
    assert [server.recv(2048), server.recv(2048)] == [b"one\n", b"two\n"]
    closed(w)
    server.close()


def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(5)
    s.settimeout(5)
    return s


def read_lines(conn, count: int) -> list[str]:
    conn.settimeout(5)
    data = b""
    while data.count(b"\n") < count:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode().splitlines()


def test_tcp_streams_lines_and_reconnects(messages):
    server = listener()
    port = server.getsockname()[1]
    w = TcpLog(parse_destination(f"tcp://127.0.0.1:{port}"))
    for i in range(3):
        w.write(f"line {i}")
    assert until(lambda: (w.flush(), not w.queue)[1], timeout=5)
    conn, _ = server.accept()
    assert read_lines(conn, 3) == ["line 0", "line 1", "line 2"]
    assert f"access_log tcp://127.0.0.1:{port}: connected" in messages
    # the collector goes away; lines wait, then go to the next connection
    conn.close()
    until(lambda: w.connection is None, 5)
    for i in range(3, 6):
        w.write(f"line {i}")
        w.flush()
        until(lambda: False, 0.05)
    assert until(lambda: (w.flush(), not w.queue and w.connection is not None)[1], timeout=10)
    conn, _ = server.accept()
    got = read_lines(conn, 1)
    assert got and got[-1] == "line 5" and all(line in {f"line {i}" for i in range(3, 6)} for line in got)
    assert any("the collector closed the connection" in m for m in messages)
    closed(w)
    conn.close()
    server.close()


def test_tcp_collector_down_keeps_a_bounded_backlog_and_reports_losses(messages):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()                           # nobody listens there now
    w = TcpLog(parse_destination(f"tcp://127.0.0.1:{port}"))
    w.backlog = 1000
    for i in range(100):
        w.write(f"line {i:03d} " + "x" * 40)   # 50 bytes each: 20 fit in the backlog
        w.flush()
        if i == 0:                              # the first connection attempt fails
            assert until(lambda: w.attempt is None, 5)
    assert w.queued <= 1000 and w.lost == 80
    assert any("cannot connect: Connection refused" in m for m in messages)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(5)
    server.settimeout(5)
    assert until(lambda: (w.flush(), not w.queue)[1], timeout=10)
    conn, _ = server.accept()
    assert [line[:8] for line in read_lines(conn, 20)] == [f"line {i:03d}" for i in range(80, 100)]
    assert f"access_log tcp://127.0.0.1:{port}: writing again; 80 line(s) were lost meanwhile" in messages
    closed(w)
    conn.close()
    server.close()


def test_tcp_collector_that_never_reads_cannot_block_the_proxy():
    server = listener()
    port = server.getsockname()[1]
    w = TcpLog(parse_destination(f"tcp://127.0.0.1:{port}"))
    w.backlog = 256 * 1024
    line = "x" * 1000
    for i in range(20_000):                 # 20 MB: far more than socket buffers and the backlog
        w.write(line)
        if i % 100 == 0:
            w.flush()
            reactor.iterate(0)              # connect, and write what the kernel takes
    assert w.connection is not None         # connected: the kernel's buffers filled up
    assert w.lost > 0 and w.queued <= w.backlog
    closed(w)
    server.close()


class Lookups:
    """A resolver the test answers by hand: the proxy's DNS cache as the writers see it."""

    def __init__(self):
        self.asked: list[str] = []
        self.pending: list[defer.Deferred] = []

    def __call__(self, host: str) -> defer.Deferred:
        self.asked.append(host)
        d = defer.Deferred()
        self.pending.append(d)
        return d


def test_tcp_collector_named_by_a_name_is_looked_up_without_waiting(messages):
    server = listener()
    port = server.getsockname()[1]
    lookups = Lookups()
    w = TcpLog(parse_destination(f"tcp://collector.test:{port}"), resolve=lookups)
    w.write("first")
    w.flush()                                # asks for the name, returns at once
    assert lookups.asked == ["collector.test"]
    for i in range(50):                      # the lookup is pending: lines queue, the reactor turns
        w.write(f"line {i}")
        w.flush()
        reactor.iterate(0)
    assert lookups.asked == ["collector.test"] and w.connection is None and len(w.queue) == 51
    lookups.pending[0].callback(["127.0.0.1"])
    assert until(lambda: (w.flush(), not w.queue)[1], 10)
    conn, _ = server.accept()
    assert read_lines(conn, 51) == ["first"] + [f"line {i}" for i in range(50)]
    assert w.lost == 0
    closed(w)
    conn.close()
    server.close()


def test_tcp_collector_name_that_cannot_be_looked_up_is_retried_with_backoff(messages):
    lookups = Lookups()
    w = TcpLog(parse_destination("tcp://collector.test:9"), resolve=lookups)
    w.write("waits")
    w.flush()
    lookups.pending[0].errback(DnsError("Name Error: the domain name 'collector.test' does not exist"))
    assert ("access_log tcp://collector.test:9: cannot resolve collector.test: Name Error: the domain name "
            "'collector.test' does not exist; access log lines are being lost") in messages
    w.flush()                                # within the backoff: not asked again
    assert len(lookups.asked) == 1
    w.next_attempt = 0                       # the backoff is over
    w.flush()
    assert len(lookups.asked) == 2 and w.queue and w.lost == 0
    w.on_fatal = None
    lookups.pending[1].errback(DnsError("no"))
    closed(w)
    assert w.lost == 1 and not w.queue


def test_udp_collector_named_by_a_name_is_looked_up_without_waiting():
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(5)
    lookups = Lookups()
    w = UdpLog(parse_destination(f"udp://collector.test:{server.getsockname()[1]}"), resolve=lookups)
    w.write("one")
    w.flush()
    w.write("two")
    w.flush()
    assert lookups.asked == ["collector.test"] and len(w.queue) == 2
    lookups.pending[0].callback(["127.0.0.1"])
    assert [server.recv(2048), server.recv(2048)] == [b"one\n", b"two\n"]
    closed(w)
    server.close()


def test_udp_close_waits_for_a_pending_lookup_at_most_a_moment():
    lookups = Lookups()
    w = UdpLog(parse_destination("udp://collector.test:9"), resolve=lookups)
    w.write("never sent")
    w.flush()
    closed(w)                                # the lookup never answers: given up
    assert w.lost == 1 and not w.queue


def test_tcp_close_delivers_what_is_queued():
    server = listener()
    port = server.getsockname()[1]
    w = TcpLog(parse_destination(f"tcp://127.0.0.1:{port}"))
    w.flush()
    assert until(lambda: w.connection is not None, 5)
    for i in range(1000):                    # queued, not yet flushed: the close sends them
        w.write(f"line {i}")
    done = w.close()
    conn, _ = server.accept()
    assert until(lambda: done.called, 10)
    assert read_lines(conn, 1000) == [f"line {i}" for i in range(1000)]
    assert conn.recv(10) == b""              # and closes the connection
    assert w.lost == 0
    conn.close()
    server.close()


def test_tcp_close_while_connecting_delivers_once_connected():
    server = listener()
    port = server.getsockname()[1]
    w = TcpLog(parse_destination(f"tcp://127.0.0.1:{port}"))
    w.write("last words")
    w.flush()                                # the connect is under way
    assert w.attempt is not None
    done = w.close()
    assert until(lambda: done.called, 10)
    conn, _ = server.accept()
    assert read_lines(conn, 1) == ["last words"] and w.lost == 0
    conn.close()
    server.close()


def test_tcp_close_gives_up_on_a_collector_that_never_reads(messages):
    server = listener()                      # accepts (the kernel does), never reads
    port = server.getsockname()[1]
    w = TcpLog(parse_destination(f"tcp://127.0.0.1:{port}"))
    w.flush()
    assert until(lambda: w.connection is not None, 5)
    for _ in range(4000):                    # 4 MB: more than the kernel's buffers take
        w.write("x" * 1000)
    done = w.close()
    assert until(lambda: done.called, 10)   # one second, not as long as the collector likes
    assert w.lost > 0 and not w.queue and w.connection is None
    assert any("closed with lines not yet sent" in m for m in messages)
    server.close()


# ------------------------------------------------------------ AccessLog: filters, order, none

def config_with(text: str):
    return loader.load(text=text, path="/tmp/squidpy-test.conf")


def test_each_line_has_its_filter_and_none_stops_logging(tmp_path):
    config = config_with(f"""
acl health urlpath_regex ^/health
acl lan src 10.0.0.0/8
acl posts method POST
access_log none health
access_log {tmp_path}/all.log squid
access_log {tmp_path}/lan.log logformat=common lan
access_log {tmp_path}/posts.log squid posts
logformat short %sn %>a %ru
access_log {tmp_path}/short.log short
""")
    log = AccessLog.from_config(config)
    for ip, path, method in [("10.1.1.1", "/a", "GET"), ("192.0.2.9", "/b", "POST"), ("10.1.1.1", "/health", "POST"),
                             ("10.2.2.2", "/c", "POST")]:
        e = LogEntry(1795369446.0)
        e.end = 1795369446.5
        e.client_ip, e.method, e.url, e.path, e.status = ip, method, f"http://x{path}", path, 200
        ch = Checklist(src=ip, method=method, url=e.url, path=path, host="x")
        log.log(e, ch)
    log.close()
    assert [l.split()[6] for l in lines_of(tmp_path / "all.log")] == ["http://x/a", "http://x/b", "http://x/c"]
    assert [l.split()[0] for l in lines_of(tmp_path / "lan.log")] == ["10.1.1.1", "10.2.2.2"]
    assert [l.split()[6] for l in lines_of(tmp_path / "posts.log")] == ["http://x/b", "http://x/c"]
    assert ch.reply_status == 200        # reply ACLs see the status sent
    assert lines_of(tmp_path / "short.log") == ["1 10.1.1.1 http://x/a", "2 192.0.2.9 http://x/b", "3 10.2.2.2 http://x/c"]


def test_two_lines_to_one_file_share_one_writer_and_rotate_once(tmp_path):
    config = config_with(f"access_log {tmp_path}/a.log squid\naccess_log stdio:{tmp_path}/a.log common\n")
    log = AccessLog.from_config(config)
    assert len(log.writers) == 1
    log.rotate(2)
    log.close()
    assert (tmp_path / "a.log.0").exists() and not (tmp_path / "a.log.1").exists()


def test_reconfigure_keeps_open_destinations(tmp_path):
    server = listener()
    port = server.getsockname()[1]
    first = AccessLog.from_config(config_with(f"access_log {tmp_path}/a.log\naccess_log tcp://127.0.0.1:{port}\n"))
    file_writer, tcp_writer = first.writers[f"{tmp_path}/a.log"], first.writers[f"tcp://127.0.0.1:{port}"]
    second = AccessLog.from_config(config_with(f"access_log {tmp_path}/a.log common\naccess_log tcp://127.0.0.1:{port}\n"),
                                   previous=first)
    second.commit()
    assert second.writers[f"{tmp_path}/a.log"] is file_writer
    assert second.writers[f"tcp://127.0.0.1:{port}"] is tcp_writer
    third = AccessLog.from_config(config_with(f"access_log {tmp_path}/b.log\n"), previous=second)
    assert file_writer._fd is not None                              # nothing changes before the commit
    third.commit()
    assert tcp_writer.closed and file_writer._fd is None           # dropped destinations are closed
    closed(third)
    server.close()


def test_on_error_die_is_the_default_and_drop_only_counts(tmp_path):
    fatal: list[str] = []
    os.symlink("/dev/full", tmp_path / "full.log")
    config = config_with(f"access_log {tmp_path}/full.log\naccess_log {tmp_path}/kept.log on-error=drop squid\n")
    assert [spec.on_error for spec in config.access_log] == ["die", "drop"]
    log = AccessLog.from_config(config, on_fatal=fatal.append)
    entry = LogEntry(time.time())
    log.log(entry)
    log.flush()
    assert fatal == [f"access_log {tmp_path}/full.log: cannot write: No space left on device"]
    log.close()
    fatal.clear()
    log = AccessLog.from_config(config_with(f"access_log {tmp_path}/full.log on-error=drop\n"), on_fatal=fatal.append)
    log.log(entry)
    log.flush()
    assert fatal == [] and log.lost == 1
    log.close()


def test_a_file_that_cannot_be_opened_fails_a_die_log_before_any_line(tmp_path):
    (tmp_path / "file").write_text("")
    log = AccessLog.from_config(config_with(f"access_log {tmp_path}/file/a.log\n"), on_fatal=lambda m: None)
    assert log.failures() == [f"access_log {tmp_path}/file/a.log: cannot open: Not a directory"]
    log.close()
    log = AccessLog.from_config(config_with(f"access_log {tmp_path}/file/a.log on-error=drop\n"))
    assert log.failures() == []
    log.close()


def test_two_lines_to_one_destination_die_if_either_says_so(tmp_path):
    fatal: list[str] = []
    os.symlink("/dev/full", tmp_path / "full.log")
    log = AccessLog.from_config(config_with(f"access_log {tmp_path}/full.log on-error=drop\n"
                                            f"access_log {tmp_path}/full.log on-error=die common\n"),
                                on_fatal=fatal.append)
    log.log(LogEntry(time.time()))
    log.flush()
    assert len(log.writers) == 1 and len(fatal) == 1
    log.close()


def test_a_collector_that_is_down_is_fatal_only_when_lines_are_lost():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    fatal: list[str] = []
    log = AccessLog.from_config(config_with(f"access_log tcp://127.0.0.1:{port}\n"), on_fatal=fatal.append)
    writer = log.writers[f"tcp://127.0.0.1:{port}"]
    writer.backlog = 1000
    for _ in range(5):                       # waiting lines: not yet a loss
        log.log(LogEntry(time.time()))
    log.flush()
    assert fatal == []
    for _ in range(50):
        log.log(LogEntry(time.time()))
    assert fatal and fatal[0] == f"access_log tcp://127.0.0.1:{port}: its buffer is full"
    for w in log.writers.values():
        w.on_fatal = None
    closed(log)


def test_destination_syntax_errors_name_the_problem():
    for text, message in [("tcp://host", "expected HOST:PORT"), ("udp://[::1]", "expected [IPv6]:PORT"),
                          ("tcp://h:99999", "not a port number"), ("syslog:local9.info", "unknown syslog facility"),
                          ("syslog:daemon.loud", "unknown syslog priority"), ("kafka:topic", "unknown access_log module"),
                          ("stdio:", "a file name must follow")]:
        with pytest.raises(ValueError, match=message.replace("[", r"\[")):
            parse_destination(text)
    errors = None
    try:
        config_with("access_log /tmp/a.log bogus=1\n")
    except loader.ConfigErrors as e:
        errors = [str(x) for x in e.errors]
    assert errors and "unknown access_log option 'bogus='" in errors[0] and "/tmp/squidpy-test.conf:1" in errors[0]
