"""SslBump end to end: curl trusting squidpy's CA, through a live squidpy, to TLS origins on
loopback.  Bodies arrive intact, a second fetch is a cache hit, path rules deny inside TLS,
denied hosts show the deny page, spliced hosts keep their own certificate, ALPN says
http/1.1, and the faults a bumped port meets (origins with bad certificates, no SNI, no TLS,
TLS 1.0, truncated or stalled handshakes) are answered without disturbing anything."""

from __future__ import annotations

import re
import socket
import subprocess

import pytest
from OpenSSL import SSL

from squidpy.tls.ca import init_ca
from tests.dnsserver import DnsServer
from tests.tlsbytes import openssl_client_hello

# about 10 s of wall-clock time: on a fresh checkout (no timings in pytest's cache) it starts first
pytestmark = pytest.mark.slow

NAMES = ("good", "expired", "wrongname", "selfsigned", "blocked", "bank", "secret", "refused")


@pytest.fixture(scope="module")
def dns():
    server = DnsServer({f"{n}.test": ["127.0.0.1"] for n in NAMES}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    pem, crt = init_ca(str(tmp_path_factory.mktemp("bumpca")), "E2E Bump CA")
    return pem, crt


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory):
    """The certificate database of the module's shared bumping proxy (shared_proxy keys on
    the configuration's text, so its tests name one directory)."""
    return tmp_path_factory.mktemp("shared-bump")


def config(ca, dns, tls_origins, tmp_path, rules: str = "acl step1 at_step SslBump1\nssl_bump peek step1\n"
           "ssl_bump bump all\n", extra: str = "") -> str:
    pem, _ = ca
    return f"""
acl local src 127.0.0.0/8
acl blocked dstdomain blocked.test
acl secret urlpath_regex ^/secret
http_access deny blocked
http_access deny secret
http_access allow local
http_access deny all
http_port 127.0.0.1:0 ssl-bump tls-cert={pem}
sslcrtd_program internal -s {tmp_path / 'ssl_db'} -M 4MB
dns_nameservers 127.0.0.1:{dns.port}
tls_outgoing_options cafile={tls_origins.cafile}
{rules}{extra}"""


def curl(proxy, url: str, cafile, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-s", "-S", "-o", "-", "-w", "\n%{http_code}", "-m", "15", "-x", proxy.url,
                           "--cacert", str(cafile), *args, url], capture_output=True, timeout=30)


def url(tls_origins, name: str, path: str, kind: str | None = None) -> str:
    return f"https://{name}.test:{tls_origins.port(kind or (name if name in tls_origins.origins else 'good'))}{path}"


def test_bumped_get_is_intact_and_logged_as_https(make_proxy, ca, dns, tls_origins, tmp_path):
    proxy = make_proxy(config(ca, dns, tls_origins, tmp_path))
    target = url(tls_origins, "good", "/size/70000")
    r = curl(proxy, target, ca[1])
    body, _, status = r.stdout.rpartition(b"\n")
    assert status == b"200" and body == b"x" * 70000, r.stderr
    connect = proxy.log_line("CONNECT good.test")
    assert re.search(r" NONE_NONE/200 0 CONNECT good\.test:\d+ - HIER_DIRECT/127\.0\.0\.1 -$", connect), connect
    get = proxy.log_line(f"GET {target}")
    assert " TCP_MISS/200 " in get and " HIER_DIRECT/127.0.0.1 " in get


def test_second_fetch_is_a_cache_hit(shared_proxy, ca, dns, tls_origins, shared_db):
    proxy = shared_proxy(config(ca, dns, tls_origins, shared_db))
    target = url(tls_origins, "good", "/obj/bumped-hit?cc=max-age%3D300")
    first = curl(proxy, target, ca[1])
    second = curl(proxy, target, ca[1])
    assert first.stdout == second.stdout and first.stdout.endswith(b"200")
    assert tls_origins.origins["good"].count("/obj/bumped-hit?cc=max-age%3D300") == 1
    assert " TCP_MEM_HIT/200 " in proxy.log_line(f"GET {target}")


