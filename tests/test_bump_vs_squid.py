"""SslBump side by side with Squid 5.7 built with OpenSSL (Debian's squid-openssl, unpacked by
.ci/run): the same ssl_bump rules, the same curl requests through each proxy to the same TLS
origins (good, expired, wrong name, a denied host), and the same access log lines: result
code, status, method, URL and hierarchy, line for line (sizes and times differ by nature)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from squidpy.tls.ca import init_ca
from tests.dnsserver import DnsServer
from tests.proxyproc import ProxyProcess, wait_for
from tests.squidproc import SQUID_OPENSSL, SquidProcess, free_port

# about 37 s of wall-clock time: on a fresh checkout (no timings in pytest's cache) it starts first
pytestmark = pytest.mark.slow

CERTGEN = "/opt/squid-openssl/usr/lib/squid/security_file_certgen"
KINDS = ("good", "expired", "wrongname")
SQUID_HOSTS = {f"{k}.test": "127.0.0.1" for k in (*KINDS, "blocked")}     # Squid's hosts_file
POLICY = """
acl step1 at_step SslBump1
acl blocked dstdomain blocked.test
http_access deny blocked
http_access allow all
"""
RULES = {
    "peek-then-bump": "ssl_bump peek step1\nssl_bump bump all\n",
    "client-first": "ssl_bump bump all\n",
    "peek-then-splice": "ssl_bump peek step1\nssl_bump splice all\n",
    "peek-then-splice-at-step3": "ssl_bump peek step1\nssl_bump peek all\nssl_bump splice all\n",
    "peek-then-terminate": "ssl_bump peek step1\nssl_bump terminate all\n",
    "stare-then-bump": "ssl_bump stare step1\nssl_bump stare all\nssl_bump bump all\n",
    "terminate-at-step1": "ssl_bump terminate all\n",
}


@pytest.fixture(scope="module")
def shared(tls_origins):
    """A CA and the test root in a directory Squid's 'proxy' user can read."""
    assert os.path.exists(SQUID_OPENSSL), ".ci/run unpacks Debian's squid-openssl into /opt/squid-openssl"
    root = Path(tempfile.mkdtemp(prefix="bump-diff-"))
    os.chmod(root, 0o755)
    pem, crt = init_ca(str(root / "ca"), "Differential CA")
    os.chmod(root / "ca", 0o755)
    os.chmod(pem, 0o644)
    cafile = root / "test-root.pem"
    shutil.copy(tls_origins.cafile, cafile)
    os.chmod(cafile, 0o644)
    dns = DnsServer({f"{k}.test": ["127.0.0.1"] for k in (*KINDS, "blocked")}).start()
    yield root, pem, crt, cafile, dns
    dns.stop()
    shutil.rmtree(root, ignore_errors=True)


def bumping_squid(directory: Path, db: Path, pem, cafile, conf: str, **kwargs) -> SquidProcess:
    """Squid 5.7 (the OpenSSL build) bumping on a port of its own, minting with its
    certificate generator into a new database ``db``."""
    subprocess.run([CERTGEN, "-c", "-s", str(db), "-M", "4MB"], check=True, capture_output=True, timeout=30)
    subprocess.run(["chown", "-R", "proxy:proxy", str(db)], check=False)
    return SquidProcess(directory, f"""
http_port 127.0.0.1:{free_port()} ssl-bump tls-cert={pem}
sslcrtd_program {CERTGEN} -s {db} -M 4MB
tls_outgoing_options cafile={cafile}
{conf}""", binary=SQUID_OPENSSL, **kwargs)


def stopping(squid: SquidProcess) -> Future:
    """Stop Squid in a thread: it takes a second or more (Squid waits shutdown_lifetime + 1 s),
    in which squidpy's turn runs.  Its logs are read once the stop is over (``.result()``):
    every line it was to write is written by then, the last ones included."""
    pool = ThreadPoolExecutor(1)
    stopped = pool.submit(squid.stop)
    pool.shutdown(wait=False)
    return stopped


