"""squidpy against Squid, side by side, on loopback: one command, a table of ratios.

    python benchmarks/run.py [--rounds 3] [--duration 8] [--only miss,hit1k,...]

Starts an origin (nginx when installed, else a built-in Twisted one), squidpy
and, when installed, Squid; runs every path for both, alternating which goes
first, and prints medians and squidpy/Squid ratios.  Installs nothing: the
tools it uses are wrk, curl, nginx and squid from Debian (`apt-get install
wrk curl nginx-light squid`); a path whose tool is missing is skipped and
says so.  Everything listens on 127.0.0.1 and stops when the run ends.

    python benchmarks/run.py --instructions [--windows 5]

counts instead, under valgrind's callgrind, the instructions squidpy runs per 1 KB
memory hit with authentication configured step by step (no auth_param, auth_param
without an authentication ACL, credentials sent or not, Basic with a warm cache):
on a shared machine, where CPU time per request moves by 10 %, these move by 1-2 %.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LUA = """
local target = os.getenv("TARGET")
local host = target:match("^https?://([^/]+)")
local headers = { ["Host"] = host }
local credentials = os.getenv("PROXY_AUTHORIZATION")
if credentials then headers["Proxy-Authorization"] = credentials end
request = function() return wrk.format("GET", target, headers) end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def rss_mb(pid: int) -> float:
    total = 0
    for p in [pid, *children(pid)]:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of ``pid`` and its children so far (their helpers too)."""
    total = 0
    for p in [pid, *children(pid)]:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])        # utime, stime
        except (FileNotFoundError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return []
    return [int(x) for x in out.split()]


# ---------------------------------------------------------------- the processes

class Origin:
    """nginx serving /n/ (no-store) and /c/ (cacheable) files, or the built-in origin."""

    def __init__(self, work: Path):
        self.work = work
        self.port = free_port()
        www = work / "www"
        for d in ("n", "c", "scale"):
            (www / d).mkdir(parents=True, exist_ok=True)
        for d in ("n", "c"):
            (www / d / "1k.bin").write_bytes(os.urandom(1024))
            (www / d / "100k.bin").write_bytes(os.urandom(100 * 1024))
        self.proc = None
        self.kind = "nginx" if shutil.which("nginx") else "builtin"

    def start(self) -> None:
        if self.kind == "nginx":
            conf = self.work / "nginx.conf"
            conf.write_text(f"""
worker_processes 1;
daemon off;
pid {self.work}/nginx.pid;
error_log {self.work}/nginx.err;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{self.port} backlog=4096;
    root {self.work}/www;
    location /n/ {{ add_header Cache-Control "no-store"; }}
    location /c/ {{ add_header Cache-Control "max-age=86400"; }}
    location /big/ {{ return 404; }}
    location /scale/ {{ add_header Cache-Control "max-age=86400"; try_files /c/1k.bin =404; }}
  }}
}}
""")
            self.proc = subprocess.Popen(["nginx", "-c", str(conf)], stderr=subprocess.DEVNULL)
        else:
            self.proc = subprocess.Popen([sys.executable, str(HERE / "origin.py"), str(self.port), str(self.work / "www")])
        wait_port(self.port)
        self.big = self.work / "www" / "c" / "big.bin"

    def make_big(self, size: int) -> str:
        """A file of ``size`` bytes (sparse: no disk needed) served from /n/, read once
        so that its pages are cached: else the first transfer of a run (whichever proxy's
        turn it is) pays for filling the page cache (a third of the throughput)."""
        path = self.work / "www" / "n" / f"big{size}.bin"
        if not path.exists():
            with open(path, "wb") as f:
                f.truncate(size)
            with open(path, "rb", buffering=0) as f:
                while f.read(1 << 20):
                    pass
        return f"http://127.0.0.1:{self.port}/n/{path.name}"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


class Proxy:
    name = ""

    def __init__(self, work: Path, disk: bool = False):
        self.work = work / ("disk" if disk else "nodisk")
        self.work.mkdir(parents=True, exist_ok=True)
        os.chmod(self.work, 0o755)
        self.disk = disk            # with a disk cache (as every real deployment has)
        self.port = free_port()
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


POLICY = """
acl local src 127.0.0.0/8
http_access allow local
http_access deny all
"""


SQUIDPY_CACHE = """
cache_mem 256 MB
maximum_object_size_in_memory 512 KB
"""


def _knows(directive: str) -> bool:
    sys.path.insert(0, str(ROOT))
    import squidpy.config.directives  # noqa: F401  (fills the registry)
    from squidpy.config.registry import DIRECTIVES as registry
    return directive in registry


class Squidpy(Proxy):
    name = "squidpy"

    def start(self, extra: str = "", workers: int = 1, policy: str = POLICY, prefix: tuple = ()) -> None:
        """``prefix``: a command to run squidpy under (valgrind)."""
        d = self.work / "squidpy"
        d.mkdir(exist_ok=True)
        conf = d / "squidpy.conf"
        disk = f"cache_dir diskcache {d}/cache 2000\n" if self.disk else ""
        conf.write_text(policy + f"""