def test_path_rules_deny_inside_tls(shared_proxy, ca, dns, tls_origins, shared_db):
    proxy = shared_proxy(config(ca, dns, tls_origins, shared_db))
    target = url(tls_origins, "good", "/secret/plans")
    r = curl(proxy, target, ca[1])
    assert r.stdout.endswith(b"403") and b"ERR_ACCESS_DENIED" in r.stdout
    assert tls_origins.origins["good"].count("/secret/plans") == 0
    assert " TCP_DENIED/403 " in proxy.log_line(f"GET {target}")


def test_connections_encrypted_inside_a_bumped_connection(make_proxy, ca, dns, tls_origins, tmp_path, origin):
    """Squid's connections_encrypted: true for a request read inside TLS, false for plain HTTP."""
    extra = "acl enc connections_encrypted\nacl private urlpath_regex private\nhttp_access deny private !enc\n"
    text = config(ca, dns, tls_origins, tmp_path, extra=extra)
    proxy = make_proxy(extra + text.replace(extra, ""))        # the deny line before the allow lines
    inside = curl(proxy, url(tls_origins, "good", "/size/3?private"), ca[1])
    assert inside.stdout.endswith(b"200"), inside.stdout
    plain = curl(proxy, origin.url("/size/3?private"), ca[1])
    assert plain.stdout.endswith(b"403")


def test_a_denied_host_shows_the_deny_page_without_any_ssl_bump_line(make_proxy, ca, dns, tls_origins, tmp_path):
    """squidpy's one line: a CA on the port is enough to show the page of a denied CONNECT."""
    proxy = make_proxy(config(ca, dns, tls_origins, tmp_path, rules=""))
    target = url(tls_origins, "blocked", "/anything")
    r = curl(proxy, target, ca[1])
    assert r.stdout.endswith(b"403") and b"ERR_ACCESS_DENIED" in r.stdout and b"blocked.test" in r.stdout
    lines = proxy.log_lines(2)
    assert re.search(r" TCP_DENIED/200 0 CONNECT blocked\.test:\d+ - HIER_NONE/- -$", lines[0]), lines
    assert re.search(r" NONE_NONE/403 \d+ GET https://blocked\.test:\d+/anything - HIER_NONE/- text/html$",
                     lines[1]), lines
    # and without the CA's help, as Squid without ssl_bump lines: the browser's own error
    off = make_proxy(config(ca, dns, tls_origins, tmp_path, rules="", extra="bump_denied_connect off\n"))
    r = curl(off, target, ca[1])
    assert b"403" in r.stderr and r.returncode != 0


def test_deny_info_redirect_inside_tls(make_proxy, ca, dns, tls_origins, tmp_path):
    proxy = make_proxy(config(ca, dns, tls_origins, tmp_path, rules="",
                              extra="deny_info http://intranet.example/blocked?u=%u blocked\n"))
    r = curl(proxy, url(tls_origins, "blocked", "/x"), ca[1], "-D", "-")
    assert r.stdout.endswith(b"302") and b"Location: http://intranet.example/blocked?u=" in r.stdout


def test_spliced_hosts_keep_their_own_certificate(make_proxy, ca, dns, tls_origins, tmp_path):
    rules = ("acl step1 at_step SslBump1\nacl banks ssl::server_name good.test\n"
             "ssl_bump peek step1\nssl_bump splice banks\nssl_bump bump all\n")
    proxy = make_proxy(config(ca, dns, tls_origins, tmp_path, rules=rules))
    target = url(tls_origins, "good", "/size/4")
    with_ours = curl(proxy, target, ca[1])
    assert with_ours.returncode != 0                     # not our certificate: the origin's own
    with_origin_root = curl(proxy, target, tls_origins.cafile)
    assert with_origin_root.stdout.endswith(b"xxxx\n200")
    assert " TCP_TUNNEL/200 " in proxy.log_line("TCP_TUNNEL")


def test_alpn_http11_to_clients(shared_proxy, ca, dns, tls_origins, shared_db):
    proxy = shared_proxy(config(ca, dns, tls_origins, shared_db))
    r = curl(proxy, url(tls_origins, "good", "/size/2"), ca[1], "-v", "--http2")
    assert r.stdout.endswith(b"xx\n200")
    assert b"ALPN: server accepted http/1.1" in r.stderr or b"ALPN, server accepted to use http/1.1" in r.stderr


