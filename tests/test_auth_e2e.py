"""Proxy authentication, external ACLs and URL rewriters end to end (issue 13):
the real squidpy on loopback, curl, and the real helpers and servers — Squid's
basic_ncsa_auth with htpasswd files, basic_ldap_auth and squidpy's LDAP helper
against slapd, ext_ldap_group_acl, negotiate_kerberos_auth with a test KDC and
curl --proxy-negotiate, ntlm_fake_auth and curl --proxy-ntlm, digest_file_auth,
squidGuard, storeid_file_rewrite."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import kdc as kdcmod
from tests import ldapserver
from tests.test_rewriters import squidguard_config

BIN = os.path.dirname(sys.executable)
HTPASSWD_HELPER = os.path.join(BIN, "squidpy-basic-htpasswd")
LDAP_HELPER = os.path.join(BIN, "squidpy-basic-ldap")
SQUID_HELPERS = Path("/usr/lib/squid")

REQUIRE = """
acl users proxy_auth REQUIRED
http_access allow users
http_access deny all
"""


class Answer:
    def __init__(self, status: int, connects: int, heads: list[dict], body: bytes):
        self.status, self.connects, self.heads, self.body = status, connects, heads, body

    @property
    def headers(self) -> dict:
        """The last reply's header fields (lower-case names)."""
        return self.heads[-1] if self.heads else {}

    def json(self) -> dict:
        return json.loads(self.body)


def curl(proxy, url: str, *args: str, env: dict | None = None, proxy_url: str | None = None) -> Answer:
    """One curl run through ``proxy``: the final status, how many connections it opened,
    each reply's header fields and the final body."""
    out_dir = proxy.dir / "curl"
    out_dir.mkdir(exist_ok=True)
    heads, body = out_dir / "heads", out_dir / "body"
    run = subprocess.run(["curl", "-s", "--max-time", "20", "-x", proxy_url or proxy.url, "-D", str(heads),
                          "-o", str(body), "-w", "%{http_code} %{http_connect} %{num_connects}", *args, url],
                         capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})
    status, connect_status, connects = (int(v) for v in run.stdout.split())
    status = status or connect_status           # a refused CONNECT: its own reply's status
    blocks = []
    for block in heads.read_bytes().decode("latin-1").split("\r\n\r\n"):
        fields = {}
        for line in block.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            fields.setdefault(name.strip().lower(), value.strip())
        if block.strip():
            blocks.append(fields)
    return Answer(status, connects, blocks, body.read_bytes() if body.exists() else b"")


def log_fields(proxy, needle: str, status: str = "") -> list[str]:
    """The last access.log line naming ``needle`` (with ``status``, e.g. "/200 ", when the
    request's earlier lines, such as a handshake's 407s, may be written first)."""
    from tests.proxyproc import wait_for

    def find():
        text = proxy.access_log.read_text() if proxy.access_log.exists() else ""
        hits = [line for line in text.splitlines() if needle in line and status in line]
        return hits[-1] if hits else None
    line = wait_for(find, 5)
    assert line, f"no access.log line with {needle!r}"
    return line.split()


def forwarded_names(answer: Answer) -> set[str]:
    return {name.lower() for name, _ in answer.json()["headers"]}


@pytest.fixture
def passwords(tmp_path):
    tool = shutil.which("htpasswd")
    assert tool, "htpasswd (apache2-utils) is missing: .ci/run installs it"
    path = tmp_path / "passwd"
    subprocess.run([tool, "-cbB", str(path), "alice", "wonder land"], check=True, capture_output=True)
    subprocess.run([tool, "-bm", str(path), "bob", "apr1 pw"], check=True, capture_output=True)
    return path