http_port 127.0.0.1:{self.port}
access_log {d}/access.log squid
cache_log {d}/cache.log
pid_filename {d}/squidpy.pid
""" + (SQUIDPY_CACHE if _knows("cache_mem") else "") + disk
            + (f"workers {workers}\n" if workers > 1 else "") + extra)
        self.proc = subprocess.Popen([*prefix, sys.executable, "-m", "squidpy", "run", "-f", str(conf)],
                                     cwd=ROOT, stderr=subprocess.DEVNULL,
                                     env=dict(os.environ, PYTHONHASHSEED="0") if prefix else None)
        wait_port(self.port, 600 if prefix else 20)


class Squid(Proxy):
    name = "squid"

    def start(self, extra: str = "", workers: int = 1, policy: str = POLICY) -> None:
        d = self.work / "squid"
        d.mkdir(exist_ok=True)
        user = "proxy" if _user_exists("proxy") else "nobody"
        conf = d / "squid.conf"
        conf.write_text(policy + f"""
http_port 127.0.0.1:{self.port}
cache_effective_user {user}
access_log {d}/access.log squid
cache_log {d}/cache.log
pid_filename {d}/squid.pid
coredump_dir {d}
cache_mem 256 MB
maximum_object_size_in_memory 512 KB
shutdown_lifetime 1 second
""" + extra)
        if os.geteuid() == 0:
            shutil.chown(d, user)
        if self.disk:
            # as deployed: an aufs cache_dir, made once with squid -z
            cache = d / "cache"
            if not cache.exists():
                cache.mkdir()
                if os.geteuid() == 0:
                    shutil.chown(cache, user)
                conf.write_text(conf.read_text() + f"cache_dir aufs {cache} 2000 16 256\n")
                subprocess.run(["squid", "-f", str(conf), "-z", "-N"], stderr=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, timeout=120)
            elif "cache_dir" not in conf.read_text():
                conf.write_text(conf.read_text() + f"cache_dir aufs {cache} 2000 16 256\n")
        self.proc = subprocess.Popen(["squid", "-f", str(conf), "-N"], stderr=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL)
        wait_port(self.port)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# ---------------------------------------------------------------- measurements

def wrk(proxy: Proxy, target: str, duration: int, connections: int = 50, credentials: str | None = None) -> dict:
    """``credentials``: a Proxy-Authorization value every request carries."""
    lua = proxy.work / "proxy.lua"
    lua.write_text(LUA)
    env = dict(os.environ, TARGET=target)
    if credentials:
        env["PROXY_AUTHORIZATION"] = credentials
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(lua), proxy.url],
        capture_output=True, text=True, env=env, timeout=duration + 60)
    text = out.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p99 = _ms(re.search(r"\s99%\s+([\d.]+\w+)", text).group(1))
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", text)
    mbs = float(transfer.group(1)) * {"B": 1e-6, "KB": 1e-3, "MB": 1, "GB": 1e3}[transfer.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    done = re.search(r"(\d+) requests in", text)
    return {"rps": rps, "p99_ms": p99, "MB/s": mbs * 1.048576, "non2xx": int(errors.group(1)) if errors else 0,
            "requests": int(done.group(1)) if done else 0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(\w+)", text)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def curl_tunnel(proxy: Proxy, url: str) -> float:
    """MB/s of one download through CONNECT (curl -p)."""
    out = subprocess.run(["curl", "-s", "-p", "-x", proxy.url, "-o", "/dev/null", "-w", "%{speed_download}", url],
                         capture_output=True, text=True, timeout=600)
    return float(out.stdout) / 1e6


def parallel_tunnels(proxy: Proxy, url: str, n: int) -> float:
    """Total MB/s of ``n`` simultaneous CONNECT downloads."""
    started = time.monotonic()
    procs = [subprocess.Popen(["curl", "-s", "-p", "-x", proxy.url, "-o", "/dev/null", "-w", "%{size_download}", url],
                              stdout=subprocess.PIPE, text=True) for _ in range(n)]
    total = sum(int(p.communicate(timeout=600)[0] or 0) for p in procs)
    return total / (time.monotonic() - started) / 1e6


def warm(proxy: Proxy, url: str, count: int = 3, user: str | None = None) -> None:
    for _ in range(count):
        subprocess.run(["curl", "-s", "-o", "/dev/null", "-x", proxy.url, *(["-U", user] if user else []), url],
                       timeout=30)


def idle_connections_rss(proxy: Proxy, n: int) -> float:
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", proxy.port), timeout=5))
        time.sleep(1.0)
        return rss_mb(proxy.proc.pid)
    finally:
        for s in socks:
            s.close()


def keepalive_idle_rss(proxy: Proxy, url: str, n: int) -> float:
    """RSS once ``n`` keep-alive clients got one hit each and wait (what browsers mostly
    hold), the proxy's start included."""
    warm(proxy, url)
    host = url.split("/")[2]
    request = f"GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            s.sendall(request)
            socks.append(s)
            if len(socks) % 200 == 0:
                _read_replies(socks[-200:])
        _read_replies(socks[len(socks) // 200 * 200:])
        time.sleep(1.0)
        return rss_mb(proxy.proc.pid)
    finally:
        for s in socks:
            s.close()


def _read_replies(socks: list) -> None:
    """One whole reply (head and Content-Length body) on each socket."""
    for s in socks:
        got = b""
        while True:
            end = got.find(b"\r\n\r\n")
            if end >= 0:
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", got[:end + 2])
                if length and len(got) >= end + 4 + int(length.group(1)):
                    break
            data = s.recv(65536)
            if not data:
                raise RuntimeError("the proxy closed a keep-alive connection")
            got += data


def streaming_rss(proxy: Proxy, url: str) -> float:
    peak = 0.0
    p = subprocess.Popen(["curl", "-s", "-x", proxy.url, "-o", "/dev/null", "--limit-rate", "400M", url])
    while p.poll() is None:
        peak = max(peak, rss_mb(proxy.proc.pid))
        time.sleep(0.1)
    return peak


# ---------------------------------------------------------------- the run

PATHS = ["miss", "hit1k", "hit100k", "connect", "tunnels50", "blocklist", "auth", "scale", "memory"]

# auth: Basic through Squid's basic_ncsa_auth on both sides, a warm authentication cache
AUTH_USER, AUTH_PASSWORD = "bench", "bench password"
AUTH_POLICY = """
acl local src 127.0.0.0/8
acl users proxy_auth REQUIRED
http_access deny !local
http_access allow users
http_access deny all
"""


def password_file(work: Path) -> Path:
    path = work / "passwd"
    if not path.exists():
        subprocess.run(["htpasswd", "-cbB", str(path), AUTH_USER, AUTH_PASSWORD], check=True,
                       capture_output=True)
        path.chmod(0o644)        # Squid's helper runs as Squid's user
    return path


# (label, auth_param, policy, credentials sent): what costs a request merely because
# authentication is configured, apart from what the authentication ACL costs
AUTH_STEPS = (("none", False, "open", False), ("credentials sent, no auth_param", False, "open", True),
              ("auth_param, no auth ACL", True, "open", False),
              ("auth_param, no auth ACL, credentials sent", True, "open", True),
              ("Basic (warm)", True, "auth", True))


def auth_instructions(work: Path, origin: Origin, windows: int, per_connection: int,
                      connections: int = 20) -> None:
    """Instructions squidpy runs per authenticated 1 KB memory hit, under valgrind's
    callgrind, for each of AUTH_STEPS: exact where CPU time on a shared machine is not.
    squidpy runs uninstrumented until its connections are open and warm; then each
    window of ``connections`` x ``per_connection`` keep-alive requests is counted
    alone (callgrind_control zeroes, then dumps), and the median window is printed."""
    import base64
    import threading
    helper = "/usr/lib/squid/basic_ncsa_auth"
    if not os.path.exists(helper) or not shutil.which("htpasswd") or not shutil.which("valgrind"):
        sys.exit("--instructions needs valgrind, /usr/lib/squid/basic_ncsa_auth (squid) and htpasswd (apache2-utils)")
    auth = f"auth_param basic program {helper} {password_file(work)}\nauth_param basic children 5 startup=1\n"
    credentials = "Basic " + base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()
    url = origin.url("/c/1k.bin")
    out = work / "callgrind"
    out.mkdir(exist_ok=True)

    def hits(port: int, count: int, sends: bool) -> None:
        request = (f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1:{origin.port}\r\n"
                   + (f"Proxy-Authorization: {credentials}\r\n" if sends else "") + "\r\n").encode()
        failures = []

        def one() -> None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
                    buf = b""
                    for _ in range(count):
                        sock.sendall(request)
                        while True:
                            end = buf.find(b"\r\n\r\n")
                            if end >= 0:
                                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", buf[:end + 2])
                                total = end + 4 + int(length.group(1))
                                if len(buf) >= total:
                                    if not buf.startswith(b"HTTP/1.1 200 "):
                                        raise RuntimeError(buf[:60])
                                    buf = buf[total:]
                                    break
                            data = sock.recv(65536)
                            if not data:
                                raise RuntimeError("squidpy closed the connection")
                            buf += data
            except Exception as e:      # reported by the caller, in its thread
                failures.append(e)

        threads = [threading.Thread(target=one) for _ in range(connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        if failures:
            raise RuntimeError(f"hits failed: {failures[0]}")

    def control(pid: int, *what: str) -> None:
        subprocess.run(["callgrind_control", *what, str(pid)], capture_output=True, timeout=120)

    print(f"instructions per 1 KB memory hit (callgrind; {connections} keep-alive connections, "
          f"windows of {connections * per_connection} requests, median of {windows})")
    for label, with_auth, policy, sends in AUTH_STEPS:
        proxy = Squidpy(work)
        proxy.start(policy=(auth if with_auth else "") + (AUTH_POLICY if policy == "auth" else POLICY),
                    prefix=("valgrind", "--tool=callgrind", "--instr-atstart=no",
                            f"--callgrind-out-file={out}/callgrind.%p"))
        try:
            warm(proxy, url, user=f"{AUTH_USER}:{AUTH_PASSWORD}" if sends else None)
            pid = proxy.proc.pid
            hits(proxy.port, 5, sends)          # every connection open and its first request done
            control(pid, "-i", "on")
            counts = []
            for _ in range(windows):
                control(pid, "-z")
                hits(proxy.port, per_connection, sends)
                control(pid, "-d")
                dump = max(out.glob(f"callgrind.{pid}.*"), key=os.path.getmtime)
                total = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(errors="replace"), re.M)
                counts.append(int(total.group(1)) / (connections * per_connection))
                dump.unlink()
            print(f"  {label:44} {statistics.median(counts) / 1000:7.1f}k   "
                  f"(windows: {', '.join(f'{n / 1000:.1f}k' for n in counts)})", flush=True)
        finally:
            proxy.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    ap.add_argument("--only", default=",".join(PATHS), help="comma-separated: " + ",".join(PATHS))
    ap.add_argument("--workers", type=int, default=0, help="also measure squidpy with workers N")
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--disk", choices=("both", "on", "off"), default="both",
                    help="measure with a disk cache on both sides (squidpy diskcache, Squid aufs), "
                         "without, or both (default)")
    ap.add_argument("--instructions", action="store_true",
                    help="instead: squidpy's instructions per authenticated hit under valgrind (the auth "
                         "path's configurations, step by step)")
    ap.add_argument("--windows", type=int, default=5, help="with --instructions: windows counted")
    args = ap.parse_args()
    only = args.only.split(",")
    missing = [t for t in ("wrk", "curl") if not shutil.which(t)]
    if missing:
        sys.exit(f"benchmarks need {', '.join(missing)} (apt-get install {' '.join(missing)})")
    have_squid = shutil.which("squid") is not None
    if not have_squid:
        print("squid is not installed (apt-get install squid): squidpy figures only", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="squidpy-bench-"))
    os.chmod(work, 0o755)
    origin = Origin(work)
    origin.start()
    if args.instructions:
        try:
            auth_instructions(work, origin, args.windows, 20)
        finally:
            origin.stop()
            shutil.rmtree(work, ignore_errors=True)
        return
    print(f"origin: {origin.kind} on port {origin.port}; rounds: {args.rounds}; wrk {args.duration}s, 50 connections")
    results: dict[str, dict[str, list]] = {}

    def record(path, name, value):
        results.setdefault(path, {}).setdefault(name, []).append(value)

    def both(disk: bool):
        sides = [Squidpy(work, disk)]
        if have_squid:
            sides.append(Squid(work, disk))
        return sides

    disks = {"both": (True, False), "on": (True,), "off": (False,)}[args.disk]
    try:
        for path in PATHS:
            if path not in only:
                continue
            for disk in disks:
                for rnd in range(args.rounds):
                    sides = both(disk)
                    if rnd % 2:
                        sides.reverse()
                    for proxy in sides:
                        run_path(path, proxy, origin, args, _labelled(record, disk, len(disks) > 1), work)
        if args.workers > 1:
            for rnd in range(args.rounds):
                proxy = Squidpy(work)
                proxy.start(workers=args.workers)
                try:
                    record("miss req/s", f"squidpy workers {args.workers}", wrk(proxy, origin.url("/n/1k.bin"), args.duration)["rps"])
                    warm(proxy, origin.url("/c/1k.bin"))
                    record("hit 1KB req/s", f"squidpy workers {args.workers}", wrk(proxy, origin.url("/c/1k.bin"), args.duration)["rps"])
                finally:
                    proxy.stop()
    finally:
        origin.stop()
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    shutil.rmtree(work, ignore_errors=True)


def _labelled(record, disk: bool, label: bool):
    """Results of the disk and no-disk configurations apart: 'hit 1KB req/s [disk]'."""
    if not label:
        return record
    tag = " [disk]" if disk else " [no disk]"
    return lambda path, name, value: record(path + tag, name, value)


def run_path(path, proxy, origin, args, record, work):
    name = proxy.name
    if path == "blocklist":
        domains = work / "blocklist.txt"
        if not domains.exists():
            domains.write_text("".join(f".blocked{i}.example.com\n" for i in range(100_000)))
        for label, extra in (("no list", ""), ("100k list", f'acl blocked dstdomain "{domains}"\nhttp_access deny blocked\n')):
            proxy.start(extra)
            try:
                record(path, f"{name} {label}", wrk(proxy, origin.url("/n/1k.bin"), args.duration)["rps"])
            finally:
                proxy.stop()
        return
    if path == "auth":
        import base64
        helper = "/usr/lib/squid/basic_ncsa_auth"
        if not os.path.exists(helper) or not shutil.which("htpasswd"):
            print("auth: needs /usr/lib/squid/basic_ncsa_auth (squid) and htpasswd (apache2-utils)", file=sys.stderr)
            return
        auth = f"auth_param basic program {helper} {password_file(work)}\nauth_param basic children 5 startup=1\n"
        credentials = "Basic " + base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()
        url = origin.url("/c/1k.bin")
        for label, extra, policy, user in (("none", "", POLICY, None),
                                           ("basic", auth, AUTH_POLICY, f"{AUTH_USER}:{AUTH_PASSWORD}")):
            proxy.start(policy=extra + policy)      # auth_param before the ACLs that need it
            try:
                warm(proxy, url, user=user)
                cpu = cpu_seconds(proxy.proc.pid)
                r = wrk(proxy, url, args.duration, credentials=credentials if user else None)
                cpu = cpu_seconds(proxy.proc.pid) - cpu
                if r["non2xx"]:
                    print(f"auth: {name} {label}: {r['non2xx']} answers were not 2xx", file=sys.stderr)
                record(path, f"{name} {label}", r["rps"])
                # the proxy's CPU per request: what other processes on a noisy machine disturb least
                if r["requests"]:
                    record("auth CPU us/request", f"{name} {label}", cpu / r["requests"] * 1e6)
            finally:
                proxy.stop()
        return
    proxy.start()
    try:
        if path == "miss":
            r = wrk(proxy, origin.url("/n/1k.bin"), args.duration)
            record("miss req/s", name, r["rps"])
            record("miss p99 ms", name, r["p99_ms"])
        elif path == "hit1k":
            warm(proxy, origin.url("/c/1k.bin"))
            r = wrk(proxy, origin.url("/c/1k.bin"), args.duration)
            record("hit 1KB req/s", name, r["rps"])
            record("hit 1KB p99 ms", name, r["p99_ms"])
        elif path == "hit100k":
            warm(proxy, origin.url("/c/100k.bin"))
            record("hit 100KB MB/s", name, wrk(proxy, origin.url("/c/100k.bin"), args.duration)["MB/s"])
        elif path == "connect":
            record("CONNECT 1 GB MB/s", name, curl_tunnel(proxy, origin.make_big(1 << 30)))
        elif path == "tunnels50":
            record("50 tunnels total MB/s", name, parallel_tunnels(proxy, origin.make_big(100 << 20), 50))
        elif path == "scale":
            for count in (100, 100_000):
                _fill(proxy, origin, count)
                warm(proxy, origin.url("/scale/obj0"))
                record(f"hit req/s, {count} objects", name, wrk(proxy, origin.url("/scale/obj0"), args.duration)["rps"])
        elif path == "memory":
            record("RSS MB, 10k idle clients", name, idle_connections_rss(proxy, 10_000))
            record("RSS MB, streaming 2 GB", name, streaming_rss(proxy, origin.make_big(2 << 30)))
            # last: what it measures stays in the process's RSS
            record("RSS MB, 5k keep-alive clients idle after a hit", name,
                   keepalive_idle_rss(proxy, origin.url("/c/1k.bin"), 5_000))
    finally:
        proxy.stop()


def _fill(proxy, origin, count: int) -> None:
    """Store ``count`` distinct cacheable objects (wrk-free: a keep-alive client)."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    for i in range(count):
        c.request("GET", origin.url(f"/scale/obj{i}"))
        c.getresponse().read()
    c.close()


def report(results: dict) -> None:
    print()
    header = f"{'path':34} {'squidpy':>12} {'squid':>12} {'ratio':>8}"
    print(header)
    print("-" * len(header))
    for path, by_name in results.items():
        names = sorted(by_name)
        if path == "blocklist":
            for side in ("squidpy", "squid"):
                base, listed = by_name.get(f"{side} no list"), by_name.get(f"{side} 100k list")
                if base and listed:
                    b, l = statistics.median(base), statistics.median(listed)
                    print(f"{'blocklist ' + side + ' req/s (none/100k)':34} {b:12.0f} {l:12.0f} {l / b:8.2f}")
            continue
        if path.startswith("auth"):
            cpu = path.startswith("auth CPU")      # lower is better: the ratios are its inverse
            unit = "CPU us/req" if cpu else "req/s"
            for side in ("squidpy", "squid"):
                base, basic = by_name.get(f"{side} none"), by_name.get(f"{side} basic")
                if base and basic:
                    b, a = statistics.median(base), statistics.median(basic)
                    print(f"{'auth hit 1KB ' + side + ' ' + unit + ' (none/basic)':44} {b:12.1f} {a:12.1f} "
                          f"{b / a if cpu else a / b:8.2f}")
            ours, theirs = by_name.get("squidpy basic"), by_name.get("squid basic")
            if ours and theirs:
                o, t = statistics.median(ours), statistics.median(theirs)
                print(f"{'auth hit 1KB basic ' + unit + ' (squidpy/squid)':44} {o:12.1f} {t:12.1f} "
                      f"{t / o if cpu else o / t:8.2f}")
            continue
        if path.startswith("hit req/s, 100000 objects"):
            few = results.get(path.replace("100000", "100"), {})
            for side in ("squidpy", "squid"):
                if by_name.get(side) and few.get(side):
                    b, l = statistics.median(few[side]), statistics.median(by_name[side])
                    print(f"{'scale ' + side + ' req/s (100/100k)':34} {b:12.0f} {l:12.0f} {l / b:8.2f}")
        ours = by_name.get("squidpy")
        theirs = by_name.get("squid")
        o = statistics.median(ours) if ours else float("nan")
        t = statistics.median(theirs) if theirs else float("nan")
        ratio = o / t if ours and theirs else float("nan")
        print(f"{path:34} {o:12.1f} {t:12.1f} {ratio:8.2f}")
        for name in names:
            if name not in ("squidpy", "squid"):
                print(f"{path + ' (' + name + ')':34} {statistics.median(by_name[name]):12.1f}")
    print("\nmedians of the rounds; ratio = squidpy / squid (for latency and RSS lower is better)")


if __name__ == "__main__":
    main()