def test_origins_with_bad_certificates_answer_inside_tls(shared_proxy, ca, dns, tls_origins, shared_db):
    proxy = shared_proxy(config(ca, dns, tls_origins, shared_db))
    for kind, code in (("expired", b"X509_V_ERR_CERT_HAS_EXPIRED"), ("wrongname", b"SQUID_X509_V_ERR_DOMAIN_MISMATCH"),
                       ("selfsigned", b"X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT")):
        target = url(tls_origins, kind, "/echo?bumped-to-a-bad-origin")
        r = curl(proxy, target, ca[1])
        assert r.stdout.endswith(b"503") and code in r.stdout, (kind, r.stderr)
        assert tls_origins.origins[kind].count("/echo?bumped-to-a-bad-origin") == 0
        assert re.search(r" NONE_NONE/503 \d+ GET ", proxy.log_line(f"GET {target}"))


def test_no_sni(make_proxy, ca, dns, tls_origins, tmp_path):
    """curl sends no SNI to an address: the certificate is minted for the CONNECT address."""
    proxy = make_proxy(config(ca, dns, tls_origins, tmp_path, rules="ssl_bump bump all\n"))
    r = curl(proxy, f"https://127.0.0.1:{tls_origins.port('good')}/size/3", ca[1])
    assert r.stdout.endswith(b"xxx\n200"), r.stderr


def _connect(proxy, target: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = s.recv(4096)
        assert chunk, reply
        reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 ")
    return s


def _read_to_close(s: socket.socket) -> bytes | None:
    """What the proxy sends until it closes; None if it did not close within the socket's timeout."""
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    except socket.timeout:
        return None
    return data


def still_serves(proxy, ca, tls_origins) -> bool:
    return curl(proxy, url(tls_origins, "good", "/size/1"), ca[1]).stdout.endswith(b"x\n200")


def test_a_client_that_does_not_speak_tls(make_proxy, ca, dns, tls_origins, tmp_path):
    proxy = make_proxy(config(ca, dns, tls_origins, tmp_path))
    s = _connect(proxy, f"good.test:{tls_origins.port('good')}")
    s.sendall(b"GET / HTTP/1.1\r\nHost: good.test\r\n\r\n")
    assert _read_to_close(s) == b""
    s.close()
    assert re.search(r" NONE_NONE/200 0 CONNECT ", proxy.log_line("CONNECT good.test"))
    assert still_serves(proxy, ca, tls_origins)


def test_tls10_client(make_proxy, ca, dns, tls_origins, tmp_path):
    proxy = make_proxy(config(ca, dns, tls_origins, tmp_path))
    s = _connect(proxy, f"good.test:{tls_origins.port('good')}")
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_VERSION)
    ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    conn = SSL.Connection(ctx, s)
    conn.set_tlsext_host_name(b"good.test")
    conn.set_connect_state()
    with pytest.raises(SSL.Error):
        conn.do_handshake()
    s.close()
    assert still_serves(proxy, ca, tls_origins)
    assert proxy.log_line("CONNECT good.test")


def test_truncated_and_stalled_handshakes(make_proxy, ca, dns, tls_origins, tmp_path):
    proxy = make_proxy(config(ca, dns, tls_origins, tmp_path, extra="request_timeout 1 second\n"))
    target = f"good.test:{tls_origins.port('good')}"
    hello = openssl_client_hello("good.test")
    s = _connect(proxy, target)              # half a hello, then the client goes away
    s.sendall(hello[:60])
    s.close()
    s = _connect(proxy, target)              # half a hello, then nothing: closed after request_timeout
    s.sendall(hello[:60])
    assert _read_to_close(s) == b""          # (the socket's own timeout is 10 seconds)
    s.close()
    assert still_serves(proxy, ca, tls_origins)
    assert len([line for line in proxy.log_lines(3) if "CONNECT good.test" in line]) >= 2


def test_a_client_that_refuses_our_certificate(make_proxy, ca, dns, tls_origins, tmp_path):
    proxy = make_proxy(config(ca, dns, tls_origins, tmp_path))
    r = curl(proxy, url(tls_origins, "good", "/size/1"), tls_origins.cafile)      # it does not trust our CA
    assert r.returncode != 0
    assert re.search(r" NONE_NONE/200 0 CONNECT good\.test", proxy.log_line("CONNECT good.test"))
    assert still_serves(proxy, ca, tls_origins)