# ---------------------------------------------------------------- Basic with htpasswd files
@pytest.mark.parametrize("helper", ["basic_ncsa_auth", "squidpy-basic-htpasswd"])
def test_basic_with_an_htpasswd_file(make_proxy, origin, passwords, helper):
    program = SQUID_HELPERS / helper if helper.startswith("basic_") else HTPASSWD_HELPER
    proxy = make_proxy(f"auth_param basic program {program} {passwords}\nauth_param basic children 3 startup=1\n"
                       "auth_param basic realm Staff proxy\n" + REQUIRE)
    url = origin.url("/echo")
    none = curl(proxy, url)
    assert none.status == 407 and none.headers["proxy-authenticate"] == 'Basic realm="Staff proxy"'
    assert none.headers["x-squid-error"] == "ERR_CACHE_ACCESS_DENIED 0"
    ok = curl(proxy, url, "-U", "alice:wonder land")
    assert ok.status == 200 and "proxy-authorization" not in forwarded_names(ok)
    assert log_fields(proxy, "TCP_MISS/200")[7] == "alice"
    apr1 = curl(proxy, origin.url("/echo?bob"), "-U", "Bob:apr1 pw")
    assert apr1.status == 200 and log_fields(proxy, "/echo?bob", "/200 ")[7] == "bob"     # casesensitive off
    wrong = curl(proxy, origin.url("/echo?wrong"), "-U", "alice:guess")
    assert wrong.status == 407
    assert log_fields(proxy, "/echo?wrong")[3:4] == ["TCP_DENIED/407"]
    # a browser's dance: no credentials, 407, the same connection again with them
    dance = curl(proxy, origin.url("/echo?dance"), "--proxy-anyauth", "-U", "alice:wonder land")
    assert dance.status == 200 and dance.connects == 1 and [h.get("proxy-authenticate") for h in dance.heads][0]


def test_connect_is_authenticated_like_get(make_proxy, origin, passwords):
    proxy = make_proxy(f"auth_param basic program {SQUID_HELPERS}/basic_ncsa_auth {passwords}\n" + REQUIRE)
    refused = curl(proxy, origin.url("/echo"), "-p")
    assert refused.status == 407
    assert log_fields(proxy, "CONNECT")[3] == "TCP_DENIED/407"
    tunnelled = curl(proxy, origin.url("/echo?t"), "-p", "-U", "alice:wonder land")
    assert tunnelled.status == 200
    assert "proxy-authorization" not in forwarded_names(tunnelled)
    assert curl(proxy, origin.url("/echo?t2"), "-p", "--proxy-anyauth", "-U", "alice:wonder land").status == 200


def test_a_known_user_costs_no_helper_round_trip(make_proxy, origin, tmp_path):
    counter = tmp_path / "asked"
    helper = tmp_path / "counting_helper.py"
    helper.write_text("import sys\nfor line in sys.stdin:\n"
                      f"    open({str(counter)!r}, 'a').write('x')\n"
                      "    print('OK' if line.split()[1] == 'pw' else 'ERR', flush=True)\n")
    helper.chmod(0o755)
    proxy = make_proxy(f"auth_param basic program {sys.executable} {helper}\n" + REQUIRE)
    for n in range(5):
        assert curl(proxy, origin.url(f"/echo?{n}"), "-U", "alice:pw").status == 200
    assert counter.read_text() == "x"


# ---------------------------------------------------------------- LDAP and groups
@pytest.fixture
def slapd(tmp_path_factory):
    assert ldapserver.available(), "slapd (Debian package slapd) is missing: .ci/run installs it"
    server = ldapserver.LdapServer(str(tmp_path_factory.mktemp("slapd"))).start()
    yield server
    server.stop()


