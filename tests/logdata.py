"""A crafted access log whose figures are worked out by hand (in the tests that use it).

T0 is 2026-11-22 10:00:00 UTC; the tests run with TZ=UTC.
"""

from __future__ import annotations

T0 = 1795341600

ROWS = [
    # seconds after T0, elapsed ms, client, result/status, bytes, method, URL, user, hierarchy/peer, type
    (10, 120, "10.0.0.1", "TCP_MISS/200", 1000, "GET", "http://www.example.com/a", "alice", "HIER_DIRECT/93.184.216.34", "text/html"),
    (20, 80, "10.0.0.1", "TCP_HIT/200", 3000, "GET", "http://www.example.com/b", "alice", "HIER_NONE/-", "image/png"),
    (30, 40, "10.0.0.2", "TCP_MEM_HIT/200", 500, "GET", "http://cdn.example.com/c", "-", "HIER_NONE/-", "text/css"),
    (40, 0, "10.0.0.2", "TCP_DENIED/403", 3900, "GET", "http://www.facebook.com/", "-", "HIER_NONE/-", "text/html"),
    (50, 0, "10.0.0.3", "TCP_DENIED/403", 3900, "CONNECT", "www.facebook.com:443", "bob", "HIER_NONE/-", "text/html"),
    (3605, 300, "10.0.0.3", "TCP_MISS/404", 200, "GET", "http://slow.test/x", "bob", "HIER_DIRECT/192.0.2.1", "text/html"),
    (3606, 500, "10.0.0.3", "TCP_MISS/200", 800, "GET", "http://slow.test/y", "bob", "HIER_DIRECT/192.0.2.1", "text/html"),
    (3607, 15000, "10.0.0.1", "TCP_TUNNEL/200", 50000, "CONNECT", "mail.example.org:443", "alice", "HIER_DIRECT/198.51.100.7", "-"),
    (3608, 20000, "10.0.0.2", "TCP_TUNNEL/200", 20000, "CONNECT", "mail.example.org:443", "-", "HIER_DIRECT/198.51.100.7", "-"),
    (3609, 9000, "10.0.0.2", "TCP_TUNNEL/200", 7000, "CONNECT", "chat.example.net:443", "-", "HIER_DIRECT/203.0.113.9", "-"),
    (7201, 100, "10.0.0.4", "TCP_REFRESH_UNMODIFIED/304", 300, "GET", "http://www.example.com/a", "-", "HIER_DIRECT/93.184.216.34", "text/html"),
    (7202, 50, "10.0.0.4", "TCP_MISS/503", 4000, "GET", "http://down.test/", "-", "HIER_NONE/-", "text/html"),
    None,   # a malformed line
    (7203, 0, "10.0.0.1", "TCP_DENIED/403", 3900, "GET", "http://ads.facebook.com/p", "alice", "HIER_NONE/-", "text/html"),
    (7204, 60, "192.168.1.10", "TCP_MISS_ABORTED/200", 100, "GET", "http://www.example.com/big", "-", "HIER_DIRECT/93.184.216.34", "application/octet-stream"),
]

MALFORMED = "garbage line here"


def squid_line(row) -> str:
    t, elapsed, client, code, size, method, url, user, hier, mime = row
    return f"{T0 + t}.000 {elapsed:6d} {client} {code} {size} {method} {url} {user} {hier} {mime}"


def crafted_lines() -> list[str]:
    return [MALFORMED if row is None else squid_line(row) for row in ROWS]


def write_crafted(path) -> None:
    path.write_text("\n".join(crafted_lines()) + "\n")
