"""CARP selection cost with 32 parents (issue 15's target: under 2 microseconds a request).

    python benchmarks/carp_bench.py

Three figures, medians of 5 runs:

* warm pick: the CARP parent for a URL whose ranking is remembered (the common
  case: a cache sees the same URLs again and again) — a dictionary lookup and
  the first usable parent of the ranking;
* cold pick: a URL never seen, hashed against every parent as Squid 5.7 does
  (the key is hashed once per parent, one byte at a time: this is Python's cost);
* whole selection: :meth:`PeerSelector.start` for a warm URL with ``never_direct
  allow all``, which also lists every other usable parent (ANY_OLD_PARENT) as
  Squid does, for retries.

Squid's own selection cannot be timed from outside; its cold cost is the same
arithmetic in C.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from squidpy.acl.checklist import Checklist  # noqa: E402
from squidpy.config import loader  # noqa: E402
from squidpy.http.url import parse_target  # noqa: E402
from squidpy.peers.selection import PeerSelector, PeerTable, RequestFacts  # noqa: E402

PARENTS = 32
URLS = 20000


def setup():
    lines = [f"cache_peer 10.0.{i // 200}.{i % 200 + 1} parent 3128 0 carp weight={1 + i % 3} "
             f"name=parent{i:02d}.fleet.example.net" for i in range(PARENTS)]
    config = loader.load("/bench.conf", text="\n".join(lines) + "\nnever_direct allow all\n")
    table = PeerTable(config.cache_peer)
    for p in config.cache_peer:
        table.resolved(p, [p.host])
        table.connect_succeeded(p, 0)
    return config, table


def urls(prefix: str, count: int) -> list:
    out = []
    for i in range(count):
        target = parse_target("GET", f"http://img{i % 50}.shop.example.com/catalog/{prefix}/item-{i}.jpg?v=3")
        out.append(target)
    return out


def per_pick(table, selector, targets) -> float:
    carp = table.carp
    usable = selector.http_okay
    started = time.perf_counter()
    for t in targets:
        carp.pick(carp.carp_ranking(t.url, t.scheme, t.host, t.port, t.path), usable)
    return (time.perf_counter() - started) / len(targets) * 1e6


def main() -> None:
    config, table = setup()
    some = urls("warm", 1)[0]
    selector = PeerSelector(table, config, RequestFacts("GET", some.url, "http", some.host, some.port, some.path,
                                                        "10.1.1.1", Checklist()), 0)
    warm_targets = urls("warm", URLS)
    per_pick(table, selector, warm_targets)                 # remember their rankings
    warm = statistics.median(per_pick(table, selector, warm_targets) for _ in range(5))
    cold = statistics.median(per_pick(table, selector, urls(f"cold{run}", 2000)) for run in range(5))

    def whole() -> float:
        started = time.perf_counter()
        for t in warm_targets[:5000]:
            ch = Checklist(src="10.1.1.1", url=t.url, host=t.host, port=t.port, path=t.path)
            facts = RequestFacts("GET", t.url, "http", t.host, t.port, t.path, "10.1.1.1", ch)
            PeerSelector(table, config, facts, 0).start()
        return (time.perf_counter() - started) / 5000 * 1e6

    full = statistics.median(whole() for _ in range(5))
    key = len(warm_targets[0].url)
    print(f"CARP with {PARENTS} parents, URLs of {key} characters (Python {sys.version.split()[0]})")
    print(f"{'warm pick':>28} {warm:8.2f} us")
    print(f"{'cold pick':>28} {cold:8.2f} us")
    print(f"{'whole selection (warm URL)':>28} {full:8.2f} us")


if __name__ == "__main__":
    main()