@pytest.mark.parametrize("helper", ["basic_ldap_auth", "squidpy-basic-ldap"])
def test_ldap_login_and_the_server_going_down(make_proxy, origin, slapd, helper):
    if helper == "basic_ldap_auth":
        program = f"{SQUID_HELPERS}/basic_ldap_auth -b {ldapserver.PEOPLE} -f uid=%s -H {slapd.uri} -v 3"
    else:
        program = f"{LDAP_HELPER} --uri {slapd.uri} --base {ldapserver.PEOPLE} --timeout 2"
    proxy = make_proxy(f"auth_param basic program {program}\nauth_param basic credentialsttl 1 hour\n" + REQUIRE)
    assert curl(proxy, origin.url("/echo?a"), "-U", "alice:alice pw").status == 200
    assert curl(proxy, origin.url("/echo?b"), "-U", "bob:wrong").status == 407
    slapd.stop()
    # known users keep working from the authentication cache for credentialsttl ...
    assert curl(proxy, origin.url("/echo?c"), "-U", "alice:alice pw").status == 200
    # ... nobody else gets in, and the page says so
    down = curl(proxy, origin.url("/echo?d"), "-U", "carol:c@rol")
    assert down.status == 407 and b"ERR_CACHE_ACCESS_DENIED" in down.body
    assert "Traceback" not in proxy.read_cache_log()


@pytest.mark.parametrize("helper", ["ext_ldap_group_acl", "squidpy-ext-ldap-group"])
def test_group_rules_through_an_external_acl(make_proxy, origin, slapd, passwords, helper, tmp_path):
    if helper == "ext_ldap_group_acl":
        program = (f"{SQUID_HELPERS}/ext_ldap_group_acl -b {ldapserver.GROUPS} -f (&(cn=%g)(member=%u)) "
                   f"-B {ldapserver.PEOPLE} -F uid=%s -H {slapd.uri} -v 3")
    else:
        program = (f"{os.path.join(BIN, 'squidpy-ext-ldap-group')} --uri {slapd.uri} --base {ldapserver.GROUPS} "
                   f"--user-base {ldapserver.PEOPLE}")
    auth = f"auth_param basic program {LDAP_HELPER} --uri {slapd.uri} --base {ldapserver.PEOPLE}\n"
    proxy = make_proxy(auth + f"external_acl_type ldap_group ttl=60 %LOGIN {program}\n"
                       "acl admins external ldap_group admins\nacl staff external ldap_group staff\n"
                       "acl users proxy_auth REQUIRED\n"
                       "http_access deny !users\nhttp_access allow admins\nhttp_access allow staff\n"
                       "http_access deny all\n")
    assert curl(proxy, origin.url("/echo?alice"), "-U", "alice:alice pw").status == 200
    assert curl(proxy, origin.url("/echo?bob"), "-U", "bob:b0b!").status == 200
    carol = curl(proxy, origin.url("/echo?carol"), "-U", "carol:c@rol")
    assert carol.status == 403                      # not in a group: 'deny all' decides
    assert log_fields(proxy, "/echo?carol")[3:4] == ["TCP_DENIED/403"]
    assert curl(proxy, origin.url("/echo?anon")).status == 407


# ---------------------------------------------------------------- Kerberos, NTLM, Digest
@pytest.fixture(scope="module")
def kdc(tmp_path_factory):
    assert os.path.exists("/usr/sbin/krb5kdc"), "krb5-kdc is missing: .ci/run installs it"
    server = kdcmod.Kdc(str(tmp_path_factory.mktemp("kdc"))).start()
    yield server
    server.stop()


