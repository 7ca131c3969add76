"""Delay pools across sockets: a real squidpy, a real origin, curl.  A throttled
download arrives within 10% of its pool's rate while an unthrottled one, at the same
time, runs at full speed; CONNECT tunnels are throttled too; client delay pools limit
what is sent to a client, hits included; the cache manager and /metrics show the pools.

127.0.0.2 is the slow client (curl --interface 127.0.0.2: every 127/8 address is this
machine's), 127.0.0.1 the fast one."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.test_mgr_e2e import squidclient

# about 14 s of wall-clock time: on a fresh checkout (no timings in pytest's cache) it starts first
pytestmark = pytest.mark.slow

RATE = 200_000          # bytes per second
SLOW, FAST = "127.0.0.2", "127.0.0.1"
POLICY = """
acl local src 127.0.0.0/8
acl slowhost src 127.0.0.2
http_access allow localhost manager
http_access deny manager
http_access allow local
http_access deny all
"""


def download(proxy, url: str, source: str, *options: str) -> subprocess.Popen:
    return subprocess.Popen(["curl", "-s", "-S", "-o", "/dev/null", "--max-time", "60", "--interface", source,
                             "-x", proxy.url, "-w", "%{http_code} %{size_download} %{speed_download}",
                             *options, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def result(p: subprocess.Popen) -> tuple[int, int, float]:
    out, err = p.communicate(timeout=90)
    status, size, speed = out.decode().split()
    return int(status), int(size), float(speed)


def test_a_throttled_download_runs_at_its_rate_while_another_runs_at_full_speed(make_proxy, origin):
    proxy = make_proxy(POLICY + f"delay_pools 1\ndelay_class 1 2\ndelay_parameters 1 none {RATE}/{RATE}\n"
                       "delay_access 1 allow slowhost\ndelay_initial_bucket_level 0\n")
    slow = download(proxy, origin.url("/big/1000000?slow"), SLOW)
    fast = download(proxy, origin.url("/big/40000000?fast"), FAST)
    f_status, f_size, f_speed = result(fast)
    s_status, s_size, s_speed = result(slow)
    assert (s_status, s_size) == (200, 1_000_000) and (f_status, f_size) == (200, 40_000_000)
    assert 0.9 * RATE <= s_speed <= 1.1 * RATE, f"throttled at {s_speed:.0f} B/s instead of {RATE}"
    assert f_speed > 10 * RATE, f"the unthrottled download crawled at {f_speed:.0f} B/s"
    status, page = squidclient(proxy.port, "delay")
    assert status == 200 and page.startswith("Delay pools configured: 1\n\nPool: 1\n\tClass: 2\n\n")
    assert "\tIndividual:\n\t\tMax: 200000\n\t\tRestore: 200000\n\t\tCurrent: 2:" in page
    with __import__("urllib.request").request.urlopen(f"{proxy.url}/metrics", timeout=10) as reply:
        metrics = reply.read().decode()
    delivered = float(re.search(r'^squidpy_delay_pool_bytes_total\{pool="1"\} (\S+)$', metrics, re.M).group(1))
    assert delivered >= 1_000_000           # the whole reply went through the pool, its head too
    assert re.search(r'^squidpy_delay_pool_bucket_bytes\{bucket="Individual",key="2",pool="1"\} ', metrics, re.M)


def test_a_connect_tunnel_is_throttled_too(make_proxy, origin):
    proxy = make_proxy(POLICY + f"delay_pools 1\ndelay_class 1 1\ndelay_parameters 1 {RATE}/{RATE}\n"
                       "delay_access 1 allow slowhost CONNECT\ndelay_initial_bucket_level 0\n")
    status, size, speed = result(download(proxy, origin.url("/big/800000?tunnel"), SLOW, "-p"))
    assert (status, size) == (200, 800_000)
    assert 0.9 * RATE <= speed <= 1.1 * RATE, f"tunnel at {speed:.0f} B/s instead of {RATE}"
    assert proxy.log_line("TCP_TUNNEL/200") is not None


def test_a_client_delay_pool_limits_what_a_client_is_sent_hits_included(make_proxy, origin):
    proxy = make_proxy(POLICY + f"client_delay_pools 1\nclient_delay_parameters 1 {RATE} {RATE}\n"
                       "client_delay_access 1 allow slowhost\nclient_delay_initial_bucket_level 0\n"
                       "maximum_object_size_in_memory 4 MB\n")
    url = origin.url("/obj/client-pool?size=800000&cc=max-age%3D600")
    status, size, speed = result(download(proxy, url, FAST))          # stored: a miss at full speed
    assert (status, size) == (200, 800_000) and speed > 10 * RATE
    status, size, speed = result(download(proxy, url, SLOW))          # a memory hit, sent at the rate
    assert (status, size) == (200, 800_000)
    assert proxy.log_line("TCP_MEM_HIT/200") is not None
    assert 0.9 * RATE <= speed <= 1.1 * RATE, f"hit sent at {speed:.0f} B/s instead of {RATE}"
    status, size, speed = result(download(proxy, url, FAST))          # other clients are not limited
    assert status == 200 and speed > 10 * RATE