def bumping_squidpy(tmp_path: Path, pem, cafile, dns, conf: str) -> ProxyProcess:
    """squidpy bumping as bumping_squid's Squid does, its names from the test DNS server."""
    return ProxyProcess(tmp_path / "squidpy", f"""
http_port 127.0.0.1:0 ssl-bump tls-cert={pem}
sslcrtd_program internal -s {tmp_path / 'ssl_db'} -M 4MB
tls_outgoing_options cafile={cafile}
dns_nameservers 127.0.0.1:{dns.port}
{conf}""")


def fetch_all(proxy_url: str, crt: Path, tls_origins) -> None:
    for kind in (*KINDS, "blocked"):
        port = tls_origins.port(kind if kind in KINDS else "good")
        subprocess.run(["curl", "-s", "-o", "/dev/null", "-m", "10", "-x", proxy_url, "--cacert", str(crt),
                        f"https://{kind}.test:{port}/size/3"], capture_output=True, timeout=30)
        time.sleep(0.1)         # one connection after the other, in the logs too


def summary(lines: list[str]) -> list[tuple]:
    """(result/status, method, URL, hierarchy) of each line of Squid's native format."""
    out = []
    for line in lines:
        fields = line.split()
        hierarchy = fields[8].split("/")[0]
        code = fields[3]
        if code.startswith("TCP_TUNNEL/"):
            code = "TCP_TUNNEL"         # Squid 5.7 logs a spliced connection to a bad origin /500
        out.append((code, fields[5], fields[6], hierarchy))
    return out


@pytest.mark.parametrize("name", sorted(RULES))
def test_same_log_lines_as_squid(name, shared, tls_origins, tmp_path):
    root, pem, crt, cafile, dns = shared
    rules = RULES[name]
    squid = bumping_squid(root / f"squid-{name}", root / f"ssl_db-{name}", pem, cafile, POLICY + rules,
                          hosts=SQUID_HOSTS)
    try:
        fetch_all(squid.url, crt, tls_origins)
    finally:
        squid_stopped = stopping(squid)
    ours = bumping_squidpy(tmp_path, pem, cafile, dns, POLICY + rules)
    try:
        fetch_all(ours.url, crt, tls_origins)
        squid_stopped.result(30)
        expected = summary([line for line in squid.access_log.read_text().splitlines() if line])
        got = summary(ours.log_lines(count=len(expected), timeout=10))
    finally:
        ours.stop()
    if got != expected:
        pytest.fail("squidpy:\n" + "\n".join(got) + "\nSquid 5.7:\n" + "\n".join(expected), pytrace=False)


TLS_FORMAT = ("%ssl::bump_mode %ssl::>sni %\"ssl::<cert_subject %\"ssl::<cert_issuer %ssl::<cert_errors "
              "%ssl::>negotiated_version %ssl::<negotiated_version %ssl::>negotiated_cipher "
              "%ssl::>received_hello_version %ssl::>received_supported_version "
              "%ssl::<received_hello_version %ssl::<received_supported_version %rm %ru")
TLS_RULES = {
    "peek-then-bump": RULES["peek-then-bump"],
    "stare-then-bump": RULES["stare-then-bump"] + "sslproxy_cert_error allow all\n",
    "peek-then-splice": RULES["peek-then-splice"],
}


