"""Helper directives and helper ACLs: parsing, defaults, errors with file:line,
external ACL request lines and cache, URL rewriter answers (no sockets)."""

import pytest

from squidpy.acl.checklist import AuthRequired, Checklist, ExternalPending, Pending
from squidpy.auth.decide import DONE, Outcome
from squidpy.config.loader import ConfigErrors, load
from squidpy.helpers.external import FRESH, GRACE, MISSING, ExternalCache, parse_external_acl_type, shell_quote
from squidpy.helpers.protocol import parse_reply
from squidpy.helpers.rewrite import REDIRECT, REWRITE, UNCHANGED, store_id_decision, url_rewrite_decision

BASE = "http_port 3128\n"
AUTH = "auth_param basic program /bin/true\n"


def conf(text: str, tmp_path=None):
    return load(text=BASE + text, path="/etc/squidpy/test.conf")


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as e:
        conf(text)
    return [str(x) for x in e.value.errors]


def test_defaults():
    c = conf("")
    assert not c.auth_param
    assert (c.authenticate_ttl, c.authenticate_ip_ttl, c.authenticate_cache_garbage_interval) == (3600, 1, 3600)
    assert c.url_rewrite_program is None and c.url_rewrite_bypass is False
    assert c.url_rewrite_children.n_max == 20 and c.url_rewrite_children.queue_size == 40
    assert c.url_rewrite_extras == "%>a/%>A %un %>rm myip=%la myport=%lp"
    assert c.store_id_bypass is True and c.url_rewrite_timeout is None
    assert c.url_rewrite_children.bypassing().queue_size == 0


def test_auth_acls_need_a_scheme():
    errs = errors("acl users proxy_auth REQUIRED\nhttp_access allow users\n")
    assert any("test.conf:2" in e and "no authentication schemes are fully configured" in e for e in errs)


def test_auth_acls_come_after_auth_param_as_in_squid():
    """Squid 5.7 refuses proxy_auth, proxy_auth_regex and external ACLs with %LOGIN read
    before an auth_param program line (max_user_ip it accepts)."""
    for acl in ("acl users proxy_auth REQUIRED", "acl users proxy_auth_regex ^a",
                "external_acl_type grp %LOGIN /bin/true\nacl users external grp staff"):
        errs = errors(acl + "\n" + AUTH + "http_access allow users\n")
        assert "no authentication schemes are fully configured" in errs[0], errs
        assert f"test.conf:{1 + acl.count(chr(10)) + 1}" in errs[0]
    assert conf("acl m max_user_ip 2\n" + AUTH + "http_access deny m\n")
    assert conf("external_acl_type src %SRC /bin/true\nacl s external src\n" + AUTH + "http_access allow s\n")


def test_auth_param_error_names_the_line():
    errs = errors("auth_param basic program /no/such/helper\n")
    assert any("test.conf:2" in e and "no such file" in e for e in errs)


def test_digest_without_realm():
    errs = errors("auth_param digest program /bin/true\n")
    assert any("realm is required" in e for e in errs)


def test_external_type_must_exist():
    errs = errors(AUTH + "acl g external nosuch x\nhttp_access allow g\n")
    assert any("test.conf:3" in e and "external_acl_type 'nosuch' not found" in e for e in errs)


def test_external_acl_type_options():
    notes = []
    t = parse_external_acl_type(
        "grp ttl=60 negative_ttl=5 grace=20 cache=10 children-max=3 children-startup=1 concurrency=4 "
        "protocol=2.5 ipv4 %LOGIN %>{X-Dept} %SRC /usr/lib/squid/ext_ldap_group_acl -b dc=x".split(),
        "f:1", notes.append)
    assert (t.ttl, t.negative_ttl, t.grace, t.cache_size) == (60, 5, 20, 10)
    assert (t.children.n_max, t.children.startup, t.children.concurrency, t.children.queue_size) == (3, 1, 4, 6)
    assert t.shell_quote and t.require_auth
    assert [tok.code for tok in t.tokens] == ["ul", ">ha", ">a", "DATA"]
    assert t.program == ["/usr/lib/squid/ext_ldap_group_acl", "-b", "dc=x"]
    assert any("deprecated" in n for n in notes)
    assert parse_external_acl_type("x %SRC /bin/h".split(), "f:1", notes.append).negative_ttl == 3600


