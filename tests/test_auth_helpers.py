"""Authentication helpers against real components: htpasswd files written by
Apache's htpasswd, OpenLDAP slapd seeded by the test (tests/ldapserver.py),
Squid's basic_ldap_auth and ext_ldap_group_acl, and squidpy's own
squidpy-basic-htpasswd, squidpy-basic-ldap and squidpy-ext-ldap-group, driven
through the helper manager (tests/helper_driver.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests import ldapserver
from tests.test_helper_processes import run

BIN = os.path.dirname(sys.executable)
HTPASSWD_HELPER = os.path.join(BIN, "squidpy-basic-htpasswd")
LDAP_HELPER = os.path.join(BIN, "squidpy-basic-ldap")
GROUP_HELPER = os.path.join(BIN, "squidpy-ext-ldap-group")


@pytest.fixture
def password_file(tmp_path):
    path = tmp_path / "passwd"
    tool = shutil.which("htpasswd")
    assert tool, "htpasswd (apache2-utils) is missing: .ci/run installs it"
    subprocess.run([tool, "-cbB", str(path), "alice", "wonder land"], check=True, capture_output=True)
    subprocess.run([tool, "-bm", str(path), "bob", "b%b:x"], check=True, capture_output=True)
    subprocess.run([tool, "-bs", str(path), "carol", "sha pw"], check=True, capture_output=True)
    subprocess.run([tool, "-bd", str(path), "dave", "des"], check=True, capture_output=True)
    return path


def test_own_htpasswd_helper_reads_every_hash(password_file):
    answers, report = run({"command": [HTPASSWD_HELPER, str(password_file)], "children": "2",
                           "requests": [{"line": "alice wonder%20land"}, {"line": "bob b%25b%3Ax"},
                                        {"line": "carol sha%20pw"}, {"line": "dave des"},
                                        {"line": "alice wonder"}, {"line": "nobody x"}]})
    assert [a["result"] for a in answers] == ["OK", "OK", "OK", "OK", "ERR", "ERR"]
    assert dict(answers[5]["notes"])["message"] == "No such user"
    assert not any("wonder" in line for line in report["log"])


def test_own_htpasswd_helper_rereads_a_changed_file(password_file):
    tool = shutil.which("htpasswd")
    script = (f"import subprocess, sys, time\n"
              f"p = subprocess.Popen([{HTPASSWD_HELPER!r}, {str(password_file)!r}], stdin=subprocess.PIPE, "
              f"stdout=subprocess.PIPE, text=True)\n"
              f"def ask(line):\n    p.stdin.write(line + '\\n'); p.stdin.flush(); return p.stdout.readline().strip()\n"
              f"print(ask('erin new%20one'))\n"
              f"subprocess.run([{tool!r}, '-bB', {str(password_file)!r}, 'erin', 'new one'], check=True, "
              f"capture_output=True)\n"
              f"print(ask('erin new%20one'))\n"
              f"subprocess.run([{tool!r}, '-D', {str(password_file)!r}, 'alice'], check=True, capture_output=True)\n"
              f"print(ask('alice wonder%20land'))\n"
              f"p.stdin.close(); p.wait(timeout=10)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.split("\n")[:3] == ["ERR message=No%20such%20user", "OK", "ERR message=No%20such%20user"]


def test_own_htpasswd_helper_with_channels(password_file):
    answers, _ = run({"command": [HTPASSWD_HELPER, "--concurrency", str(password_file)],
                      "children": "1 concurrency=4",
                      "requests": [{"line": "alice wonder%20land"}, {"line": "alice no"}]})
    assert [a["result"] for a in answers] == ["OK", "ERR"]


def test_own_htpasswd_helper_missing_file(tmp_path):
    answers, _ = run({"command": [HTPASSWD_HELPER, str(tmp_path / "none")], "children": "1",
                      "requests": [{"line": "alice x"}]})
    assert answers[0]["result"] == "BH"


# ---------------------------------------------------------------- LDAP


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    assert ldapserver.available(), "slapd (Debian package slapd) is missing: .ci/run installs it"
    server = ldapserver.LdapServer(str(tmp_path_factory.mktemp("slapd"))).start()
    yield server
    server.stop()


def test_squid_basic_ldap_auth_against_slapd(slapd):
    answers, _ = run({"command": ["/usr/lib/squid/basic_ldap_auth", "-b", ldapserver.PEOPLE, "-f", "uid=%s",
                                  "-H", slapd.uri, "-v", "3"], "children": "2",
                      "requests": [{"line": "alice alice%20pw"}, {"line": "bob b0b!"}, {"line": "alice wrong"},
                                   {"line": "nobody x"}]})
    assert [a["result"] for a in answers[:2]] == ["OK", "OK"]
    assert all(a["result"] != "OK" for a in answers[2:])


def test_squid_ext_ldap_group_acl_against_slapd(slapd):
    answers, _ = run({"command": ["/usr/lib/squid/ext_ldap_group_acl", "-b", ldapserver.GROUPS,
                                  "-f", "(&(cn=%g)(member=%u))", "-B", ldapserver.PEOPLE, "-F", "uid=%s",
                                  "-H", slapd.uri, "-v", "3"], "children": "1",
                      "requests": [{"line": "alice admins"}, {"line": "bob admins"}, {"line": "bob staff"},
                                   {"line": "carol staff admins"}]})
    assert [a["result"] for a in answers] == ["OK", "ERR", "OK", "ERR"]


@pytest.mark.parametrize("how", [["--base", ldapserver.PEOPLE, "--filter", "(uid=%s)"],
                                 ["--user-dn", f"uid=%s,{ldapserver.PEOPLE}"]])
def test_own_ldap_helper(slapd, how):
    answers, report = run({"command": [LDAP_HELPER, "--uri", slapd.uri, *how], "children": "2",
                           "requests": [{"line": "alice alice%20pw"}, {"line": "carol c%40rol"},
                                        {"line": "alice wrong"}, {"line": "nobody x"},
                                        {"line": "alice%29%28uid%3D%2A x"}]})
    assert [a["result"] for a in answers] == ["OK", "OK", "ERR", "ERR", "ERR"]
    assert not any("alice pw" in line or "alice%20pw" in line for line in report["log"])


def test_own_ldap_helper_refuses_empty_password(slapd):
    out = subprocess.run([LDAP_HELPER, "--uri", slapd.uri, "--base", ldapserver.PEOPLE],
                         input="alice %00\n", capture_output=True, text=True, timeout=30)
    assert out.stdout.startswith("ERR")


def test_own_group_helper(slapd):
    answers, _ = run({"command": [GROUP_HELPER, "--uri", slapd.uri, "--base", ldapserver.GROUPS,
                                  "--user-base", ldapserver.PEOPLE], "children": "1",
                      "requests": [{"line": "alice admins"}, {"line": "bob admins"},
                                   {"line": "bob admins staff"}, {"line": "nobody staff"}]})
    assert [a["result"] for a in answers] == ["OK", "ERR", "OK", "ERR"]
    assert dict(answers[2]["notes"])["tag"] == "staff"


def test_ldap_down_is_bh(tmp_path):
    port = ldapserver.free_port()
    answers, _ = run({"command": [LDAP_HELPER, "--uri", f"ldap://127.0.0.1:{port}", "--base",
                                  ldapserver.PEOPLE, "--timeout", "2"], "children": "1",
                      "requests": [{"line": "alice alice%20pw"}]})
    # BH is retried twice (Squid's rule) and then given to the caller, who does not cache it
    assert answers[0]["result"] == "BH"
    assert "unavailable" in dict(answers[0]["notes"])["message"]