def lines_of(log: Path) -> list[str]:
    try:
        return [line for line in log.read_text().splitlines() if line]
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("name", sorted(TLS_RULES))
def test_same_tls_log_codes_as_squid(name, shared, tls_origins, tmp_path):
    """%ssl:: codes: the same values on the same lines as Squid's."""
    root, pem, crt, cafile, dns = shared
    rules = TLS_RULES[name] + f"logformat tls {TLS_FORMAT}\n"
    squid_dir = root / f"squid-tls-{name}"
    squid_dir.mkdir()
    os.chmod(squid_dir, 0o777)      # Squid, as 'proxy', writes the tls log there
    squid = bumping_squid(squid_dir, root / f"ssl_db-tls-{name}", pem, cafile,
                          f"{POLICY}{rules}access_log {squid_dir}/tls.log tls\n", hosts=SQUID_HOSTS)
    try:
        fetch_all(squid.url, crt, tls_origins)
    finally:
        squid_stopped = stopping(squid)
    # each line written as it is logged, as Squid's (buffered_logs off)
    ours = bumping_squidpy(tmp_path, pem, cafile, dns,
                           f"{POLICY}{rules}access_log {tmp_path}/tls.log buffer-size=1bytes tls\n")
    try:
        fetch_all(ours.url, crt, tls_origins)
        squid_stopped.result(30)
        expected = lines_of(squid_dir / "tls.log")
        wait_for(lambda: len(lines_of(tmp_path / "tls.log")) >= len(expected), timeout=10)
        got = lines_of(tmp_path / "tls.log")
    finally:
        ours.stop()
    if got != expected:
        pytest.fail("squidpy:\n" + "\n".join(got) + "\nSquid 5.7:\n" + "\n".join(expected), pytrace=False)


AUTH_POLICIES = {
    # the CONNECT is authenticated; the requests inside inherit its user, and their own
    # denial by an authentication ACL is a 403 (no challenge inside TLS)
    "connect-authenticated": """
acl users proxy_auth REQUIRED
acl alice proxy_auth alice
acl secret urlpath_regex ^/secret
acl step1 at_step SslBump1
http_access deny !users
http_access deny secret
http_access deny !alice
http_access allow all
""",
    # the CONNECT is let through unauthenticated: inside, authentication ACLs do not
    # match (Squid asks for no credentials there)
    "connect-not-authenticated": """
acl users proxy_auth REQUIRED
acl step1 at_step SslBump1
http_access allow CONNECT
http_access deny !users
http_access allow all
""",
}


def fetch_with_users(proxy_url: str, crt: Path, tls_origins) -> None:
    base = f"https://good.test:{tls_origins.port('good')}"
    for user, paths in ((None, ["/size/1"]), ("alice", ["/size/2", "/secret/3"]), ("bob", ["/size/4"])):
        args = ["-U", f"{user}:pw"] if user else []
        subprocess.run(["curl", "-s", "-o", "/dev/null", "-m", "10", "-x", proxy_url, "--cacert", str(crt), *args,
                        *[base + p for p in paths]], capture_output=True, timeout=30)
        time.sleep(0.1)


def summary_with_users(lines: list[str]) -> list[tuple]:
    """(result/status, method, URL path, user, hierarchy) of each line."""
    out = []
    for line in lines:
        fields = line.split()
        path = fields[6].split("/", 3)[3] if fields[5] != "CONNECT" else ""
        out.append((fields[3], fields[5], path, fields[7], fields[8].split("/")[0]))
    return out


@pytest.mark.parametrize("name", sorted(AUTH_POLICIES))
def test_authentication_inside_bumped_connections_as_squid(name, shared, tls_origins, tmp_path):
    """Squid 5.7 authenticates the CONNECT only; requests inside the connection it bumps
    are its user's, without a helper or a challenge (the same log lines, users included)."""
    root, pem, crt, cafile, dns = shared
    auth = "auth_param basic program /usr/lib/squid/basic_fake_auth\n"
    rules = AUTH_POLICIES[name] + "ssl_bump peek step1\nssl_bump bump all\n"
    squid = bumping_squid(root / f"squid-auth-{name}", root / f"ssl_db-auth-{name}", pem, cafile, auth + rules,
                          hosts={"good.test": "127.0.0.1"})
    try:
        fetch_with_users(squid.url, crt, tls_origins)
    finally:
        squid_stopped = stopping(squid)
    ours = bumping_squidpy(tmp_path, pem, cafile, dns, auth + rules)
    try:
        fetch_with_users(ours.url, crt, tls_origins)
        squid_stopped.result(30)
        expected = summary_with_users([line for line in squid.access_log.read_text().splitlines() if line])
        ours.log_lines(count=len(expected), timeout=10)
        got = summary_with_users([line for line in ours.access_log.read_text().splitlines() if line])
    finally:
        ours.stop()
    if got != expected:
        pytest.fail("squidpy:\n" + "\n".join(map(str, got)) + "\nSquid 5.7:\n" + "\n".join(map(str, expected)),
                    pytrace=False)


