"""End to end: 'workers N' — kids sharing one port, one pid file, signals reach all of them."""

from __future__ import annotations

import os
import signal
import socket

from tests.conftest import LOCAL_POLICY, read_response
from tests.proxyproc import ProxyProcess, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, url):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return read_response(s.makefile("rb"))


def kids_of(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(entry))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    return kids


def test_two_kids_serve_one_port_and_share_the_log(tmp_path, origin):
    port = free_port()
    proxy = ProxyProcess(tmp_path, LOCAL_POLICY + f"workers 2\nhttp_port 127.0.0.1:{port}\n", start=False)
    proxy.start()
    try:
        assert wait_for(lambda: proxy.read_cache_log().count("Accepting HTTP connections") == 2, 10)
        assert int(proxy.pid_file.read_text()) == proxy.proc.pid
        kids = kids_of(proxy.proc.pid)
        assert len(kids) == 2
        for i in range(40):
            status, _, body = get(port, origin.url(f"/size/{i + 1}"))
            assert (status, len(body)) == (200, i + 1)
        lines = proxy.log_lines(40)
        assert len(lines) == 40 and all(len(l.split()) == 10 for l in lines)
        # a kid that dies is replaced
        os.kill(kids[0], signal.SIGKILL)
        assert wait_for(lambda: len(kids_of(proxy.proc.pid)) == 2 and kids[0] not in kids_of(proxy.proc.pid), 10)
        assert wait_for(lambda: proxy.read_cache_log().count("Accepting HTTP connections") == 3, 10)   # it is up
        assert get(port, origin.url("/size/3"))[2] == b"xxx"
        # rotation happens once, and every kid writes on in the new file
        proxy.signal(signal.SIGUSR1)
        assert wait_for(lambda: proxy.access_log.with_name("access.log.0").exists(), 5)
        def reopened() -> int:      # the line of a kid that reopened early went to the rotated cache.log
            old = proxy.cache_log.with_name("cache.log.0")
            text = (old.read_text() if old.exists() else "") + proxy.read_cache_log()
            return text.count("Reopened the log files after rotation")
        assert wait_for(lambda: reopened() == 2, 10)
        for i in range(10):
            get(port, origin.url("/size/1"))
        def new_file_lines() -> int:    # a line of the request before the rotation may come late
            return proxy.access_log.read_text().count("/size/1 ") if proxy.access_log.exists() else 0
        assert wait_for(lambda: new_file_lines() == 10, 10), proxy.access_log.read_text()
        assert proxy.access_log.with_name("access.log.0").read_text().count("/size/1 ") == 1
        assert not proxy.access_log.with_name("access.log.1").exists()
    finally:
        assert proxy.stop() == 0
    assert not proxy.pid_file.exists()
    assert all(not os.path.exists(f"/proc/{k}") for k in kids_of(proxy.proc.pid))
