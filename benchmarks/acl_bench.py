"""dstdomain at scale: load time of a 100,000-domain list, and match cost against 10 entries.

    python benchmarks/acl_bench.py

Matching is a set probe per label of the host, so its cost should not grow
with the list; regex lists are compiled once per ACL.  Medians of 5 runs.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from squidpy.acl.checklist import Checklist  # noqa: E402
from squidpy.config import loader  # noqa: E402


def build(count: int, directory: Path):
    path = directory / f"domains{count}.txt"
    path.write_text("".join(f".site{i}.example{i % 97}.com\n" for i in range(count)))
    text = f'acl blocked dstdomain "{path}"\nhttp_access deny blocked\nhttp_access allow all\n'
    started = time.perf_counter()
    config = loader.load(str(directory / "squidpy.conf"), text=text)
    return config, time.perf_counter() - started


def build_regex(count: int, directory: Path):
    path = directory / f"regex{count}.txt"
    path.write_text("".join(f"(^|\\.)ads{i}\\.\n" for i in range(count)))
    text = f'acl ads dstdom_regex -i "{path}"\nhttp_access deny ads\nhttp_access allow all\n'
    started = time.perf_counter()
    config = loader.load(str(directory / "squidpy.conf"), text=text)
    return config, time.perf_counter() - started


def per_match(config, host: str) -> float:
    ch = Checklist(src="10.0.0.7", host=host, url=f"http://{host}/", path="/")
    access = config.http_access
    runs = [timeit.timeit(lambda: access.check(ch), number=20000) / 20000 * 1e6 for _ in range(5)]
    return statistics.median(runs)


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        directory = Path(d)
        rows = []
        for count in (10, 100_000):
            loads = []
            for _ in range(3):
                config, seconds = build(count, directory)
                loads.append(seconds)
            hosts = {"listed": "www.site7.example7.com", "not listed": "www.unlisted.example.org"}
            rows.append((count, statistics.median(loads), {k: per_match(config, h) for k, h in hosts.items()}))
        print(f"{'entries':>8} {'load s':>8} {'match listed us':>16} {'match not listed us':>20}")
        for count, load, cost in rows:
            print(f"{count:>8} {load:8.2f} {cost['listed']:16.2f} {cost['not listed']:20.2f}")
        small, big = rows[0][2], rows[1][2]
        print(f"\n100k/10 match cost ratio: listed {big['listed'] / small['listed']:.2f}, "
              f"not listed {big['not listed'] / small['not listed']:.2f}")
        print(f"\n{'dstdom_regex patterns':>22} {'match us (no match)':>20}")
        for count in (1, 10, 50):
            config, _ = build_regex(count, directory)
            print(f"{count:>22} {per_match(config, 'www.unlisted.example.org'):20.2f}")


if __name__ == "__main__":
    main()