@pytest.mark.parametrize("line,message", [
    ("x /bin/h", "at least one format code"),
    ("x %SRC", "no helper program"),
    ("x %NOSUCH /bin/h", "unsupported format code"),
    ("x %>ha /bin/h", "needs {name}"),
])
def test_external_acl_type_errors(line, message):
    with pytest.raises(ValueError, match=message):
        parse_external_acl_type(line.split(), "f:1", lambda m: None)


def checklist(**kw):
    ch = Checklist(src="10.1.2.3", method="GET", url="http://example.com/a b", host="example.com", port=80,
                   path="/a b", request_headers=[(b"X-Dept", b"R&D team"), (b"Cookie", b"a=1; sid=xyz")], **kw)
    return ch


def authenticated(ch, user="alice"):
    ch.auth, ch.user = Outcome(DONE, "basic", user), user
    return ch


def test_external_request_line_quoting():
    t = parse_external_acl_type("grp %LOGIN %SRC %>{X-Dept} %URI %METHOD %PORT /bin/h".split(), "f:1",
                                lambda m: None)
    ch = authenticated(checklist(), "al ice")
    assert t.request_line(ch, "staff", ["Domain Users", "x"]) == \
        "al%20ice 10.1.2.3 R&D%20team http://example.com/a%20b GET 80 Domain%20Users x"
    t25 = parse_external_acl_type("grp protocol=2.5 %LOGIN %>{X-Dept} /bin/h".split(), "f:1", lambda m: None)
    assert t25.request_line(ch, "staff", ['say "hi"']) == '"al ice" "R&D team" "say \\"hi\\""'


def test_shell_quote():
    assert shell_quote("plain") == "plain"
    assert shell_quote("a b") == '"a b"'
    assert shell_quote('q"\\\n') == 'q\\"\\\\\\n'


def test_external_format_members_and_missing_values():
    t = parse_external_acl_type(["x", "%>ha{Cookie:;sid}", "%>ha{X-None}", "%EXT_TAG", "/bin/h"], "f:1",
                                lambda m: None)
    assert t.request_line(checklist(), "x", []) == "xyz - -"


def test_external_acl_waits_for_auth_then_helper():
    c = conf(AUTH + "external_acl_type grp %LOGIN /bin/true\nacl staff external grp staff\n"
             "http_access allow staff\n")
    acl = c.acls.get("staff")
    ch = checklist()
    with pytest.raises(Pending) as p:
        acl.match(ch)
    assert p.value.fact == "auth"
    ch.auth = Outcome("none")
    with pytest.raises(AuthRequired):
        acl.match(ch)
    authenticated(ch)
    with pytest.raises(ExternalPending) as p:
        acl.match(ch)
    assert (p.value.type_name, p.value.line) == ("grp", "alice staff")
    ch.external[("grp", "alice staff")] = ("OK", [("tag", "vip"), ("user", "ALICE"), ("message", "hi")])
    assert acl.match(ch)
    assert ch.tag == "vip" and ch.ext_user == "ALICE" and ("message", "hi") in ch.notes


def test_proxy_auth_acls():
    c = conf(AUTH + "acl any_user proxy_auth REQUIRED\nacl bosses proxy_auth -i Alice Bob\n"
             "acl admins proxy_auth_regex -i ^adm\nacl ips max_user_ip -s 2\nacl ext ext_user carol\n"
             "http_access allow any_user\n")
    ch = checklist()
    with pytest.raises(Pending):
        c.acls.get("any_user").match(ch)
    ch.auth = Outcome("failed")
    with pytest.raises(AuthRequired):
        c.acls.get("bosses").match(ch)
    authenticated(ch, "alice")
    assert c.acls.get("any_user").match(ch) and c.acls.get("bosses").match(ch)
    assert not c.acls.get("admins").match(ch)
    assert c.acls.get("admins").match(authenticated(checklist(), "ADMIN7"))
    ch.user_ip_count = 2
    assert not c.acls.get("ips").match(ch)
    ch.user_ip_count = 3
    assert c.acls.get("ips").match(ch) and c.acls.get("ips").matcher.strict
    assert not c.acls.get("ext").match(ch)
    ch.ext_user = "carol"
    assert c.acls.get("ext").match(ch)


