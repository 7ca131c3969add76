"""End to end: the real proxy logging to every kind of destination, rotating under live
traffic, and going on serving through a full disk or a removed log file."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import LOCAL_POLICY, raw_request, read_response
from tests.dnsserver import DnsServer
from tests.proxyproc import wait_for

# about 11 s of wall-clock time: on a fresh checkout (no timings in pytest's cache) it starts first
pytestmark = pytest.mark.slow


def fetch(proxy, url: str, timeout: float = 10) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.url}))
    try:
        with opener.open(url, timeout=timeout) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def all_lines(directory: Path, name: str = "access.log") -> list[str]:
    lines = []
    for path in sorted(directory.glob(name + "*")):
        lines.extend(l for l in path.read_text(errors="replace").splitlines() if l)
    return lines


def test_every_destination_at_once_each_with_its_filter(make_proxy, origin, short_tmp, tmp_path):
    syslog_path = os.path.join(short_tmp, "log")
    syslog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    syslog.bind(syslog_path)
    syslog.settimeout(10)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(10)
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1)
    tcp.settimeout(10)
    logs = tmp_path / "logs"
    proxy = make_proxy(f"""
acl blocked dstdomain .blocked.test
http_access deny blocked
{LOCAL_POLICY}
syslog_socket {syslog_path}
logformat audit %tS %>a %un %rm %ru %>Hs %Ss
access_log {logs}/access.log squid
access_log {logs}/denied.log logformat=audit blocked
access_log syslog:local5.info squid
access_log udp://127.0.0.1:{udp.getsockname()[1]} common
access_log tcp://127.0.0.1:{tcp.getsockname()[1]} logformat=audit
""")
    assert fetch(proxy, origin.url("/size/10")) == 200
    assert fetch(proxy, "http://www.blocked.test/") == 403
    assert fetch(proxy, origin.url("/size/20")) == 200
    main = wait_for(lambda: len(all_lines(logs)) == 3 and all_lines(logs), 10)
    assert [l.split()[3] for l in main] == ["TCP_MISS/200", "TCP_DENIED/403", "TCP_MISS/200"]
    denied = (logs / "denied.log").read_text().splitlines()
    assert len(denied) == 1 and denied[0].split()[3:] == ["GET", "http://www.blocked.test/", "403", "TCP_DENIED"]
    # syslog: local5.info = <174>
    datagrams = [syslog.recv(4096).decode() for _ in range(3)]
    assert all(d.startswith("<174>") and " squidpy[" in d for d in datagrams)
    assert [d.split("]: ", 1)[1] for d in datagrams] == main
    # UDP, common format
    udp_lines = [udp.recv(4096).decode() for _ in range(3)]
    assert all(l.endswith("\n") for l in udp_lines)
    assert ['"GET http://www.blocked.test/ HTTP/1.1" 403' in l for l in udp_lines] == [False, True, False]
    # TCP, audit format
    conn, _ = tcp.accept()
    conn.settimeout(10)
    data = b""
    while data.count(b"\n") < 3:
        data += conn.recv(65536)
    assert [l.split()[5] for l in data.decode().splitlines()] == ["200", "403", "200"]
    for s in (conn, tcp, udp, syslog):
        s.close()


def test_rotation_under_live_traffic_loses_and_duplicates_nothing(make_proxy, origin):
    """With squidpy's own buffered access_log (written once a second): what is buffered when
    a rotation comes goes to the file it was logged for."""
    proxy = make_proxy(LOCAL_POLICY + "logfile_rotate 10\n", flush_each_line=False)
    done = threading.Event()
    sent: list[int] = []
    errors: list[str] = []

    def client(start: int):
        n = start
        while not done.is_set() and n < start + 100_000:
            try:
                status = fetch(proxy, origin.url(f"/size/1?n={n}"))
                if status == 200:
                    sent.append(n)
            except OSError as e:
                errors.append(str(e))
            n += 1

    threads = [threading.Thread(target=client, args=(k * 1_000_000,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(5):          # four rotations with traffic before, between and after them
            mark = len(sent)
            assert wait_for(lambda: len(sent) >= mark + 20, 20)
            if _ < 4:
                proxy.signal(signal.SIGUSR1)
    finally:
        done.set()
        for t in threads:
            t.join(30)
    assert not errors and len(sent) > 40
    proxy.stop()
    logged = [int(l.split()[6].rsplit("=", 1)[1]) for l in all_lines(proxy.dir) if "?n=" in l]
    assert sorted(logged) == sorted(sent)            # every request once: none lost, none twice
    rotated = sorted(proxy.dir.glob("access.log.*"))
    assert [p.name for p in rotated] == [f"access.log.{i}" for i in range(4)]
    assert all(p.stat().st_size > 0 for p in rotated)


def test_logfile_rotate_0_reopens_after_logrotate_renamed_the_file(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "logfile_rotate 0\n")
    assert fetch(proxy, origin.url("/size/1?first")) == 200
    assert proxy.log_line("?first")
    os.rename(proxy.access_log, proxy.dir / "access.log.1")     # logrotate's rename (nocreate)
    proxy.signal(signal.SIGUSR1)
    assert wait_for(lambda: "Rotated logs (keeping 0)" in proxy.read_cache_log(), 10)
    assert fetch(proxy, origin.url("/size/1?second")) == 200
    assert proxy.log_line("?second")
    assert "?second" not in (proxy.dir / "access.log.1").read_text()
    assert not list(proxy.dir.glob("access.log.0"))


def test_disk_full_keeps_serving_reports_counts_and_resumes(make_proxy, origin, tmp_path):
    """on-error=drop: the admin chose serving over auditing.  Each line is written as it is
    logged (buffer-size), and the five go over one connection followed by an unlogged
    request: when its reply comes, the five were tried (a connection's next request is
    read only after the last one is logged)."""
    link = tmp_path / "full" / "access.log"
    link.parent.mkdir()
    os.symlink("/dev/full", link)       # every write: ENOSPC, exactly what a full disk answers
    proxy = make_proxy(LOCAL_POLICY + "acl barrier urlpath_regex ^/size/0\n"
                       f"access_log {link} buffer-size=1bytes on-error=drop squid !barrier\n")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        f = s.makefile("rb")
        for target in [f"/size/1?while-full={i}" for i in range(5)] + ["/size/0?barrier"]:
            s.sendall(f"GET {origin.url(target)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert read_response(f)[0] == 200
    assert "cannot write: No space left on device" in proxy.read_cache_log()
    real = tmp_path / "full" / "real.log"
    os.symlink(real, tmp_path / "full" / "new-link")
    os.replace(tmp_path / "full" / "new-link", link)   # space is back
    assert fetch(proxy, origin.url("/size/1?after")) == 200
    assert wait_for(lambda: real.exists() and "?after" in real.read_text(), 10)
    assert "while-full" not in real.read_text()
    assert wait_for(lambda: "writing again; 5 line(s) were lost meanwhile" in proxy.read_cache_log(), 5)
    assert proxy.read_cache_log().count("lines are being lost") == 1


def test_an_audit_log_that_cannot_be_written_stops_the_proxy_by_default(make_proxy, origin, tmp_path):
    """on-error=die is the default, as in Squid: no request goes unlogged."""
    link = tmp_path / "full" / "access.log"
    link.parent.mkdir()
    os.symlink("/dev/full", link)
    proxy = make_proxy(LOCAL_POLICY + f"access_log {link} squid\n")
    assert fetch(proxy, origin.url("/size/1?the-last")) == 200
    assert proxy.proc.wait(10) == 1
    log = proxy.read_cache_log()
    assert f"FATAL: access_log {link}: cannot write: No space left on device" in log
    assert "stopping: a log it must write cannot be written" in log
    assert not proxy.pid_file.exists()
    assert "Traceback" not in proxy.read_stderr()


def test_a_start_with_an_audit_log_it_cannot_open_fails_in_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    conf = tmp_path / "squidpy.conf"
    conf.write_text(LOCAL_POLICY + f"http_port 127.0.0.1:0\ncache_log {tmp_path}/cache.log\n"
                    f"pid_filename {tmp_path}/squidpy.pid\naccess_log {tmp_path}/file/access.log squid\n")
    out = subprocess.run([sys.executable, "-m", "squidpy", "run", "-f", str(conf)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"squidpy: cannot start: access_log {tmp_path}/file/access.log: cannot open: Not a directory"]
    assert f"FATAL: access_log {tmp_path}/file/access.log: cannot open: Not a directory" in (tmp_path / "cache.log").read_text()
    assert not (tmp_path / "squidpy.pid").exists()
    # with on-error=drop the admin chose to serve anyway: it starts, and says what is lost
    conf.write_text(conf.read_text().replace("access.log squid", "access.log on-error=drop squid"))
    (tmp_path / "cache.log").unlink()
    proc = subprocess.Popen([sys.executable, "-m", "squidpy", "run", "-f", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cache_log = tmp_path / "cache.log"
        assert wait_for(lambda: cache_log.exists() and "Accepting HTTP connections" in cache_log.read_text(), 15)
        assert proc.poll() is None
        assert wait_for(lambda: "cannot open: Not a directory; access log lines are being lost"
                        in cache_log.read_text(), 10), cache_log.read_text()
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


def test_removed_log_file_comes_back(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY)
    assert fetch(proxy, origin.url("/size/1?before")) == 200
    assert proxy.log_line("?before")
    proxy.access_log.unlink()
    assert fetch(proxy, origin.url("/size/1?after")) == 200
    assert proxy.log_line("?after")
    assert "?before" not in proxy.access_log.read_text()
    assert "was removed or replaced; opening it again" in proxy.read_cache_log()


def test_a_client_cannot_forge_lines_through_headers(make_proxy, origin):
    proxy = make_proxy(LOCAL_POLICY + "access_log combined.log combined\n")
    url = origin.url("/size/1")
    reply = raw_request(proxy.port, f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                        "User-Agent: evil\t\"quoted\" caf\xe9\r\n"
                        "Referer: http://r/\"> 1.2.3.4 TCP_HIT/200\r\n\r\n".encode("latin-1"))
    assert reply.startswith(b"HTTP/1.1 200")
    log = proxy.dir / "combined.log"
    assert wait_for(lambda: log.exists() and log.read_bytes(), 10)
    line = log.read_bytes().decode("latin-1").splitlines()[-1]
    assert line.endswith('"http://r/\\"> 1.2.3.4 TCP_HIT/200" "evil\\t\\"quoted\\" caf\xe9" TCP_MISS:HIER_DIRECT')
    assert not any(ord(c) < 32 or ord(c) == 127 for c in line)


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="needs Debian's logrotate (the CI script installs it)")
def test_the_logrotate_snippet_with_real_logrotate(make_proxy, origin, tmp_path):
    """etc/logrotate.d/squidpy as shipped, pointed at a test directory, run twice by logrotate."""
    logs = tmp_path / "log"
    logs.mkdir(mode=0o755)
    proxy = make_proxy(LOCAL_POLICY + f"logfile_rotate 0\naccess_log {logs}/access.log squid\n")
    snippet = (Path(__file__).resolve().parent.parent / "etc" / "logrotate.d" / "squidpy").read_text()
    assert "/var/log/squidpy/*.log" in snippet and "squidpy signal rotate -f /etc/squidpy/squidpy.conf" in snippet
    conf = tmp_path / "logrotate.conf"
    conf.write_text(snippet.replace("/var/log/squidpy", str(logs))
                    .replace("/run/squidpy.pid", str(proxy.pid_file))
                    .replace("squidpy signal rotate -f /etc/squidpy/squidpy.conf",
                             f"{sys.executable} -m squidpy signal rotate -f {proxy.config_path}"))
    state = tmp_path / "logrotate.state"

    def logrotate():
        out = subprocess.run(["logrotate", "-f", "-s", str(state), str(conf)], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr

    for round_ in range(2):
        assert fetch(proxy, origin.url(f"/size/1?round={round_}")) == 200
        assert wait_for(lambda: f"?round={round_}" in (logs / "access.log").read_text(), 10)
        logrotate()
        assert wait_for(lambda: (logs / "access.log").exists(), 10)     # squidpy made a new one (nocreate)
    assert fetch(proxy, origin.url("/size/1?after")) == 200
    assert wait_for(lambda: "?after" in (logs / "access.log").read_text(), 10)
    assert "?round=1" in (logs / "access.log.1").read_text()              # delaycompress: newest stays plain
    assert (logs / "access.log.2.gz").exists()                            # the older one is compressed
    out = subprocess.run([sys.executable, "-m", "squidpy", "logs", "-f", str(proxy.config_path), "report"],
                         capture_output=True, text=True, timeout=60)
    assert re.search(r"requests\s+3\n", out.stdout), out.stdout + out.stderr


# ------------------------------------------------------------ collectors never hold up the proxy

def test_a_collector_whose_name_is_slow_to_look_up_does_not_hold_up_requests(make_proxy, origin):
    """The collector's name is looked up with the proxy's DNS (dns_nameservers), which
    holds its answer: requests are answered meanwhile, and the lines go once it comes."""
    dns = DnsServer({"collector.test": ["127.0.0.1"]}).start()
    dns.hold("collector.test")
    collector = socket.socket()
    collector.bind(("127.0.0.1", 0))
    collector.listen(5)
    collector.settimeout(10)
    try:
        proxy = make_proxy(f"""{LOCAL_POLICY}