def test_kerberos_single_sign_on_with_curl_negotiate(make_proxy, origin, kdc):
    proxy = make_proxy(f"auth_param negotiate program {SQUID_HELPERS}/negotiate_kerberos_auth "
                       f"-s HTTP/{kdcmod.SERVICE_HOST}@{kdcmod.REALM}\nauth_param negotiate children 3\n" + REQUIRE,
                       env=kdc.env)
    named = f"http://{kdcmod.SERVICE_HOST}:{proxy.port}"
    resolve = ["--resolve", f"{kdcmod.SERVICE_HOST}:{proxy.port}:127.0.0.1"]
    # no ticket at all: the client cannot answer the challenge
    subprocess.run(["kdestroy"], env={**os.environ, **kdc.env}, capture_output=True)
    none = curl(proxy, origin.url("/echo?none"), "--proxy-negotiate", "-U", ":", *resolve, proxy_url=named,
                env=kdc.env)
    assert none.status == 407 and none.headers["proxy-authenticate"] == "Negotiate"
    assert kdc.kinit().returncode == 0
    ok = curl(proxy, origin.url("/echo?sso"), "--proxy-negotiate", "-U", ":", *resolve, proxy_url=named,
              env=kdc.env)
    assert ok.status == 200 and ok.connects == 1
    assert "proxy-authorization" not in forwarded_names(ok)
    assert log_fields(proxy, "/echo?sso", "/200 ")[7] == f"{kdcmod.USER}@{kdcmod.REALM}"
    from tests.conftest import raw_request
    forged = raw_request(proxy.port, b"GET " + origin.url("/echo?forged").encode() + b" HTTP/1.1\r\n"
                         b"Proxy-Authorization: Negotiate YIIBogusTokenAAAA\r\nConnection: close\r\n\r\n")
    assert forged.startswith(b"HTTP/1.1 407 ")
    assert origin.count("/echo?forged") == 0


def negotiate_proxy(make_proxy, kdc, program: str, env: dict | None = None):
    """A proxy requiring Negotiate through ``program`` (negotiate_kerberos_auth, maybe behind
    faketime); returns it and curl's arguments to reach it by the service's name."""
    proxy = make_proxy(f"auth_param negotiate program {program} -s HTTP/{kdcmod.SERVICE_HOST}@{kdcmod.REALM}\n"
                       "auth_param negotiate children 2\n" + REQUIRE, env={**kdc.env, **(env or {})})
    return proxy, ["--proxy-negotiate", "-U", ":", "--resolve", f"{kdcmod.SERVICE_HOST}:{proxy.port}:127.0.0.1"]


def refused_ticket(proxy, origin, kdc, args: list[str], path: str, why: str) -> None:
    """curl's ticket is refused: 407, the denial logged, Squid's cache_log line naming the
    helper's reason, nothing sent upstream."""
    from tests.proxyproc import wait_for
    named = f"http://{kdcmod.SERVICE_HOST}:{proxy.port}"
    answer = curl(proxy, origin.url(path), *args, proxy_url=named, env=kdc.env)
    assert answer.status == 407 and answer.headers["proxy-authenticate"] == "Negotiate"
    assert log_fields(proxy, path)[3] == "TCP_DENIED/407"
    line = wait_for(lambda: next((ln for ln in proxy.read_cache_log().splitlines()
                                  if "ERROR: Negotiate Authentication validating user. Result: {result=BH" in ln), None), 5)
    assert line and why in line, proxy.read_cache_log()[-2000:]
    assert origin.count(path) == 0


def test_a_ticket_made_with_the_services_old_key_gets_407(make_proxy, origin, kdc, tmp_path):
    """The service was re-keyed (a new keytab) after the client got its ticket: the helper
    cannot decrypt it.  A ticket issued after the re-key gets in through the same proxy."""
    kdc.kdestroy()
    assert kdc.kinit().returncode == 0
    kdc.service_ticket()
    keytab = tmp_path / "rekeyed.keytab"
    kdc.rekey(str(keytab))
    proxy, args = negotiate_proxy(make_proxy, kdc, f"{SQUID_HELPERS}/negotiate_kerberos_auth",
                                  env={"KRB5_KTNAME": f"FILE:{keytab}"})
    refused_ticket(proxy, origin, kdc, args, "/echo?old-key", "Cannot find key for")
    kdc.kdestroy()
    assert kdc.kinit().returncode == 0
    named = f"http://{kdcmod.SERVICE_HOST}:{proxy.port}"
    ok = curl(proxy, origin.url("/echo?new-key"), *args, proxy_url=named, env=kdc.env)
    assert ok.status == 200 and origin.count("/echo?new-key") == 1
    kdc.kdestroy()