REWRITER = """#!/usr/bin/env python3
import sys
for line in sys.stdin:
    channel, url = line.split()[:2]
    with open(sys.argv[1], "a") as seen:
        seen.write(url + "\\n")
    if "/old/" in url:
        print(channel, "OK rewrite-url=" + url.replace("/old/", "/obj/"), flush=True)
    elif "/moved/" in url:
        print(channel, "OK status=302 url=" + url.replace("/moved/", "/obj/"), flush=True)
    else:
        print(channel, "ERR", flush=True)
"""


def test_rewriter_header_rules_and_delay_pools_inside_tls(make_proxy, ca, dns, tls_origins, tmp_path):
    """The rest of the configuration applies to bumped requests: the URL rewriter sees the
    CONNECT and then each https:// URL (a rewrite and a 302 work inside TLS), header rules
    rewrite the request sent to the origin, and a delay pool counts the bumped body."""
    script, seen = tmp_path / "rewriter.py", tmp_path / "seen.txt"
    script.write_text(REWRITER)
    script.chmod(0o755)
    proxy = make_proxy(config(ca, dns, tls_origins, tmp_path, extra=f"""
url_rewrite_program {script} {seen}
url_rewrite_children 1 startup=1 concurrency=5
request_header_access X-Secret deny all
request_header_add X-Added inside all
delay_pools 1
delay_class 1 1
delay_parameters 1 100000000/100000000
delay_access 1 allow all
"""))
    rewritten = curl(proxy, url(tls_origins, "good", "/old/rewritten?size=70000"), ca[1])
    body, _, status = rewritten.stdout.rpartition(b"\n")
    assert status == b"200" and body.startswith(b"rewritten served 1"), rewritten.stderr
    moved = curl(proxy, url(tls_origins, "good", "/moved/x"), ca[1], "-D", "-")
    assert moved.stdout.endswith(b"302") and b"Location: https://good.test:" in moved.stdout
    lines = seen.read_text().splitlines()
    port = tls_origins.port("good")
    assert lines[:2] == [f"good.test:{port}", f"https://good.test:{port}/old/rewritten?size=70000"], lines

    echo = curl(proxy, url(tls_origins, "good", "/echo"), ca[1], "-H", "X-Secret: s", "-H", "X-Kept: k")
    import json
    headers = dict(json.loads(echo.stdout.rpartition(b"\n")[0])["headers"])
    assert "X-Secret" not in headers and headers["X-Kept"] == "k" and headers["X-Added"] == "inside"

    with __import__("urllib.request").request.urlopen(f"{proxy.url}/metrics", timeout=10) as reply:
        metrics = reply.read().decode()
    delivered = float(re.search(r'^squidpy_delay_pool_bytes_total\{pool="1"\} (\S+)$', metrics, re.M).group(1))
    assert delivered >= 70000                # the bumped reply went through the pool


def test_the_connects_connection_annotations_reach_the_requests_inside(make_proxy, ca, dns, tls_origins, tmp_path):
    """annotate_client annotates the connection (Squid's ConnStateData notes): the requests
    inside the TLS it bumped start with those annotations, as every request on it does."""
    pem, _ = ca
    proxy = make_proxy(f"""
acl local src 127.0.0.0/8
acl marker annotate_client mark=yes
acl marked note mark yes
acl inside url_regex ^https://
acl step1 at_step SslBump1
http_access deny inside marked
http_access allow local marker
http_access deny all
http_port 127.0.0.1:0 ssl-bump tls-cert={pem}
sslcrtd_program internal -s {tmp_path / 'ssl_db'} -M 4MB
dns_nameservers 127.0.0.1:{dns.port}
tls_outgoing_options cafile={tls_origins.cafile}
ssl_bump peek step1
ssl_bump bump all
""")
    r = curl(proxy, url(tls_origins, "good", "/size/10"), ca[1])
    assert r.stdout.endswith(b"403"), r.stdout[-200:]
    assert " TCP_DENIED/403 " in proxy.log_line("GET https://good.test")


