"""How fast `squidpy logs report` reads a big access log, and how much memory it needs.

    python benchmarks/log_report.py [--lines 1000000] [--rounds 3] [--keep DIR]

Writes a synthetic week of Squid native-format traffic (a few thousand
clients and domains, hits, misses, denials, CONNECT tunnels, 0.1% malformed
lines), then runs the real command in a fresh process per round, plain and
as gzip-rotated files, with --html, and prints the median wall time and
the peak resident memory (ru_maxrss of the child).  The target from the
issue: 1,000,000 lines in under 15 s, with memory that does not grow with
the log (compare --lines 100000 and 1000000).
"""

from __future__ import annotations

import argparse
import gzip
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RESULTS = [("TCP_MISS", 200, 55), ("TCP_HIT", 200, 8), ("TCP_MEM_HIT", 200, 7), ("TCP_REFRESH_UNMODIFIED", 304, 4),
           ("TCP_MISS", 404, 3), ("TCP_MISS", 503, 1), ("TCP_DENIED", 403, 6), ("TCP_TUNNEL", 200, 14),
           ("TCP_MISS_ABORTED", 200, 2)]
MIMES = ["text/html", "image/png", "application/javascript", "text/css", "application/json", "-"]


def write_log(path: Path, lines: int, seed: int = 1) -> None:
    rnd = random.Random(seed)
    weights = [w for _, _, w in RESULTS]
    clients = [f"10.{i // 250}.{i % 250}.{rnd.randrange(1, 250)}" for i in range(3000)]
    users = ["-"] * 6 + [f"user{i}" for i in range(400)]
    domains = [f"{rnd.choice(['www', 'cdn', 'api', 'img'])}.site{i}.example" for i in range(8000)]
    start = 1795000000.0
    step = 7 * 86400 / lines
    t = start
    with open(path, "w") as f:
        for n in range(lines):
            t += step
            if n % 1000 == 999:
                f.write("this line is not a log line\n")
                continue
            result, status, _ = rnd.choices(RESULTS, weights)[0]
            domain = domains[int(rnd.paretovariate(1.1)) % len(domains)]
            client = clients[int(rnd.paretovariate(1.3)) % len(clients)]
            size = int(rnd.paretovariate(1.2) * 500)
            elapsed = int(rnd.expovariate(1 / 120))
            if result == "TCP_TUNNEL":
                method, url, hier, mime = "CONNECT", f"{domain}:443", "HIER_DIRECT/192.0.2.7", "-"
            else:
                method, url = "GET", f"http://{domain}/p/{rnd.randrange(100000)}.html"
                hit = "HIT" in result or "UNMODIFIED" in result or result == "TCP_DENIED"
                hier = "HIER_NONE/-" if hit else "HIER_DIRECT/192.0.2.7"
                mime = rnd.choice(MIMES)
            f.write(f"{t:.3f} {elapsed:6d} {client} {result}/{status:03d} {size} {method} {url} "
                    f"{rnd.choice(users)} {hier} {mime}\n")


def rotate_gzip(path: Path, parts: int) -> list[Path]:
    """Split into rot-access.log and rot-access.log.N.gz, like a logrotate'd directory."""
    with open(path) as f:
        total = sum(1 for _ in f)
    size = total // parts + 1
    names = [path.with_name(f"rot-access.log.{parts - 1 - i}.gz") for i in range(parts - 1)]
    names.append(path.with_name("rot-access.log"))
    with open(path) as f:
        for i, name in enumerate(names):
            out = gzip.open(name, "wt") if name.suffix == ".gz" else open(name, "w")
            with out:
                for _ in range(size):
                    line = f.readline()
                    if not line:
                        break
                    out.write(line)
    return names


# A small process that runs the report and tells its peak memory: ru_maxrss survives exec, so
# measuring from a big parent would count the parent's pages copied at fork.
MEASURE = """
import resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
print(done.returncode, time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def run(files: list[Path], html: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one `squidpy logs report` process."""
    cmd = [sys.executable, "-m", "squidpy", "logs", "report", "--no-progress", "--html", str(html), *map(str, files)]
    out = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, cwd=ROOT, check=True)
    code, seconds, maxrss = out.stdout.split()
    if code != "0":
        raise RuntimeError(f"the report failed ({code}): {out.stderr}")
    return float(seconds), int(maxrss) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", help="keep the generated files in this directory")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="squidpy-logbench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        log = work / "access.log"
        t0 = time.perf_counter()
        write_log(log, args.lines)
        print(f"wrote {args.lines:,} lines ({log.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s")
        rotated = rotate_gzip(log, 5)
        for name, files in (("plain file", [log]), ("5 files, 4 gzip", rotated)):
            times, peaks = [], []
            for _ in range(args.rounds):
                seconds, peak = run(files, work / "report.html")
                times.append(seconds)
                peaks.append(peak)
            print(f"{name:16s} median {statistics.median(times):5.2f} s  "
                  f"({args.lines / statistics.median(times) / 1000:,.0f}k lines/s)  "
                  f"peak RSS {max(peaks):.0f} MB  runs {', '.join(f'{t:.2f}' for t in times)}")
        print(f"HTML page: {(work / 'report.html').stat().st_size / 1024:.0f} KiB")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
