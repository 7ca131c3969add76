"""End to end: the squidpy process — giving up root (cache_effective_user), the locked pid
file, what workers say in cache_log and on the terminal."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import threading

import pytest

from squidpy.proxy import privileges
from squidpy.tls.ca import init_ca
from tests.conftest import LOCAL_POLICY, assert_no_tracebacks
from tests.proxyproc import ProxyProcess, wait_for

ROOT = os.geteuid() == 0


def squidpy(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "squidpy", *args], capture_output=True, text=True, timeout=timeout)


def get(port: int, url: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return int(s.makefile("rb").readline().split()[1])


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def loads_tls_libraries(pid: int) -> bool:
    """Whether process ``pid`` mapped cryptography's library (pyOpenSSL runs on it)."""
    with open(f"/proc/{pid}/maps") as f:
        return "/cryptography/" in f.read()


def maps_openssl(pid: int) -> bool:
    """Whether process ``pid`` mapped OpenSSL's own libraries (hashlib's and ssl's)."""
    with open(f"/proc/{pid}/maps") as f:
        return "/libcrypto.so" in f.read()


def kids_of(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def free_low_port() -> int:
    """A free port below 1024 on loopback (only root, or CAP_NET_BIND_SERVICE, may bind it)."""
    for port in range(990, 600, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port below 1024")


# ------------------------------------------------------------ cache_effective_user

@pytest.mark.skipif(not ROOT, reason="giving up root needs root: CI runs the suite as root "
                                     "(test_effective_user_is_ignored_when_not_root covers the other case)")
def test_root_binds_then_becomes_the_effective_user(public_tmp, origin):
    nobody = pwd.getpwnam("nobody")
    logs, cache, run = public_tmp / "logs", public_tmp / "cache", public_tmp / "run"
    text = (LOCAL_POLICY + "cache_effective_user nobody\n"
            f"access_log {logs}/access.log\ncache_log {logs}/cache.log\npid_filename {run}/squidpy.pid\n"
            f"cache_dir diskcache {cache} 20\nlogfile_rotate 2\n")
    proxy = ProxyProcess(public_tmp / "p", text, start=False)
    proxy.cache_log, proxy.access_log = logs / "cache.log", logs / "access.log"
    proxy.start()
    try:
        status = wait_for(lambda: (lambda s: s if s["Uid"].split()[0] != "0" else None)(proc_status(proxy.proc.pid)), 10)
        assert status["Uid"].split() == [str(nobody.pw_uid)] * 4            # real, effective, saved, fs
        assert status["Gid"].split() == [str(nobody.pw_gid)] * 4
        assert status["Groups"].split() == [str(nobody.pw_gid)]
        assert int(status["CapEff"], 16) == 1 << privileges.CAP_NET_BIND_SERVICE    # nothing else
        assert int(status["CapPrm"], 16) == 1 << privileges.CAP_NET_BIND_SERVICE
        assert get(proxy.port, origin.url("/obj/priv?cc=max-age%3D60&size=5000")) == 200
        assert wait_for(lambda: (logs / "access.log").exists() and "/obj/priv" in (logs / "access.log").read_text(), 5)
        # what it made, and what it writes, belongs to the user
        for path in (logs, cache, run, logs / "access.log", logs / "cache.log", run / "squidpy.pid", cache / "cache.db"):
            assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid), path
        assert f"Running as user nobody (uid {nobody.pw_uid})" in proxy.read_cache_log()
        # a reconfigure may still open a port below 1024 (CAP_NET_BIND_SERVICE was kept)
        low = free_low_port()
        proxy.config_path.write_text(proxy.config_path.read_text() + f"http_port 127.0.0.1:{low}\n")
        proxy.signal(signal.SIGHUP)
        assert wait_for(lambda: "Reconfigured" in proxy.read_cache_log(), 10), proxy.read_cache_log()
        assert get(low, origin.url("/size/3")) == 200
        # rotation makes new files as the user, in the directory it was given
        proxy.signal(signal.SIGUSR1)
        assert wait_for(lambda: (logs / "access.log.0").exists() and (logs / "access.log").exists(), 5)
        assert (logs / "access.log").stat().st_uid == nobody.pw_uid
    finally:
        assert proxy.stop() == 0
    assert_no_tracebacks(proxy)
    assert not (run / "squidpy.pid").exists()


@pytest.mark.skipif(not ROOT, reason="the log files of an earlier root run exist only when started as root")
def test_log_files_left_by_a_root_run_are_handed_to_the_user(public_tmp):
    logs = public_tmp / "logs"
    logs.mkdir(mode=0o755)
    os.chown(logs, pwd.getpwnam("nobody").pw_uid, -1)
    (logs / "access.log").write_text("")                  # root's, from an earlier run as root
    (logs / "access.log").chmod(0o600)
    text = LOCAL_POLICY + f"cache_effective_user nobody\naccess_log {logs}/access.log\ncache_log {logs}/cache.log\n"
    proxy = ProxyProcess(public_tmp / "p", text, start=False)
    proxy.cache_log = logs / "cache.log"
    proxy.start()
    try:
        assert (logs / "access.log").stat().st_uid == pwd.getpwnam("nobody").pw_uid
    finally:
        assert proxy.stop() == 0
    assert_no_tracebacks(proxy)


def test_effective_user_is_ignored_when_not_root(tmp_path):
    """As in Squid: only a squidpy started as root changes user (under systemd, User= did)."""
    from squidpy.config import loader
    config = loader.load(text="cache_effective_user nobody\n", path=str(tmp_path / "c.conf"))
    assert privileges.effective_identity(config, euid=1000) is None
    assert privileges.effective_identity(loader.load(text="", path=str(tmp_path / "d.conf")), euid=0) is None
    identity = privileges.effective_identity(config, euid=0)
    assert (identity.user, identity.uid) == ("nobody", pwd.getpwnam("nobody").pw_uid)
    with pytest.raises(privileges.PrivilegeError, match="is root"):
        privileges.effective_identity(loader.load(text="cache_effective_user root\n", path=str(tmp_path / "e.conf")), euid=0)


# ------------------------------------------------------------ the pid file

def test_a_second_run_on_the_same_pid_file_refuses_clearly(make_proxy, tmp_path):
    first = make_proxy(LOCAL_POLICY)
    conf = tmp_path / "second.conf"
    conf.write_text(LOCAL_POLICY + f"http_port 127.0.0.1:0\npid_filename {first.pid_file}\n"
                    f"cache_log {tmp_path}/c.log\naccess_log {tmp_path}/a.log\n")
    out = squidpy("run", "-f", str(conf))
    assert out.returncode == 1
    assert out.stderr.splitlines() == [f"squidpy: squidpy is already running as process {first.proc.pid} "
                                       f"(it holds the lock on pid_filename {first.pid_file})"]
    assert int(first.pid_file.read_text()) == first.proc.pid          # untouched


def test_two_started_together_one_runs(tmp_path):
    """Check-then-write let both win; the lock lets one."""
    confs, procs = [], []
    for n in range(2):
        conf = tmp_path / f"{n}.conf"
        conf.write_text(LOCAL_POLICY + f"http_port 127.0.0.1:0\npid_filename {tmp_path}/squidpy.pid\n"
                        f"cache_log {tmp_path}/c{n}.log\naccess_log {tmp_path}/a{n}.log\n")
        confs.append(conf)
    go = threading.Barrier(2)

    def start(conf):
        go.wait()
        procs.append(subprocess.Popen([sys.executable, "-m", "squidpy", "run", "-f", str(conf)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))

    threads = [threading.Thread(target=start, args=(c,)) for c in confs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert wait_for(lambda: any(p.poll() is not None for p in procs), 15)
        loser = next(p for p in procs if p.poll() is not None)
        winner = next(p for p in procs if p is not loser)
        assert loser.returncode == 1 and "already running" in loser.stderr.read()
        assert wait_for(lambda: (tmp_path / "squidpy.pid").exists()
                        and (tmp_path / "squidpy.pid").read_text().strip() == str(winner.pid), 10)
        assert winner.poll() is None
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                assert p.wait(15) == 0


def test_a_stale_pid_file_neither_blocks_a_start_nor_gets_a_signal(tmp_path):
    """The file names a live process that is not squidpy (this test): no lock, so it is stale."""
    pid_file = tmp_path / "squidpy.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    conf = tmp_path / "c.conf"
    conf.write_text(LOCAL_POLICY + f"http_port 127.0.0.1:0\npid_filename {pid_file}\n"
                    f"cache_log {tmp_path}/c.log\naccess_log {tmp_path}/a.log\n")
    out = squidpy("signal", "reconfigure", "-f", str(conf))     # would have sent SIGHUP to pytest
    assert out.returncode == 1
    assert out.stderr.strip() == (f"squidpy: no running squidpy found ({pid_file} names process {os.getpid()}, "
                                  "but no squidpy holds it (a stale file))")
    proc = subprocess.Popen([sys.executable, "-m", "squidpy", "run", "-f", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: pid_file.read_text().strip() == str(proc.pid), 15)
        out = squidpy("signal", "check", "-f", str(conf))
        assert out.returncode == 0 and f"running as process {proc.pid}" in out.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    assert not pid_file.exists()


# ------------------------------------------------------------ workers

def test_workers_say_each_kid_listens_and_that_logs_rotated(tmp_path, origin):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proxy = ProxyProcess(tmp_path, LOCAL_POLICY + f"workers 2\nhttp_port 127.0.0.1:{port}\n", start=False)
    proxy.start()
    try:
        # each kid starts as a new process (0.45 s of CPU): on a loaded runner, give them time
        assert wait_for(lambda: proxy.read_stderr().count("listening on") == 2, 30), (
            proxy.read_stderr() + proxy.read_cache_log())
        lines = proxy.read_stderr().splitlines()
        assert f"squidpy/0.1.0 kid1 listening on 127.0.0.1:{port}" in lines
        assert f"squidpy/0.1.0 kid2 listening on 127.0.0.1:{port}" in lines
        assert f"squidpy/0.1.0 kid1: configuration {proxy.config_path}" in lines
        assert get(port, origin.url("/size/1")) == 200
        kids = kids_of(proxy.proc.pid)
        assert len(kids) == 2 and not any(map(loads_tls_libraries, [proxy.proc.pid, *kids]))
        proxy.signal(signal.SIGUSR1)
        assert wait_for(lambda: proxy.read_cache_log().count("Reopened the log files after rotation") == 2, 10)
        rotated = (tmp_path / "cache.log.0").read_text() + proxy.read_cache_log()
        assert "master| Rotated logs (keeping 10); the kids reopen them" in rotated
    finally:
        assert proxy.stop() == 0


# ------------------------------------------------------------ what a started proxy loads

def test_only_a_configuration_that_speaks_tls_loads_the_tls_libraries(make_proxy, origin, tmp_path):
    """pyOpenSSL and cryptography are a third of a started proxy's memory: a proxy
    without TLS never loads them (nor does Twisted, for squidpy never uses its TLS);
    one that bumps does, at start."""
    plain = make_proxy(LOCAL_POLICY, fork=False)      # a fresh interpreter: what it imports at start
    assert not loads_tls_libraries(plain.proc.pid)
    # nor OpenSSL's libcrypto (4.5 MB), which Python's hashlib, hmac and ssl load: once
    # requests were served, stored (a CRC-32) and looked up on disk (SHA-256 keys)
    plain = make_proxy(LOCAL_POLICY + f"cache_dir diskcache {tmp_path / 'cache'} 10\n", fork=False)
    url = origin.url("/obj/no-openssl?cc=max-age%3D600&size=5000")
    assert get(plain.port, url) == 200
    assert plain.log_line("no-openssl")             # finished (and stored) before the next one
    assert get(plain.port, url) == 200
    assert "TCP_MEM_HIT" in plain.log_line("no-openssl", count=2)
    assert not maps_openssl(plain.proc.pid) and not loads_tls_libraries(plain.proc.pid)
    pem, _ = init_ca(str(tmp_path / "ca"), "Start-up Test CA", key_type="ec")
    bumping = make_proxy(LOCAL_POLICY + f"http_port 127.0.0.1:0 ssl-bump tls-cert={pem}\n")
    assert loads_tls_libraries(bumping.proc.pid)