def test_bumped_requests_reach_a_parent_only_through_a_connect_tunnel(make_proxy, ca, dns, tls_origins, tmp_path):
    """With a parent and never_direct, a decrypted request never crosses to the parent in
    clear: as in Squid 5.7, the parent sees a CONNECT and TLS with the origin runs inside it;
    a parent that refuses the CONNECT gives the client its status (403) inside TLS, logged
    TCP_MISS/403 HIER_NONE as Squid logs it (bumped at step 1: client-first)."""
    parent = refusing_parent(make_proxy, dns, "expired.test")
    proxy = make_proxy(config(ca, dns, tls_origins, tmp_path, rules="ssl_bump bump all\n", extra=f"""
cache_peer 127.0.0.1 parent {parent.port} 0 no-query no-digest
never_direct allow all
"""))
    r = curl(proxy, url(tls_origins, "good", "/size/70000"), ca[1])
    body, _, status = r.stdout.rpartition(b"\n")
    assert status == b"200" and body == b"x" * 70000, r.stderr
    assert " FIRSTUP_PARENT/127.0.0.1 " in proxy.log_line("GET https://good.test")
    port = tls_origins.port("good")
    refused = curl(proxy, f"https://expired.test:{port}/", ca[1])
    assert refused.stdout.endswith(b"\n403") and b"ERR_CONNECT_FAIL" in refused.stdout, refused.stdout[-300:]
    assert re.search(r" TCP_MISS/403 \d+ GET https://expired\.test:\d+/ - HIER_NONE/- ",
                     proxy.log_line("GET https://expired.test")), proxy.log_line("GET https://expired.test")
    proxy.stop()                                        # the parent logs tunnels when they close
    assert parent.log_line(f"CONNECT good.test:{port}") is not None
    assert " TCP_DENIED/403 " in parent.log_line(f"CONNECT expired.test:{port}")
    assert "GET" not in parent.access_log.read_text()  # nothing decrypted reached the parent


def test_an_https_url_sent_in_clear_goes_to_a_parent_as_it_is(make_proxy, ca, dns, tls_origins, tmp_path):
    """A client that sends 'GET https://...' itself (no CONNECT): to a parent the request
    goes as it is, the parent making the TLS connection (Squid's FwdState: "If a peer is
    used the request is forwarded as is"), never TLS with the parent under the origin's name."""
    parent = make_proxy(f"""
acl local src 127.0.0.0/8
http_access allow local
http_access deny all
http_port 127.0.0.1:0
visible_hostname parent.test
dns_nameservers 127.0.0.1:{dns.port}
tls_outgoing_options cafile={tls_origins.cafile}
""", name="parent")
    proxy = make_proxy(config(ca, dns, tls_origins, tmp_path, extra=f"""
cache_peer 127.0.0.1 parent {parent.port} 0 no-query no-digest
never_direct allow all
"""))
    target = url(tls_origins, "good", "/size/3000")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=15) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: good.test\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"x" * 3000), reply[:300]
    assert " FIRSTUP_PARENT/127.0.0.1 " in proxy.log_line(f"GET {target}")
    assert " TCP_MISS/200 " in parent.log_line(f"GET {target}")


# ---------------------------------------------------------------- peeking and staring through a parent

STEP2_RULES = {
    "peek-then-bump": "acl step1 at_step SslBump1\nssl_bump peek step1\nssl_bump bump all\n",
    "stare-then-bump": "acl step1 at_step SslBump1\nssl_bump stare step1\nssl_bump stare all\nssl_bump bump all\n",
    "peek-then-splice-at-step3": "acl step1 at_step SslBump1\nssl_bump peek step1\nssl_bump peek all\n"
                                 "ssl_bump splice all\n",
}


def refusing_parent(make_proxy, dns, refused: str = "refused.test"):
    """A squidpy parent that tunnels CONNECTs, but refuses those to ``refused``."""
    return make_proxy(f"""
acl local src 127.0.0.0/8
acl refused dstdomain {refused}
http_access deny refused
http_access allow local
http_access deny all
http_port 127.0.0.1:0
visible_hostname parent.test
dns_nameservers 127.0.0.1:{dns.port}
""", name="parent")


