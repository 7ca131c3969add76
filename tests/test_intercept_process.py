"""Interception ports in the running process, on loopback: how they are announced, that a
tproxy port needs CAP_NET_ADMIN (as Squid's TPROXY probe), and that a reconfigure cannot
switch tproxy on a listening socket (all or nothing)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import LOCAL_POLICY
from tests.proxyproc import wait_for

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="a tproxy port needs CAP_NET_ADMIN (CI runs as root)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_root
def test_interception_ports_are_announced_as_such(make_proxy):
    intercept, tproxy = free_port(), free_port()
    proxy = make_proxy(LOCAL_POLICY + f"http_port 127.0.0.1:{intercept} intercept\n"
                                      f"http_port 127.0.0.1:{tproxy} tproxy\n")
    # the proxy counts as started at its first port's line: the second may follow a moment later
    assert wait_for(lambda: f"Accepting NAT intercepted HTTP connections at 127.0.0.1:{intercept}"
                    in proxy.read_cache_log(), 10)
    assert wait_for(lambda: f"Accepting TPROXY intercepted HTTP connections at 127.0.0.1:{tproxy}"
                    in proxy.read_cache_log(), 10)
    assert wait_for(lambda: f"listening on 127.0.0.1:{tproxy} (tproxy)" in proxy.read_stderr(), 10)


@needs_root
def test_reconfigure_cannot_switch_tproxy_on_a_listening_port(make_proxy):
    port = free_port()
    proxy = make_proxy(LOCAL_POLICY + f"http_port 127.0.0.1:{port} intercept\n")
    text = proxy.config_path.read_text()
    proxy.config_path.write_text(text.replace(f"{port} intercept", f"{port} tproxy"))
    proxy.signal(signal.SIGHUP)
    assert wait_for(lambda: "reconfigure failed" in proxy.read_cache_log(), 10)
    assert (f"reconfigure: http_port 127.0.0.1:{port}: tproxy cannot be switched on or off on a listening port"
            in proxy.read_cache_log())
    # intercept and plain can be switched: nothing about the socket changes
    proxy.config_path.write_text(text.replace(f"{port} intercept", f"{port}"))
    proxy.signal(signal.SIGHUP)
    assert wait_for(lambda: "Reconfigured" in proxy.read_cache_log(), 10)
    assert proxy.proc.poll() is None


@needs_root
def test_tproxy_without_cap_net_admin_does_not_start():
    """Started as an ordinary user, a tproxy port cannot be made transparent: one FATAL line."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    d = Path(tempfile.mkdtemp(prefix="sqtproxy-", dir="/tmp"))
    try:
        d.chmod(0o777)
        conf = d / "squidpy.conf"
        conf.write_text(LOCAL_POLICY + f"http_port 127.0.0.1:{free_port()} tproxy\n"
                        f"cache_log {d}/cache.log\naccess_log {d}/access.log squid\npid_filename {d}/pid\n")
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                               sys.executable, "-m", "squidpy", "run", "-f", str(conf)],
                              capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent,
                              env=dict(os.environ, HOME=str(d)))
        assert done.returncode == 1
        assert "TPROXY support in the system does not work: IP_TRANSPARENT: Operation not permitted" in done.stderr
        assert "FATAL: cannot listen on 127.0.0.1:" in (d / "cache.log").read_text()
    finally:
        shutil.rmtree(d, ignore_errors=True)