def test_an_expired_ticket_gets_407(make_proxy, origin, kdc):
    """The helper runs two days ahead (libfaketime), past the ticket's end (24 hours): MIT
    refuses it as expired, without the test waiting for it."""
    faketime = shutil.which("faketime")
    assert faketime, "faketime is missing: .ci/run installs it"
    kdc.kdestroy()
    assert kdc.kinit().returncode == 0
    proxy, args = negotiate_proxy(make_proxy, kdc, f"{faketime} -f +2d {SQUID_HELPERS}/negotiate_kerberos_auth")
    refused_ticket(proxy, origin, kdc, args, "/echo?expired", "Ticket expired")
    kdc.kdestroy()


def test_ntlm_handshake_with_ntlm_fake_auth(make_proxy, origin):
    proxy = make_proxy(f"auth_param ntlm program {SQUID_HELPERS}/ntlm_fake_auth\nauth_param ntlm children 2\n"
                       + REQUIRE)
    ok = curl(proxy, origin.url("/echo?ntlm"), "--proxy-ntlm", "-U", "EXAMPLE\\dave:anything")
    assert ok.status == 200
    assert [h.get("proxy-authenticate", "").split(" ")[0] for h in ok.heads[:-1]] == ["NTLM"]
    assert ok.connects == 1                    # the handshake finished on one connection
    assert "dave" in log_fields(proxy, "/echo?ntlm", "/200 ")[7]    # ntlm_fake_auth answers 'AF EXAMPLEd\davew'
    later = curl(proxy, origin.url("/echo?ntlm2"), "--proxy-ntlm", "-U", "EXAMPLE\\dave:anything")
    assert later.status == 200
    tunnel = curl(proxy, origin.url("/echo?ntlm-connect"), "-p", "--proxy-ntlm", "-U", "EXAMPLE\\dave:x")
    assert tunnel.status == 200 and tunnel.connects == 1


def test_digest_with_digest_file_auth(make_proxy, origin, tmp_path):
    users = tmp_path / "digest_users"
    users.write_text("alice:secret\n")
    proxy = make_proxy(f"auth_param digest program {SQUID_HELPERS}/digest_file_auth {users}\n"
                       "auth_param digest realm Digest proxy\n" + REQUIRE)
    assert curl(proxy, origin.url("/echo?d1"), "--proxy-digest", "-U", "alice:secret").status == 200
    assert curl(proxy, origin.url("/echo?d2"), "--proxy-digest", "-U", "alice:wrong").status == 407
    assert log_fields(proxy, "/echo?d1", "/200 ")[7] == "alice"


# ---------------------------------------------------------------- rewriters
@pytest.fixture
def squidguard():
    path = shutil.which("squidGuard")
    assert path, "squidGuard (Debian package squidguard) is missing: .ci/run installs it"
    return path


LOCAL = "acl local src 127.0.0.0/8\nhttp_access allow local\nhttp_access deny all\n"


def test_squidguard_redirects_a_blocked_url(make_proxy, origin, squidguard, tmp_path):
    conf = squidguard_config(tmp_path, "302:http://block.test/blocked?url=%u")
    proxy = make_proxy(LOCAL + f"url_rewrite_program {squidguard} -c {conf}\nurl_rewrite_children 2 startup=1\n")
    blocked = curl(proxy, "http://badsite.test/page")
    assert blocked.status == 302
    assert blocked.headers["location"] == "http://block.test/blocked?url=http://badsite.test/page"
    assert log_fields(proxy, "badsite.test")[3] == "TCP_REDIRECT/302"
    assert curl(proxy, origin.url("/echo?fine")).status == 200


