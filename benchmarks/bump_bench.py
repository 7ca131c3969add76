"""SslBump side by side on loopback: squidpy, Squid 5.7 built with OpenSSL, and mitmproxy.

    python benchmarks/bump_bench.py [--rounds 3] [--requests 20000] [--only miss,hit,...]
        [--squid /opt/squid-openssl/usr/sbin/squid] [--mitmdump PATH]

An nginx origin serves HTTPS on 127.0.0.1 with a certificate from its own CA (and, for the
minting path, 30 more ports each with a certificate of its own).  Each proxy bumps with the same
CA (made by `squidpy ca init`) and trusts the origin's CA; the client is curl (`--http1.1`,
`--cacert` the bumping CA), many transfers per curl process with `--parallel` so that the
client is C, not Python.  Every path is measured for each proxy in turn, alternating the
order in each round; the table shows medians of the rounds and the ratios to Squid.

Installs nothing.  Needs curl and nginx (`apt-get install curl nginx-light`); Squid with
OpenSSL is Debian's squid-openssl (.ci/run unpacks it into /opt/squid-openssl so that the
plain `squid` package stays in place; `--squid` names another binary, and its
security_file_certgen is looked for beside it); mitmproxy's `mitmdump` is taken from PATH or
`--mitmdump` (pip install mitmproxy in a venv of its own).  A proxy that is not there is
skipped and says so.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import Proxy, cpu_seconds, rss_mb, wait_port, _user_exists  # benchmarks/run.py

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SQUID_OPENSSL = "/opt/squid-openssl/usr/sbin/squid"
MINT_PORTS = 30

POLICY = """
acl local src 127.0.0.0/8
http_access allow local
http_access deny all
"""

RULES = {
    # server-first: the minted certificate mimics the origin's (as mitmproxy does by default)
    "bump": "acl step1 at_step SslBump1\nacl step2 at_step SslBump2\n"
            "ssl_bump peek step1\nssl_bump stare step2\nssl_bump bump all\n",
    "splice": "acl step1 at_step SslBump1\nssl_bump peek step1\nssl_bump splice all\n",
    "connect": "",
}


# ---------------------------------------------------------------- certificates

def make_origin_pki(work: Path, count: int) -> tuple[Path, list[tuple[Path, Path]]]:
    """An origin CA and ``count`` leaf certificates for 127.0.0.1 (CN and IP SAN), differing by
    their organisation and a DNS SAN origin<i>.test, RSA 2048."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench origin CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    ca_path = work / "origin-ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path = work / "origin.key"
    key_path.write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    pairs = []
    for i in range(count):
        host = f"origin{i}.test"
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"Bench origin {i}"),
                                         # Squid 5.7 matches an IP host against the CN, not IP SANs
                                         x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
                .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=20))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(host),
                                                            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        path = work / f"origin{i}.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pairs.append((path, key_path))
    return ca_path, pairs


# ---------------------------------------------------------------- the origin

def distinct_ports(count: int) -> list[int]:
    """``count`` free ports, all different (held open until all are chosen)."""
    held = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