def test_proxy_auth_users_from_file(tmp_path):
    users = tmp_path / "users"
    users.write_text("alice\nbob\n")
    c = load(text=BASE + AUTH + f'acl u proxy_auth "{users}"\nhttp_access allow u\n', path=str(tmp_path / "s.conf"))
    assert c.acls.get("u").match(authenticated(checklist(), "bob"))
    assert not c.acls.get("u").match(authenticated(checklist(), "eve"))


def test_external_cache_ttl_negative_and_grace():
    t = parse_external_acl_type("x ttl=100 negative_ttl=10 grace=20 cache=2 %SRC /bin/h".split(), "f:1",
                                lambda m: None)
    cache = ExternalCache(t)
    cache.store("a", "OK", [("tag", "t")], 0)
    cache.store("b", "ERR", [], 0)
    cache.store("c", "BH", [], 0)
    assert cache.lookup("a", 50)[0] == FRESH
    assert cache.lookup("a", 85)[0] == GRACE
    assert cache.lookup("a", 100)[0] == MISSING
    assert cache.lookup("b", 9)[0] == FRESH and cache.lookup("b", 10)[0] == MISSING
    assert cache.lookup("c", 0)[0] == MISSING
    for key in ("d", "e", "f"):
        cache.store(key, "OK", [], 200)
    assert len(cache.entries) == 2


def test_url_rewrite_timeout_and_extras():
    c = conf('url_rewrite_timeout 30 seconds on_timeout=use_configured_response response="OK url=http://x/"\n'
             'url_rewrite_extras "%>a %un"\n')
    assert c.url_rewrite_timeout.seconds == 30 and c.url_rewrite_timeout.action == "use_configured_response"
    assert c.url_rewrite_extras == "%>a %un"
    assert any("unsupported on_timeout" in e for e in errors("url_rewrite_timeout 5 on_timeout=panic\n"))


@pytest.mark.parametrize("line,kind,url,status", [
    ("OK rewrite-url=http://b/", REWRITE, "http://b/", None),
    ("OK status=301 url=http://b/", REDIRECT, "http://b/", 301),
    ("OK url=http://b/", REDIRECT, "http://b/", 302),
    ("OK status=200 url=http://b/", UNCHANGED, None, None),
    ("ERR", UNCHANGED, None, None),
    ("OK", UNCHANGED, None, None),
    ("", UNCHANGED, None, None),
    ("http://legacy/ 10.0.0.1/- - GET", REWRITE, "http://legacy/", None),
    ("302:http://legacy/block", REDIRECT, "http://legacy/block", 302),
])
def test_url_rewrite_answers(line, kind, url, status):
    d = url_rewrite_decision(parse_reply(line))
    assert (d.kind, d.url, d.status) == (kind, url, status)


def test_store_id_answers():
    assert store_id_decision(parse_reply("OK store-id=http://cdn.squid.internal/x")) == "http://cdn.squid.internal/x"
    assert store_id_decision(parse_reply("ERR")) is None


def test_squidpy_check_reads_auth(tmp_path):
    import subprocess
    import sys
    path = tmp_path / "squid.conf"
    path.write_text(BASE + AUTH + "acl u proxy_auth alice\nhttp_access allow u\nhttp_access deny all\n")
    squidpy = [sys.executable, "-m", "squidpy"]
    out = subprocess.run(squidpy + ["check", "-f", str(path), "http://example.com/"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and "407 ERR_CACHE_ACCESS_DENIED" in out.stdout
    out = subprocess.run(squidpy + ["check", "-f", str(path), "--user", "alice", "http://example.com/"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "ALLOW" in out.stdout and "user alice" in out.stdout