def test_squidguard_rewrites_to_a_block_page(make_proxy, origin, squidguard, tmp_path):
    conf = squidguard_config(tmp_path, origin.url("/echo?blocked=%u"))
    proxy = make_proxy(LOCAL + f"url_rewrite_program {squidguard} -c {conf}\n")
    page = curl(proxy, "http://www.worse.test/x")
    assert page.status == 200 and page.json()["path"].startswith("/echo?blocked=")
    assert log_fields(proxy, "blocked=")[6].startswith(origin.url("/echo?blocked="))


def test_store_ids_let_mirrors_share_one_cached_copy(make_proxy, origin, tmp_path):
    rules = tmp_path / "store_id_rules"
    rules.write_text(f"^http://127\\.0\\.0\\.1:{origin.port}/obj/mirror[0-9]+/(.*)\thttp://mirrors.squid.internal/$1\n")
    proxy = make_proxy(LOCAL + f"store_id_program {SQUID_HELPERS}/storeid_file_rewrite {rules}\n"
                       "store_id_children 2 startup=1\n")
    first = curl(proxy, origin.url("/obj/mirror1/file?cc=max-age%3D600"))
    second = curl(proxy, origin.url("/obj/mirror2/file?cc=max-age%3D600"))
    assert first.status == second.status == 200 and first.body == second.body
    assert log_fields(proxy, "mirror2")[3] == "TCP_MEM_HIT/200"
    assert origin.count("/obj/mirror2/file?cc=max-age%3D600") == 0


# ---------------------------------------------------------------- lifecycle
def helper_children(proxy) -> list[str]:
    """The command lines of the proxy's descendants (its kids under workers, their helpers)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [proxy.proc.pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            todo.append(child)
            try:
                with open(f"/proc/{child}/cmdline", "rb") as f:
                    found.append(f.read().replace(b"\0", b" ").decode(errors="replace").strip())
            except OSError:
                pass
    return found


def test_reconfigure_starts_and_stops_the_helpers(make_proxy, origin, passwords):
    import signal as signals

    from tests.proxyproc import wait_for
    proxy = make_proxy(LOCAL)
    assert curl(proxy, origin.url("/echo/open")).status == 200
    plain = proxy.config_path.read_text()
    program = f"{SQUID_HELPERS}/basic_ncsa_auth {passwords}"
    proxy.config_path.write_text(f"auth_param basic program {program}\nauth_param basic children 2 startup=2\n"
                                 + REQUIRE + plain.replace(LOCAL, ""))
    proxy.signal(signals.SIGHUP)
    assert wait_for(lambda: proxy.read_cache_log().count("Reconfigured") == 1, 10)
    assert curl(proxy, origin.url("/echo/now-closed")).status == 407
    assert curl(proxy, origin.url("/echo/with-user"), "-U", "alice:wonder land").status == 200
    assert wait_for(lambda: sum(program in c for c in helper_children(proxy)) == 2, 5)
    proxy.config_path.write_text(plain)
    proxy.signal(signals.SIGHUP)
    assert wait_for(lambda: proxy.read_cache_log().count("Reconfigured") == 2, 10)
    assert curl(proxy, origin.url("/echo/open-again")).status == 200
    assert wait_for(lambda: not any(program in c for c in helper_children(proxy)), 10), helper_children(proxy)


def test_each_worker_runs_its_own_helpers(make_proxy, origin, passwords):
    from tests.proxyproc import wait_for
    proxy = make_proxy(f"auth_param basic program {SQUID_HELPERS}/basic_ncsa_auth {passwords}\n"
                       "auth_param basic children 1 startup=1\nworkers 2\n" + REQUIRE)
    for n in range(6):
        assert curl(proxy, origin.url(f"/echo/w{n}"), "-U", "alice:wonder land").status == 200
    assert curl(proxy, origin.url("/echo/anon")).status == 407
    program = f"basic_ncsa_auth {passwords}"
    assert wait_for(lambda: sum(program in c for c in helper_children(proxy)) == 2, 5), helper_children(proxy)