@pytest.mark.parametrize("name", sorted(STEP2_RULES))
def test_peeking_and_staring_reach_the_origin_through_the_parent(name, make_proxy, ca, dns, tls_origins, tmp_path):
    """never_direct: SslBump's own connection at step 2 goes to the parent as a CONNECT and
    the TLS (or the peek) runs in its tunnel, as in Squid 5.7; the first request inside
    reuses that tunnel (Squid pins it); the log names the parent (FIRSTUP_PARENT/127.0.0.1)
    on the CONNECT and request lines, or on the one TCP_TUNNEL line of a splice."""
    parent = refusing_parent(make_proxy, dns)
    bundle = tmp_path / "cas.pem"
    bundle.write_bytes(ca[1].read_bytes() if hasattr(ca[1], "read_bytes") else open(ca[1], "rb").read())
    with open(bundle, "ab") as f, open(tls_origins.cafile, "rb") as root:
        f.write(root.read())        # a spliced connection shows the origin's own certificate
    proxy = make_proxy(config(ca, dns, tls_origins, tmp_path, rules=STEP2_RULES[name], extra=f"""
cache_peer 127.0.0.1 parent {parent.port} 0 no-query no-digest
never_direct allow all
"""))
    path = f"/size/{4000 + len(name)}?{name}"
    target = url(tls_origins, "good", path)
    r = curl(proxy, target, bundle)
    body, _, status = r.stdout.rpartition(b"\n")
    assert status == b"200" and body == b"x" * (4000 + len(name)), r.stderr
    assert tls_origins.origins["good"].count(path) == 1
    port = tls_origins.port("good")
    if name.endswith("splice-at-step3"):
        line = proxy.log_line(f"CONNECT good.test:{port}")
        assert re.search(r" TCP_TUNNEL/200 \d+ CONNECT good\.test:\d+ - FIRSTUP_PARENT/127\.0\.0\.1 -$", line), line
        assert "NONE_NONE" not in proxy.access_log.read_text()      # one line, as Squid 5.7 logs it
    else:
        connect = proxy.log_line(f"CONNECT good.test:{port}")
        assert re.search(r" NONE_NONE/200 0 CONNECT good\.test:\d+ - FIRSTUP_PARENT/127\.0\.0\.1 -$", connect), connect
        get = proxy.log_line(f"GET {target}")
        assert " TCP_MISS/200 " in get and " FIRSTUP_PARENT/127.0.0.1 " in get, get
    refused = curl(proxy, url(tls_origins, "refused", "/size/5"), bundle)
    assert refused.stdout.endswith(b"\n403") and b"ERR_CONNECT_FAIL" in refused.stdout, refused.stdout[-300:]
    line = proxy.log_line("GET https://refused.test")
    assert re.search(r" NONE_NONE/403 \d+ GET https://refused\.test:\d+/size/5 - HIER_NONE/- ", line), line
    proxy.stop()                                        # the parent logs tunnels when they close
    tunnels = [line for line in parent.access_log.read_text().splitlines() if f"CONNECT good.test:{port}" in line]
    assert len(tunnels) == 1 and " TCP_TUNNEL/200 " in tunnels[0], tunnels    # one tunnel: the request reused it
    assert " TCP_DENIED/403 " in parent.log_line(f"CONNECT refused.test:{port}")
    assert "GET" not in parent.access_log.read_text()  # nothing decrypted reached the parent


@pytest.mark.parametrize("name", ["peek-then-bump", "peek-then-splice-at-step3"])
def test_a_dead_parent_under_never_direct_answers_inside_tls_as_squid_does(name, make_proxy, ca, dns, tls_origins,
                                                                          tmp_path):
    """The parent does not answer: no candidate is left (never_direct), and Squid 5.7 bumps
    the client to answer its first request 502 ERR_READ_ERROR, logged NONE_NONE HIER_NONE."""
    from tests.squidproc import free_port
    proxy = make_proxy(config(ca, dns, tls_origins, tmp_path, rules=STEP2_RULES[name], extra=f"""
cache_peer 127.0.0.1 parent {free_port()} 0 no-query no-digest connect-fail-limit=1
never_direct allow all
"""))
    before = tls_origins.origins["good"].count("/size/5")     # the origins are the session's: others ask them too
    for attempt in range(2):     # the first finds the parent dead (or is the connect that fails), the second too
        r = curl(proxy, url(tls_origins, "good", f"/size/5?dead{attempt}"), ca[1])
        assert r.stdout[-4:] in (b"\n502", b"\n503"), r.stdout[-300:]
    assert b"ERR_READ_ERROR" in r.stdout and r.stdout.endswith(b"\n502")
    line = proxy.log_line("GET https://good.test", count=2)
    assert re.search(r" NONE_NONE/502 \d+ GET https://good\.test:\d+/size/5\?dead1 - HIER_NONE/- ", line), line
    assert tls_origins.origins["good"].count("/size/5") == before
