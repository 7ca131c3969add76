"""CARP selection cost with 32 parents (issue 15's target: under 2 microseconds a request).

    python benchmarks/carp_bench.py [--rounds 7] [--against main]

URLs of 40 to 120 characters (evenly spread, 80 on average).  Each figure is the
median over ``--rounds`` rounds of the mean cost per request in a round; the minimum
is shown too (this machine is shared, the minimum is the least disturbed round).
Costs are the process's CPU time (``--wall`` for elapsed time): on a loaded machine
elapsed time counts the moments other processes had the CPU.

* cold pick: a URL never seen, hashed against every parent as Squid 5.7 does (the
  key is hashed once per parent, one byte at a time: 32 x 80 dependent steps);
* hash step: the cold pick divided by the number of key bytes hashed, about the cost
  of one ``h += rotl(h, 19) + c`` (squidpy/peers/_carp.c; pure Python before it);
* warm pick: the CARP parent of a URL whose ranking is remembered (a cache sees the
  same URLs again and again) -- a dictionary lookup and the first usable parent;
* whole selection: a request's checklist and facts made and :meth:`PeerSelector.start`
  run for a warm URL with ``never_direct allow all`` (the other usable parents,
  ANY_OLD_PARENT, are only listed when a retry needs them).

``--against REV`` times squidpy/peers/hashing.py as it is at git revision REV on the
same URLs, side by side.  Squid's own selection cannot be timed from outside; its
cold cost is the same arithmetic in C.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from squidpy.acl.checklist import Checklist  # noqa: E402
from squidpy.config import loader  # noqa: E402
from squidpy.http.url import parse_target  # noqa: E402
from squidpy.peers import hashing  # noqa: E402
from squidpy.peers.selection import PeerSelector, PeerTable, RequestFacts  # noqa: E402

PARENTS = 32
WARM_URLS = 20000
COLD_URLS = 300


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
    """``count`` targets, lengths 40..120 characters in turn."""
    out = []
    filler = "abcdefghijklmnopqrstuvwxyz0123456789-_" * 4
    for i in range(count):
        want = 40 + (i * 41) % 81
        base = f"http://img{i % 50}.shop.example.com/{prefix}/{i}/"
        out.append(parse_target("GET", base + filler[: max(1, want - len(base))]))
    return out


clock = time.process_time


def per_pick(array, usable, targets) -> float:
    """Microseconds per CARP pick, as peer selection asks for it."""
    carp_pick = getattr(array, "carp_pick", None)
    started = clock()
    if carp_pick is not None:
        for t in targets:
            carp_pick(t.url, t.scheme, t.host, t.port, t.path, usable)
    else:       # hashing.py before carp_pick
        for t in targets:
            array.pick(array.carp_ranking(t.url, t.scheme, t.host, t.port, t.path), usable)
    return (clock() - started) / len(targets) * 1e6


def module_at(rev: str):
    """squidpy/peers/hashing.py as it is at git revision ``rev``."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:squidpy/peers/hashing.py"],
                          check=True, capture_output=True, text=True).stdout
    fd, name = tempfile.mkstemp(suffix=".py")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    spec = importlib.util.spec_from_file_location(f"hashing_at_{rev}", name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    os.unlink(name)
    return module


def measure(modules: dict, config, selector, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Each round times every module in turn (on URLs of the same lengths), so a change
    in the machine's load falls on all of them alike."""
    usable = selector.http_okay
    arrays = {name: module.HashArray(config.cache_peer) for name, module in modules.items()}
    figures = {name: {"cold pick": [], "hash step": [], "warm pick": []} for name in modules}
    warm_targets = urls("warm", WARM_URLS)
    for array in arrays.values():
        per_pick(array, usable, warm_targets)              # remember their rankings
    for run in range(rounds):
        for n, (name, array) in enumerate(arrays.items()):
            targets = urls(f"cold{run}-{n}", COLD_URLS)
            steps = sum(len(t.url) for t in targets) * PARENTS
            cold = per_pick(array, usable, targets)
            figures[name]["cold pick"].append(cold)
            figures[name]["hash step"].append(cold * COLD_URLS / steps * 1000)
            figures[name]["warm pick"].append(per_pick(array, usable, warm_targets))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--against", metavar="REV", help="also time hashing.py at this git revision")
    parser.add_argument("--wall", action="store_true", help="elapsed time instead of CPU time")
    args = parser.parse_args()
    global clock
    if args.wall:
        clock = time.perf_counter
    config, table = setup()
    some = urls("warm", 1)[0]
    selector = PeerSelector(table, config, RequestFacts("GET", some.url, "http", some.host, some.port, some.path,
                                                        "10.1.1.1", Checklist()), 0)
    modules = {"this tree": hashing}
    if args.against:
        modules[args.against] = module_at(args.against)
    columns = measure(modules, config, selector, args.rounds)

    warm_targets = urls("warm", 5000)
    table.carp.carp_ranking(some.url, some.scheme, some.host, some.port, some.path)
    for t in warm_targets:
        table.carp.carp_ranking(t.url, t.scheme, t.host, t.port, t.path)

    def whole() -> float:
        started = clock()
        for t in warm_targets:
            ch = Checklist(src="10.1.1.1", url=t.url, host=t.host, port=t.port, path=t.path)
            facts = RequestFacts("GET", t.url, "http", t.host, t.port, t.path, "10.1.1.1", ch)
            PeerSelector(table, config, facts, 0).start()
        return (clock() - started) / len(warm_targets) * 1e6

    columns["this tree"]["whole selection (warm URL)"] = [whole() for _ in range(args.rounds)]
    print(f"CARP with {PARENTS} parents, URLs of 40-120 characters, {args.rounds} rounds, "
          f"{'elapsed' if args.wall else 'CPU'} time, Python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'':>28} " + " ".join(f"{name + ' median':>18} {'min':>8}" for name in columns))
    for row in columns["this tree"]:
        cells = []
        for figures in columns.values():
            if row in figures:
                unit = "ns" if row == "hash step" else "us"
                cells.append(f"{statistics.median(figures[row]):15.2f} {unit} {min(figures[row]):8.2f}")
        print(f"{row:>28} " + " ".join(cells))


if __name__ == "__main__":
    main()
