"""Misses through one parent against misses straight to the origin (issue 15: >= 0.9).

    python benchmarks/parent_bench.py [--rounds 3] [--duration 8]

A 1 KB no-store object is fetched with wrk (50 keep-alive connections) through
squidpy, and through Squid side by side, twice each: direct, and with
``cache_peer ... parent`` + ``never_direct allow all``.  The parent is nginx
itself (it answers absolute-form requests), so the figure is what forwarding to
a parent costs the proxy, not what a second proxy costs.  Medians of the rounds;
the ratio is parent/direct.  Needs wrk and nginx (Debian: wrk nginx-light).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import Origin, Squid, Squidpy, wrk  # noqa: E402


def through_parent(origin: Origin) -> str:
    return (f"cache_peer 127.0.0.1 parent {origin.port} 0 no-query no-digest name=parent\n"
            "never_direct allow all\n")


def measure(kind, work: Path, origin: Origin, extra: str, duration: int) -> float:
    proxy = kind(work)
    proxy.start(extra)
    try:
        target = origin.url("/n/1k.bin")
        deadline = time.monotonic() + 20          # until the parent's first probe made it usable
        while wrk(proxy, target, 1, 2)["non2xx"] and time.monotonic() < deadline:
            time.sleep(0.2)
        result = wrk(proxy, target, duration)
        if result["non2xx"]:
            raise RuntimeError(f"{kind.name}: {result['non2xx']} failed requests")
        return result["rps"]
    finally:
        proxy.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        os.chmod(work, 0o755)           # nginx's workers and Squid's user read from here
        origin = Origin(work)
        if origin.kind != "nginx":
            sys.exit("nginx is needed (it is the parent): apt-get install nginx-light")
        origin.start()
        try:
            rows = []
            for kind in (Squidpy, Squid):
                direct, parent = [], []
                for _ in range(args.rounds):
                    direct.append(measure(kind, work, origin, "", args.duration))
                    parent.append(measure(kind, work, origin, through_parent(origin), args.duration))
                rows.append((kind.name, statistics.median(direct), statistics.median(parent)))
        finally:
            origin.stop()
    print(f"{'proxy':<8} {'direct req/s':>13} {'via parent req/s':>17} {'ratio':>6}")
    for name, direct, parent in rows:
        print(f"{name:<8} {direct:>13.0f} {parent:>17.0f} {parent / direct:>6.2f}")


if __name__ == "__main__":
    main()
