"""squidpy under systemd: the unit file (checked by systemd-analyze), the sd_notify protocol
spoken to a real AF_UNIX datagram socket by a real squidpy started from the unit's own
command lines, and the manual pages the unit points to.

There is no systemd running in a test container, so the unit is not started by systemd:
`systemd-analyze verify` and `systemd-analyze security --offline` check it as systemd reads
it, and the test runs its ExecStart= and ExecReload= command lines itself, with the
$NOTIFY_SOCKET systemd would pass.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from squidpy import manpages
from squidpy.proxy import notify
from tests.conftest import LOCAL_POLICY, assert_no_tracebacks
from tests.proxyproc import ProxyProcess, wait_for

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "etc" / "systemd" / "squidpy.service"
SQUIDPY = Path(sys.executable).parent / "squidpy"        # the console script pip installed
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def unit_entries() -> list[tuple[str, str, str]]:
    """(section, key, value) of the unit, repeated keys kept (systemd allows them)."""
    entries, section = [], ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def setting(key: str) -> list[str]:
    return [value for section, k, value in unit_entries() if k == key]


@pytest.fixture
def installed_unit(tmp_path):
    """The unit as it would be installed here: squidpy where pip put it, the man pages on MANPATH."""
    assert SYSTEMD_ANALYZE, "systemd-analyze is missing: .ci/run installs Debian's systemd package"
    unit = tmp_path / "squidpy.service"
    unit.write_text(UNIT.read_text().replace("/opt/squidpy/bin/squidpy", str(SQUIDPY)))
    man = tmp_path / "man"
    for page, section in (("squidpy.1", "man1"), ("squidpy.conf.5", "man5")):
        (man / section).mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "man" / page, man / section / page)
    env = dict(os.environ, MANPATH=str(man), SYSTEMD_LOG_COLOR="0")
    return unit, env


# ------------------------------------------------------------ the unit file

def test_the_unit_passes_systemd_analyze_verify(installed_unit):
    """verify loads the unit as systemd would: unknown or misspelt settings, a missing
    ExecStart= program, Documentation= pages man cannot find all fail it."""
    unit, env = installed_unit
    out = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == "", out.stderr
    # and it does fail on a broken unit, so the check above means something
    broken = unit.with_name("broken.service")
    broken.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=strictest"))
    out = subprocess.run([SYSTEMD_ANALYZE, "verify", str(broken)], capture_output=True, text=True, timeout=60, env=env)
    assert "broken.service" in out.stderr and "strictest" in out.stderr


def test_the_unit_is_hardened(installed_unit):
    assert setting("Type") == ["notify"]
    assert setting("ExecReload") == ["/opt/squidpy/bin/squidpy signal reconfigure -f /etc/squidpy/squidpy.conf"]
    assert setting("ProtectSystem") == ["strict"] and setting("NoNewPrivileges") == ["yes"]
    assert setting("CapabilityBoundingSet") == ["CAP_NET_BIND_SERVICE"]
    assert setting("AmbientCapabilities") == ["CAP_NET_BIND_SERVICE"]
    for key in ("StateDirectory", "LogsDirectory", "CacheDirectory", "RuntimeDirectory"):
        assert setting(key) == ["squidpy"], key
    unit, env = installed_unit
    out = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(unit)],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    found = re.search(r"Overall exposure level for squidpy.service: ([\d.]+) (\w+)", out.stdout)
    assert found, out.stdout[-2000:]
    assert float(found.group(1)) <= 2.0, out.stdout      # systemd calls <= 2.0 "OK"


# ------------------------------------------------------------ sd_notify, for real

class NotifySocket:
    """What systemd listens on for Type=notify: an AF_UNIX datagram socket, path or abstract."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path if not path.startswith("@") else "\0" + path[1:])
        if not path.startswith("@"):
            os.chmod(path, 0o777)           # like /run/systemd/notify: any service may write
        self.address = path
        self.seen: list[dict[str, str]] = []

    def wait(self, predicate, timeout: float = 15) -> dict[str, str]:
        """The next message (a dict of its fields) for which predicate is true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            message = dict(line.split("=", 1) for line in data.split("\n") if "=" in line)
            self.seen.append(message)
            if predicate(message):
                return message
        raise AssertionError(f"no such notification; seen: {self.seen}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(short_tmp):
    s = NotifySocket(os.path.join(short_tmp, "notify"))
    yield s
    s.close()


def unit_command(key: str, conf: Path) -> list[str]:
    return [arg.replace("/opt/squidpy/bin/squidpy", str(SQUIDPY)).replace("/etc/squidpy/squidpy.conf", str(conf))
            for arg in shlex.split(setting(key)[0])]


def get(port: int, url: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return int(s.makefile("rb").readline().split()[1])


def test_ready_status_reloading_and_stopping_from_the_units_commands(tmp_path, notify_socket, origin):
    proxy = ProxyProcess(tmp_path / "p", LOCAL_POLICY, start=False, env={"NOTIFY_SOCKET": notify_socket.address})
    proxy.proc = subprocess.Popen(unit_command("ExecStart", proxy.config_path), env=proxy.env,
                                  stdout=subprocess.DEVNULL, stderr=open(proxy.dir / "stderr.txt", "ab"))
    proxy.stderr = open(os.devnull, "w")
    try:
        ready = notify_socket.wait(lambda m: "READY" in m)
        # READY comes once the port listens: the proxy answers right away
        proxy.ports = wait_for(proxy._ports_from_log, 5)
        proxy.port = proxy.ports[0]
        assert ready["READY"] == "1" and ready["STATUS"] == "0.0 requests/s, 0 client connections"
        for i in range(20):
            assert get(proxy.port, origin.url(f"/size/{i + 1}")) == 200
        busy = notify_socket.wait(lambda m: m.get("STATUS", "").split()[0] not in ("0.0", "Reconfiguring"),
                                  timeout=3 * notify.STATUS_INTERVAL + 5)
        assert re.fullmatch(r"\d+\.\d requests/s, \d+ client connections?", busy["STATUS"])
        assert float(busy["STATUS"].split()[0]) > 0 and "READY" not in busy
        # systemctl reload: ExecReload= is `squidpy signal reconfigure -f CONF`
        before = notify.monotonic_usec()
        out = subprocess.run(unit_command("ExecReload", proxy.config_path), capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        reloading = notify_socket.wait(lambda m: "RELOADING" in m)
        assert reloading["RELOADING"] == "1"
        assert before <= int(reloading["MONOTONIC_USEC"]) <= notify.monotonic_usec()   # systemd >= 253 wants it
        assert "READY" in notify_socket.wait(lambda m: "READY" in m)
        assert "Reconfigured" in proxy.read_cache_log()
        # systemctl stop: SIGTERM
        proxy.proc.send_signal(signal.SIGTERM)
        assert notify_socket.wait(lambda m: "STOPPING" in m)["STOPPING"] == "1"
        assert proxy.proc.wait(15) == 0
    finally:
        proxy.stop()
    assert_no_tracebacks(proxy)


def test_workers_are_ready_when_every_kid_listens(tmp_path):
    """Under workers only the master speaks to systemd (NotifyAccess=main), here on an
    abstract socket: READY once both kids listen, a STATUS that sums them, STOPPING."""
    notify_socket = NotifySocket(f"@squidpy-test-{uuid.uuid4().hex}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proxy = ProxyProcess(tmp_path, LOCAL_POLICY + f"workers 2\nhttp_port 127.0.0.1:{port}\n", start=False,
                         env={"NOTIFY_SOCKET": notify_socket.address})
    proxy.stderr = open(proxy.dir / "stderr.txt", "ab")
    proxy.proc = subprocess.Popen([sys.executable, "-m", "squidpy", "run", "-f", str(proxy.config_path)],
                                  env=proxy.env, stdout=subprocess.DEVNULL, stderr=proxy.stderr)
    try:
        ready = notify_socket.wait(lambda m: "READY" in m)
        assert proxy.read_cache_log().count("Accepting HTTP connections") == 2
        assert ready["STATUS"] == "0.0 requests/s, 0 client connections, 2 kids"
        proxy.proc.send_signal(signal.SIGHUP)
        assert notify_socket.wait(lambda m: "RELOADING" in m)["RELOADING"] == "1"
        notify_socket.wait(lambda m: "READY" in m)
        assert proxy.read_cache_log().count("Reconfigured") == 2        # both kids, before READY
        proxy.proc.send_signal(signal.SIGTERM)
        assert notify_socket.wait(lambda m: "STOPPING" in m)["STOPPING"] == "1"
        assert proxy.proc.wait(15) == 0
    finally:
        proxy.stop()
        notify_socket.close()
    assert "Traceback" not in proxy.read_cache_log()


def test_notification_messages():
    assert notify.ready_message("1.0 requests/s") == ["READY=1", "STATUS=1.0 requests/s"]
    assert notify.reloading_message(123) == ["RELOADING=1", "MONOTONIC_USEC=123", "STATUS=Reconfiguring"]
    assert notify.stopping_message()[0] == "STOPPING=1"
    assert notify.rate(150, 50, now=12.0, then=10.0) == 50.0
    assert notify.rate(5, 5, now=10.0, then=10.0) == 0.0
    assert notify.status_text(12.345, 1) == "12.3 requests/s, 1 client connection"
    assert notify.status_text(0, 3, kids=4) == "0.0 requests/s, 3 client connections, 4 kids"
    assert notify.notify(["READY=1"], address="") is False            # not under systemd: nothing sent
    assert notify.notify(["READY=1"], address="/nonexistent/notify") is False   # never raises


def test_what_kids_report_to_the_master():
    from squidpy.proxy.workers import KidReports
    reports = KidReports()
    assert [reports.feed(line) for line in ("101 ready", "102 status 3.5 4", "101 status 1.25 1",
                                            "102 fatal cache_dir /x: Not a directory", "garbage", "103 frobnicate")] \
        == ["ready", "status", "status", "fatal", None, None]
    assert reports.ready == {101} and reports.fatal == {102: "cache_dir /x: Not a directory"}
    assert reports.status(2) == "4.8 requests/s, 5 client connections, 2 kids"
    reports.forget(102)
    assert reports.status(1) == "1.2 requests/s, 1 client connection, 1 kid"


# ------------------------------------------------------------ the manual pages

def test_the_man_pages_are_current():
    """man/ is generated from the click commands and the directive registry:
    `python -m squidpy.manpages` after changing either."""
    for name, render in manpages.PAGES.items():
        assert (REPO / "man" / name).read_text() == render(), f"man/{name} is stale: python -m squidpy.manpages"


def test_the_man_pages_render_cleanly_and_say_what_matters(tmp_path):
    for name in manpages.PAGES:
        out = subprocess.run(["groff", "-man", "-Tutf8", "-wall", str(REPO / "man" / name)], capture_output=True,
                             timeout=60, env=dict(os.environ, LC_ALL="C.UTF-8"))
        assert out.returncode == 0 and out.stderr == b"", out.stderr.decode()
    env = dict(os.environ, MANPATH=str(REPO / "man"), MANWIDTH="200", LC_ALL="C.UTF-8")
    page = subprocess.run(["man", "-l", str(REPO / "man" / "squidpy.1")], capture_output=True, text=True,
                          timeout=60, env=env).stdout
    for said in ("squidpy run [OPTIONS]", "squidpy logs tail [OPTIONS] [FILE]", "-F, --follow",
                 "squidpy cache stats [OPTIONS]", "-f, --config FILE"):
        assert said in page, said
    page = subprocess.run(["man", "-l", str(REPO / "man" / "squidpy.conf.5")], capture_output=True, text=True,
                          timeout=60, env=env).stdout
    assert "access_log PATH|stdio:PATH" in page and "on-error=die" in page and "cache_effective_user USER|none" in page


def test_setup_installs_the_man_pages(tmp_path):
    """setup.cfg's data_files put them under share/man, where man finds them next to bin/."""
    out = subprocess.run([sys.executable, "-W", "ignore", "setup.py", "-q", "install_data", "-d", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "share/man/man1/squidpy.1").read_text() == (REPO / "man/squidpy.1").read_text()
    assert (tmp_path / "share/man/man5/squidpy.conf.5").read_text() == (REPO / "man/squidpy.conf.5").read_text()
    found = subprocess.run(["man", "-w", "squidpy.conf"], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, MANPATH=str(tmp_path / "share/man")))
    assert found.stdout.strip() == str(tmp_path / "share/man/man5/squidpy.conf.5")