dns_nameservers 127.0.0.1:{dns.port}
access_log tcp://collector.test:{collector.getsockname()[1]} squid
""")
        assert wait_for(lambda: dns.held("collector.test") > 0, 10)      # the lookup is under way
        assert fetch(proxy, origin.url("/size/10?while-looking-up")) == 200
        assert dns.held("collector.test") > 0                           # and still is
        dns.release("collector.test")
        conn, _ = collector.accept()
        conn.settimeout(10)
        data = b""
        while b"?while-looking-up" not in data:
            chunk = conn.recv(65536)
            assert chunk, data
            data += chunk
        assert b"TCP_MISS/200" in data
        assert "access_log tcp://collector.test:" in proxy.read_cache_log()
        conn.close()
    finally:
        collector.close()
        dns.stop()


def test_a_collector_that_does_not_accept_neither_holds_up_requests_nor_the_shutdown(make_proxy, origin):
    collector = socket.socket()
    collector.bind(("127.0.0.1", 0))
    collector.listen(0)
    port = collector.getsockname()[1]
    first = socket.create_connection(("127.0.0.1", port), 5)    # its accept queue is full now
    try:
        proxy = make_proxy(f"{LOCAL_POLICY}\naccess_log tcp://127.0.0.1:{port} squid\n")
        for n in range(5):
            assert fetch(proxy, origin.url(f"/size/10?n={n}")) == 200
        assert proxy.stop() == 0
        cache_log = proxy.read_cache_log()
        assert "closed with lines not yet sent" in cache_log and "stopped" in cache_log
    finally:
        first.close()
        collector.close()


def test_stopping_delivers_the_lines_not_yet_flushed(make_proxy, origin):
    collector = socket.socket()
    collector.bind(("127.0.0.1", 0))
    collector.listen(5)
    collector.settimeout(10)
    try:
        proxy = make_proxy(f"{LOCAL_POLICY}\naccess_log tcp://127.0.0.1:{collector.getsockname()[1]} squid\n")
        conn, _ = collector.accept()              # connected at the first flush
        conn.settimeout(10)
        assert wait_for(lambda: ": connected" in proxy.read_cache_log(), 10)
        for n in range(20):
            assert fetch(proxy, origin.url(f"/size/10?last={n}")) == 200
        assert proxy.stop() == 0                   # within the second between two flushes, mostly
        data = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        assert [line.split()[6].rsplit("=", 1)[1] for line in data.decode().splitlines()] == \
            [str(n) for n in range(20)]
        assert "lost" not in proxy.read_cache_log()
        conn.close()
    finally:
        collector.close()