class TlsOrigin:
    """nginx on HTTPS: /n/ no-store, /c/ cacheable; port 0 is the main one, the others differ by certificate."""

    def __init__(self, work: Path, pairs: list[tuple[Path, Path]]):
        self.work = work
        self.pairs = pairs
        self.ports = distinct_ports(len(pairs))
        self.port = self.ports[0]
        www = work / "www"
        for d in ("n", "c"):
            (www / d).mkdir(parents=True, exist_ok=True)
            (www / d / "1k.bin").write_bytes(os.urandom(1024))
        self.proc = None

    def start(self) -> None:
        servers = "".join(f"""
  server {{
    listen 127.0.0.1:{port} ssl backlog=4096;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {self.work}/www;
    location /n/ {{ add_header Cache-Control "no-store"; }}
    location /c/ {{ add_header Cache-Control "max-age=86400"; }}
  }}""" for port, (cert, key) in zip(self.ports, self.pairs))
        conf = self.work / "nginx.conf"
        conf.write_text(f"""
worker_processes 1;
daemon off;
pid {self.work}/nginx.pid;
error_log {self.work}/nginx.err;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:SSL:10m;
{servers}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-c", str(conf)], stderr=subprocess.DEVNULL)
        for port in self.ports:
            wait_port(port)

    def url(self, path: str, index: int = 0) -> str:
        return f"https://127.0.0.1:{self.ports[index]}{path}"

    def make_big(self, size: int) -> str:
        path = self.work / "www" / "n" / f"big{size}.bin"
        if not path.exists():
            with open(path, "wb") as f:
                f.truncate(size)
        return self.url(f"/n/{path.name}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


# ---------------------------------------------------------------- the proxies

class BumpingProxy(Proxy):
    caches = True

    def __init__(self, work: Path, bump_ca: Path, origin_ca: Path):
        super().__init__(work)
        self.bump_ca, self.origin_ca = bump_ca, origin_ca

    def folder(self) -> Path:
        d = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=self.work))
        os.chmod(d, 0o755)
        return d


class Squidpy(BumpingProxy):
    name = "squidpy"

    def start(self, mode: str) -> None:
        d = self.folder()
        port = f"http_port 127.0.0.1:{self.port}"
        if mode != "connect":
            port += f" ssl-bump tls-cert={self.bump_ca} generate-host-certificates=on dynamic_cert_mem_cache_size=4MB"
        conf = d / "squidpy.conf"
        conf.write_text(POLICY + f"""{port}
{RULES[mode]}tls_outgoing_options cafile={self.origin_ca}
sslcrtd_program internal -s {d}/ssl_db -M 4MB
access_log {d}/access.log squid
cache_log {d}/cache.log
pid_filename {d}/squidpy.pid
cache_mem 256 MB
maximum_object_size_in_memory 512 KB
""")
        self.proc = subprocess.Popen([sys.executable, "-m", "squidpy", "run", "-f", str(conf)], cwd=ROOT,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)


class Squid(BumpingProxy):
    name = "squid"
    binary = SQUID_OPENSSL

    def start(self, mode: str) -> None:
        d = self.folder()
        user = "proxy" if _user_exists("proxy") else "nobody"
        certgen = Path(self.binary).resolve().parent.parent / "lib" / "squid" / "security_file_certgen"
        port = f"http_port 127.0.0.1:{self.port}"
        if mode != "connect":
            port += f" ssl-bump tls-cert={self.bump_ca} generate-host-certificates=on dynamic_cert_mem_cache_size=4MB"
            subprocess.run([str(certgen), "-c", "-s", str(d / "ssl_db"), "-M", "4MB"], check=True,
                           capture_output=True, timeout=30)
        conf = d / "squid.conf"
        conf.write_text(POLICY + f"""{port}
{RULES[mode]}tls_outgoing_options cafile={self.origin_ca}
sslcrtd_program {certgen} -s {d}/ssl_db -M 4MB
cache_effective_user {user}
access_log {d}/access.log squid
cache_log {d}/cache.log
pid_filename {d}/squid.pid
coredump_dir {d}
cache_mem 256 MB
maximum_object_size_in_memory 512 KB
shutdown_lifetime 1 second
""")
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", user, str(d)], check=True)
        self.proc = subprocess.Popen([self.binary, "-f", str(conf), "-N"], stderr=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL)
        wait_port(self.port)


class Mitmproxy(BumpingProxy):
    """mitmdump: no cache; bodies over 1 MB streamed (stream_large_bodies), as the other two do."""
    name = "mitmproxy"
    caches = False
    binary = "mitmdump"

    def start(self, mode: str) -> None:
        d = self.folder()
        # mitmproxy reads its CA (certificate and key in one PEM) from confdir/mitmproxy-ca.pem
        shutil.copy(self.bump_ca, d / "mitmproxy-ca.pem")
        cmd = [self.binary, "-q", "--listen-host", "127.0.0.1", "-p", str(self.port),
               "--set", f"confdir={d}", "--set", f"ssl_verify_upstream_trusted_ca={self.origin_ca}",
               "--set", "stream_large_bodies=1m", "--set", "http2=false", "--set", "termlog_verbosity=error"]
        if mode in ("splice", "connect"):
            cmd += ["--ignore-hosts", ".*"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)


# ---------------------------------------------------------------- measurements

def curl_base(proxy: Proxy, ca: Path) -> list[str]:
    return ["curl", "-s", "--http1.1", "-x", proxy.url, "--cacert", str(ca)]


def curl_many(proxy: Proxy, ca: Path, urls: list[str], parallel: int = 50, close: bool = False) -> tuple[float, int]:
    """Transfers per second of ``urls`` fetched by one curl over ``parallel`` connections,
    kept alive unless ``close``; and how many did not answer 200."""
    cfg = proxy.work / "curl.cfg"
    cfg.write_text("".join(f'url = "{u}"\noutput = "/dev/null"\n' for u in urls))
    cmd = curl_base(proxy, ca) + ["-Z", "--parallel-immediate", "--parallel-max", str(parallel),
                                  "-w", "%{http_code}\\n", "-K", str(cfg)]
    if close:
        cmd += ["-H", "Connection: close"]
    started = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    elapsed = time.monotonic() - started
    codes = out.stdout.split()
    ok = codes.count("200")
    return ok / elapsed, len(urls) - ok


def curl_speed(proxy: Proxy, ca: Path, url: str) -> float:
    out = subprocess.run(curl_base(proxy, ca) + ["-o", "/dev/null", "-w", "%{speed_download} %{http_code}", url],
                         capture_output=True, text=True, timeout=1200)
    speed, code = out.stdout.split()
    if code != "200":
        raise RuntimeError(f"{proxy.name}: {url} answered {code}")
    return float(speed) / 1e6


def curl_time(proxy: Proxy, ca: Path, url: str) -> float:
    out = subprocess.run(curl_base(proxy, ca) + ["-o", "/dev/null", "-w", "%{time_total} %{http_code}", url],
                         capture_output=True, text=True, timeout=60)
    seconds, code = out.stdout.split()
    if code != "200":
        raise RuntimeError(f"{proxy.name}: {url} answered {code}")
    return float(seconds) * 1000


# ---------------------------------------------------------------- the run

PATHS = ["miss", "hit", "handshakes", "mint", "bumped100m", "splice1g", "connect1g"]


def run_path(path: str, proxy: BumpingProxy, origin: TlsOrigin, args, record) -> None:
    name, ca, n = proxy.name, args.bump_ca, args.requests
    if path == "hit" and not proxy.caches:
        return
    mode = {"splice1g": "splice", "connect1g": "connect"}.get(path, "bump")
    proxy.start(mode)
    try:
        if path == "miss":
            curl_many(proxy, ca, [origin.url(f"/n/1k.bin?w{i}") for i in range(500)])
            cpu = cpu_seconds(proxy.proc.pid)
            rps, bad = curl_many(proxy, ca, [origin.url(f"/n/1k.bin?{i}") for i in range(n)])
            record("bumped miss 1 KB, keep-alive, req/s", name, rps, bad)
            record("bumped miss, proxy CPU µs per request", name, (cpu_seconds(proxy.proc.pid) - cpu) * 1e6 / n)
            record("RSS MB after the miss run", name, rss_mb(proxy.proc.pid))
        elif path == "hit":
            curl_many(proxy, ca, [origin.url("/c/1k.bin")] * 500)
            cpu = cpu_seconds(proxy.proc.pid)
            rps, bad = curl_many(proxy, ca, [origin.url("/c/1k.bin")] * n)
            record("bumped hit 1 KB, keep-alive, req/s", name, rps, bad)
            record("bumped hit, proxy CPU µs per request", name, (cpu_seconds(proxy.proc.pid) - cpu) * 1e6 / n)
        elif path == "handshakes":
            curl_many(proxy, ca, [origin.url("/n/1k.bin?w")] * 100, close=True)
            cpu = cpu_seconds(proxy.proc.pid)
            rps, bad = curl_many(proxy, ca, [origin.url(f"/n/1k.bin?{i}") for i in range(n // 5)], close=True)
            record("new bumped connections/s (cert cached)", name, rps, bad)
            record("new connection, proxy CPU ms each", name, (cpu_seconds(proxy.proc.pid) - cpu) * 1000 / (n // 5))
        elif path == "mint":
            first, again = [], []
            for i in range(1, len(origin.ports)):
                first.append(curl_time(proxy, ca, origin.url("/n/1k.bin", i)))
                again.append(curl_time(proxy, ca, origin.url("/n/1k.bin", i)))
            record("first request to a new origin cert, ms", name, statistics.median(first))
            record("the same again (cert cached), ms", name, statistics.median(again))
        elif path in ("bumped100m", "splice1g", "connect1g"):
            size, what, trust = {"bumped100m": (200, "bumped", ca), "splice1g": (1024, "spliced", args.origin_ca),
                                 "connect1g": (1024, "plain CONNECT", args.origin_ca)}[path]
            label = f"{what} download {size // 1024} GB" if size >= 1024 else f"{what} download {size} MB"
            cpu = cpu_seconds(proxy.proc.pid)
            record(f"{label}, MB/s", name, curl_speed(proxy, trust, origin.make_big(size << 20)))
            record(f"{what} download, proxy CPU s per GB", name, (cpu_seconds(proxy.proc.pid) - cpu) * 1024 / size)
    finally:
        proxy.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=20000, help="requests per keep-alive run")
    ap.add_argument("--only", default=",".join(PATHS), help="comma-separated: " + ",".join(PATHS))
    ap.add_argument("--squid", default=SQUID_OPENSSL, help="a Squid built with OpenSSL")
    ap.add_argument("--mitmdump", default=shutil.which("mitmdump") or "", help="mitmproxy's mitmdump")
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (configurations, logs)")
    args = ap.parse_args()
    only = args.only.split(",")
    missing = [t for t in ("curl", "nginx") if not shutil.which(t)]
    if missing:
        sys.exit(f"the bump benchmark needs {', '.join(missing)} (apt-get install curl nginx-light)")
    work = Path(tempfile.mkdtemp(prefix="squidpy-bump-bench-"))
    os.chmod(work, 0o755)
    subprocess.run([sys.executable, "-m", "squidpy", "ca", "init", str(work / "ca")], cwd=ROOT, check=True,
                   capture_output=True)
    args.bump_ca = work / "ca" / "squidpy-ca.pem"
    args.origin_ca, pairs = make_origin_pki(work, 1 + MINT_PORTS)
    if os.geteuid() == 0:       # Squid reads its files as the proxy user
        shutil.chown(args.bump_ca, "proxy" if _user_exists("proxy") else "nobody")
    origin = TlsOrigin(work, pairs)
    origin.start()
    kinds = [Squidpy]
    if os.path.exists(args.squid):
        Squid.binary = args.squid
        kinds.append(Squid)
    else:
        print(f"{args.squid} is not there (Debian's squid-openssl): no Squid figures", file=sys.stderr)
    if args.mitmdump and os.path.exists(args.mitmdump):
        Mitmproxy.binary = args.mitmdump
        kinds.append(Mitmproxy)
    else:
        print("mitmdump is not there (pip install mitmproxy; --mitmdump PATH): no mitmproxy figures", file=sys.stderr)
    print(f"nginx origin on HTTPS port {origin.port}; rounds: {args.rounds}; {args.requests} requests a run, "
          f"50 connections; proxies: {', '.join(k.name for k in kinds)}")
    results: dict[str, dict[str, list]] = {}
    errors: dict[str, int] = {}

    def record(path, name, value, bad=0):
        results.setdefault(path, {}).setdefault(name, []).append(value)
        if bad:
            errors[f"{path} ({name})"] = errors.get(f"{path} ({name})", 0) + bad
        print(f"  {path:42} {name:10} {value:10.1f}" + (f"  ({bad} not 200)" if bad else ""), flush=True)

    try:
        for path in PATHS:
            if path not in only:
                continue
            for rnd in range(args.rounds):
                proxies = [k(work, args.bump_ca, args.origin_ca) for k in kinds]
                if rnd % 2:
                    proxies.reverse()
                for proxy in proxies:
                    run_path(path, proxy, origin, args, record)
    finally:
        origin.stop()
    report(results, [k.name for k in kinds], errors)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "errors": errors}, indent=1))
    if args.keep:
        print(f"configurations and logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def report(results: dict, names: list[str], errors: dict) -> None:
    print()
    header = f"{'path':42}" + "".join(f" {n:>10}" for n in names) + "".join(
        f" {n + '/squid':>16}" for n in names if n != "squid")
    print(header)
    print("-" * len(header))
    for path, by_name in results.items():
        med = {n: statistics.median(by_name[n]) for n in names if by_name.get(n)}
        line = f"{path:42}" + "".join(f" {med[n]:10.1f}" if n in med else f" {'-':>10}" for n in names)
        for n in names:
            if n != "squid":
                ratio = med[n] / med["squid"] if n in med and med.get("squid") else float("nan")
                line += f" {ratio:16.2f}"
        print(line)
    print("\nmedians of the rounds (for ms and RSS lower is better); load average "
          + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    for what, count in errors.items():
        print(f"not 200: {count} in {what}")


if __name__ == "__main__":
    main()