# ---------------------------------------------------------------- through a parent (never_direct)

PARENT_RULES = {
    "peek-then-bump": RULES["peek-then-bump"],
    "stare-then-bump": RULES["stare-then-bump"],
    "peek-then-splice": RULES["peek-then-splice"],
    "peek-then-splice-at-step3": RULES["peek-then-splice-at-step3"],
}
VIA = ("good", "refused", "expired")


@pytest.fixture(scope="module")
def squid_parent(shared, origin):
    """Squid 5.7 (Debian's) as the parent of both children: it tunnels CONNECTs, refuses
    refused.test (403) and serves a plain origin as plain.test (to see a child use it)."""
    from tests.squidproc import SQUID
    root = shared[0]
    parent = SquidProcess(root / "parent", """
visible_hostname squid-parent
acl refused dstdomain refused.test
http_access deny refused
http_access allow localhost
http_access deny all
""", hosts={f"{k}.test": "127.0.0.1" for k in (*VIA, "plain")}, binary=SQUID)
    yield parent, f"http://plain.test:{origin.port}"
    parent.stop()


def fetch_via(proxy_url: str, bundle: Path, tls_origins) -> None:
    for kind in VIA:
        port = tls_origins.port("expired" if kind == "expired" else "good")
        subprocess.run(["curl", "-s", "-o", "/dev/null", "-m", "10", "-x", proxy_url, "--cacert", str(bundle),
                        f"https://{kind}.test:{port}/size/3"], capture_output=True, timeout=30)
        time.sleep(0.1)


@pytest.mark.parametrize("name", sorted(PARENT_RULES))
def test_through_a_parent_the_same_log_lines_as_squid(name, shared, squid_parent, tls_origins, tmp_path):
    """never_direct and a parent (Squid 5.7, refusing refused.test): SslBump's connection to
    the server goes through it, and each child logs the same lines: the parent's
    hierarchy code on the CONNECT, the requests inside and the spliced tunnel;
    HIER_NONE and the parent's status when it refuses.  (Squid also logs a
    'error:transaction-end-before-headers' line after a refused splice at step 2; squidpy
    does not: only the lines of the test's own URLs are compared.)"""
    from tests.squidproc import wait_until_forwarding
    root, pem, crt, cafile, dns = shared
    parent, warm = squid_parent
    bundle = root / "bundle.pem"
    bundle.write_bytes(Path(crt).read_bytes() + Path(cafile).read_bytes())
    peering = f"cache_peer 127.0.0.1 parent {parent.port} 0 no-query no-digest\nnever_direct allow all\n"
    squid = bumping_squid(root / f"squid-via-{name}", root / f"ssl_db-via-{name}", pem, cafile,
                          peering + POLICY + PARENT_RULES[name])
    try:
        assert wait_until_forwarding(squid.port, f"{warm}/size/1?{name}")     # the parent probed alive
        fetch_via(squid.url, bundle, tls_origins)
    finally:
        squid_stopped = stopping(squid)
    ours = bumping_squidpy(tmp_path, pem, cafile, dns, peering + POLICY + PARENT_RULES[name])
    try:
        assert wait_until_forwarding(ours.port, f"{warm}/size/1?{name}-ours")
        fetch_via(ours.url, bundle, tls_origins)
        squid_stopped.result(30)
        expected = summary([line for line in squid.access_log.read_text().splitlines() if ".test:" in line
                            and "plain.test" not in line])
        ours.log_lines(count=len(expected) + 1, timeout=10)
        got = summary([line for line in ours.access_log.read_text().splitlines() if ".test:" in line
                       and "plain.test" not in line])
    finally:
        ours.stop()
    assert any("FIRSTUP_PARENT" in line for line in map(str, expected)), expected   # the parent was used
    if got != expected:
        pytest.fail("squidpy:\n" + "\n".join(map(str, got)) + "\nSquid 5.7:\n" + "\n".join(map(str, expected)),
                    pytrace=False)
