"""Interception against explicit proxying, through the same gateway: one command, a table.

    python benchmarks/intercept.py [--rounds 3] [--duration 8] [--mode intercept|tproxy]

Builds the client/gateway/origin network namespaces of tests/netns.py (root, ip, nft),
runs nginx on the origin's address, and on the gateway squidpy (and Squid, when
installed) with a forward port 3128 and an interception port 3129 that the gateway's
nftables rules send the client's port 80 to.  From the client namespace wrk fetches
1 KB objects: misses (``no-store``) and memory hits, once intercepted (``wrk
http://ORIGIN/...``, no proxy settings) and once explicitly (``wrk`` through
http://GATEWAY:3128 with absolute URLs).  It prints medians of throughput and of the
proxy's CPU time per request (read from /proc, so it holds on a busy machine where
throughput does not), and the intercepted/explicit ratios for each proxy (the target:
>= 0.95).  Everything stays inside the namespaces,
which are removed at the end.  ``--instructions`` counts instead, under valgrind, the
instructions squidpy runs per memory hit either way (exact, where throughput on a shared
machine is not).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests import netns  # noqa: E402
from tests.netns import GATEWAY_CLIENT4, ORIGIN4  # noqa: E402

LUA = """
local target = os.getenv("TARGET")
local host = target:match("^https?://([^/]+)")
request = function() return wrk.format("GET", target, { ["Host"] = host }) end
"""
POLICY = """
acl clients src 192.0.2.0/24
http_access allow clients
http_access deny all
cache_mem 256 MB
maximum_object_size_in_memory 512 KB
dns_nameservers 127.0.0.1
"""


def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for a process to come up")


def listening(ns: netns.Netns, port: int) -> bool:
    out = subprocess.run([*ns.exec_prefix(), "ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True)
    return bool(out.stdout.strip())


class Nginx:
    def __init__(self, ns: netns.Netns, work: Path):
        self.ns, self.work = ns, work
        www = work / "www"
        for d in ("n", "c"):
            (www / d).mkdir(parents=True, exist_ok=True)
            (www / d / "1k.bin").write_bytes(os.urandom(1024))
        conf = work / "nginx.conf"
        conf.write_text(f"""
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx.err;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  server {{
    listen {ORIGIN4}:80 backlog=4096;
    root {www};
    location /n/ {{ add_header Cache-Control "no-store"; }}
    location /c/ {{ add_header Cache-Control "max-age=86400"; }}
  }}
}}
""")
        self.proc = subprocess.Popen([*ns.exec_prefix(), "nginx", "-c", str(conf)], stderr=subprocess.DEVNULL)
        wait_until(lambda: listening(ns, 80))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Proxy:
    """squidpy or Squid on the gateway: 3128 forward, 3129 intercepting."""

    def __init__(self, kind: str, ns: netns.Netns, work: Path, mode: str):
        self.kind = kind
        d = work / kind
        d.mkdir(exist_ok=True)
        ports = f"http_port 3128\nhttp_port 3129 {mode}\n"
        logs = f"access_log {d}/access.log squid\ncache_log {d}/cache.log\npid_filename {d}/{kind}.pid\n"
        if kind == "squid":
            user = "proxy"
            shutil.chown(d, user)
            text = (POLICY + ports + logs + f"cache_effective_user {user}\ncoredump_dir {d}\n"
                    "shutdown_lifetime 1 second\n")
            command = ["squid", "-N", "-f"]
        else:
            text = POLICY + ports + logs
            command = [sys.executable, "-m", "squidpy", "run", "-f"]
        conf = d / f"{kind}.conf"
        conf.write_text(text)
        self.proc = subprocess.Popen([*ns.exec_prefix(), *command, str(conf)], cwd=HERE.parent,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: listening(ns, 3128) and listening(ns, 3129))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(client: netns.Netns, work: Path, url: str, duration: int, proxy: str | None) -> tuple[float, int]:
    """(requests per second, requests) from the client namespace: through ``proxy``
    (absolute URLs), or straight at ``url`` (the gateway intercepts it)."""
    args = ["wrk", "-t1", "-c50", f"-d{duration}s"]
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    if proxy:
        lua = work / "proxy.lua"
        lua.write_text(LUA)
        args += ["-s", str(lua), proxy]
        env["TARGET"] = url
    else:
        args.append(url)
    out = subprocess.run([*client.exec_prefix(), *args], capture_output=True, text=True, env=env,
                         timeout=duration + 60).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return (float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            int(re.search(r"(\d+) requests in", out).group(1)))


def measure(proxy: "Proxy", client: netns.Netns, work: Path, url: str, duration: int, through: str | None):
    """(req/s, the proxy's CPU microseconds per request): the second does not depend on
    what else the machine runs."""
    before = cpu_seconds(proxy.proc.pid)
    rps, count = wrk(client, work, url, duration, through)
    return rps, (cpu_seconds(proxy.proc.pid) - before) / count * 1e6


def warm(client: netns.Netns, url: str) -> None:
    for _ in range(3):
        subprocess.run([*client.exec_prefix(), "curl", "-s", "-o", "/dev/null", url], timeout=30)


def instructions_per_hit(topo: netns.Topology, work: Path, how: str, counts: tuple[int, int]) -> float:
    """Instructions the squidpy process runs per memory hit (valgrind --tool=callgrind):
    two runs of ``counts`` hits on one keep-alive connection, the difference divided
    by the difference of counts (start-up and shutdown cancel out).  Exact where
    throughput is not, and slow: each run starts squidpy under valgrind."""
    totals = []
    for count in counts:
        d = work / f"cg-{how}-{count}"
        d.mkdir()
        conf = d / "squidpy.conf"
        conf.write_text(POLICY + f"http_port 3128\nhttp_port 3129 intercept\naccess_log {d}/access.log squid\n"
                                 f"cache_log {d}/cache.log\npid_filename {d}/squidpy.pid\n")
        proc = subprocess.Popen([*topo.gateway.exec_prefix(), "valgrind", "--tool=callgrind",
                                 f"--callgrind-out-file={d}/callgrind.out", sys.executable, "-m", "squidpy", "run",
                                 "-f", str(conf)], cwd=HERE.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=dict(os.environ, PYTHONHASHSEED="0"))      # the same hashing in every run
        wait_until(lambda: listening(topo.gateway, 3128) and listening(topo.gateway, 3129), 600)
        if how == "intercepted":
            sock = topo.client.connect(ORIGIN4, 80, timeout=120)
            request = b"GET /c/1k.bin HTTP/1.1\r\nHost: %s\r\nUser-Agent: bench\r\n\r\n" % ORIGIN4.encode()
        else:
            sock = topo.client.connect(GATEWAY_CLIENT4, 3128, timeout=120)
            request = (b"GET http://%s/c/1k.bin HTTP/1.1\r\nHost: %s\r\nUser-Agent: bench\r\n\r\n"
                       % (ORIGIN4.encode(), ORIGIN4.encode()))
        with sock:
            for _ in range(count):
                sock.sendall(request)
                reply = b""
                while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < 1024:
                    data = sock.recv(65536)
                    if not data:
                        raise RuntimeError("squidpy closed the connection")
                    reply += data
        proc.terminate()
        proc.wait(600)
        out = subprocess.run(["callgrind_annotate", f"{d}/callgrind.out"], capture_output=True, text=True).stdout
        totals.append(int(re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", out).group(1).replace(",", "")))
    return (totals[1] - totals[0]) / (counts[1] - counts[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    ap.add_argument("--mode", choices=("intercept", "tproxy"), default="intercept")
    ap.add_argument("--instructions", action="store_true",
                    help="instead: squidpy's instructions per memory hit under valgrind, intercepted and explicit")
    args = ap.parse_args()
    why = netns.unavailable()
    if why:
        sys.exit(f"cannot build the namespaces: {why}")
    missing = [tool for tool in ("wrk", "curl", "nginx", "ss") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"needs {', '.join(missing)} (apt-get install wrk curl nginx-light iproute2)")
    kinds = ["squidpy"] + (["squid"] if shutil.which("squid") else [])
    work = Path(tempfile.mkdtemp(prefix="squidpy-intercept-bench-"))
    os.chmod(work, 0o755)
    topo = netns.Topology.create()
    results: dict[tuple[str, str], list[float]] = {}
    if args.instructions:
        if shutil.which("valgrind") is None:
            sys.exit("--instructions needs valgrind (apt-get install valgrind)")
        try:
            nginx = Nginx(topo.origin, work)
            topo.intercept(3129)
            try:
                per = {how: instructions_per_hit(topo, work, how, (200, 2200)) for how in ("intercepted", "explicit")}
            finally:
                nginx.stop()
        finally:
            topo.destroy()
            shutil.rmtree(work, ignore_errors=True)
        for how, count in per.items():
            print(f"squidpy memory hit, {how}: {count / 1000:.1f}k instructions")
        print(f"ratio explicit / intercepted: {per['explicit'] / per['intercepted']:.3f}")
        return
    try:
        nginx = Nginx(topo.origin, work)
        topo.intercept(3129, mode=args.mode)
        print(f"{args.mode}; rounds: {args.rounds}; wrk {args.duration}s, 50 connections, 1 KB objects")
        try:
            for rnd in range(args.rounds):
                for kind in (kinds if rnd % 2 == 0 else kinds[::-1]):
                    proxy = Proxy(kind, topo.gateway, work, args.mode)
                    try:
                        explicit = f"http://{GATEWAY_CLIENT4}:3128"
                        order = [("intercepted", None), ("explicit", explicit)]
                        for how, through in (order if rnd % 2 == 0 else order[::-1]):
                            for path, url in (("miss", f"http://{ORIGIN4}/n/1k.bin"),
                                              ("hit", f"http://{ORIGIN4}/c/1k.bin")):
                                if path == "hit":
                                    warm(topo.client, url)
                                rps, cpu = measure(proxy, topo.client, work, url, args.duration, through)
                                results.setdefault((kind, f"{path} {how}"), []).append(rps)
                                results.setdefault((kind, f"{path} {how} cpu"), []).append(cpu)
                    finally:
                        proxy.stop()
        finally:
            nginx.stop()
    finally:
        topo.destroy()
        shutil.rmtree(work, ignore_errors=True)
    print()
    header = (f"{'proxy':8} {'path':5} {'intercepted req/s':>18} {'explicit req/s':>15} {'ratio':>6}"
              f" {'intercepted us CPU':>19} {'explicit us CPU':>16} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    for kind in kinds:
        for path in ("miss", "hit"):
            i, e = (statistics.median(results[(kind, f"{path} {how}")]) for how in ("intercepted", "explicit"))
            ic, ec = (statistics.median(results[(kind, f"{path} {how} cpu")]) for how in ("intercepted", "explicit"))
            print(f"{kind:8} {path:5} {i:18.0f} {e:15.0f} {i / e:6.2f} {ic:19.0f} {ec:16.0f} {ec / ic:6.2f}")
    print("\nmedians of the rounds; ratios: intercepted / explicit throughput through the same gateway,")
    print("and explicit / intercepted CPU per request of the proxy process (both: higher is better for interception)")


if __name__ == "__main__":
    main()
