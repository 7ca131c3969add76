"""Authentication decisions without sockets: credentials, Digest nonces, the user
cache, challenges and denials (injected clock)."""

import base64
import binascii
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from squidpy.auth import credentials as cred
from squidpy.auth.cache import FAILED, OK, UNCHECKED, UserCache
from squidpy.auth.decide import (
    ASK,
    DONE,
    HANDSHAKE,
    MALFORMED,
    NONE,
    REFUSED,
    Authenticator,
    ConnectionAuth,
    denial,
)
from squidpy.auth.digest import STALE, UNKNOWN, VALID, NonceRules, NonceStore, expected_response, ha1_from_password
from squidpy.auth.schemes import AuthConfig


class Clock:
    def __init__(self):
        self.now = 5000.0

    def __call__(self):
        return self.now


def basic(user_pass: bytes) -> str:
    return "Basic " + base64.b64encode(user_pass).decode()


def auth_config(lines: str, prog="/bin/true") -> AuthConfig:
    config = AuthConfig()
    for line in lines.strip().splitlines():
        line = line.replace("PROG", prog)
        rest = line.split(None, 1)[1] if " " in line else ""
        config.parse_line(rest.split(), rest, "test:1", lambda m: None)
    return config


# ---------------------------------------------------------------- credentials


def test_basic_credentials():
    c = cred.parse(basic(b"Alice:open sesame:x"))
    assert (c.user, c.password) == ("alice", "open sesame:x")     # casesensitive off: lower-cased
    assert cred.parse(basic(b"Alice:pw"), casesensitive=True).user == "Alice"
    assert "open sesame" not in repr(c)


@pytest.mark.parametrize("value", [
    "Basic", "Basic !!!!", "Basic " + base64.b64encode(b"nopassword").decode(),
    basic(b"alice:"), basic(b":pw"), basic(b"al\nice:pw"), basic(b"alice:p\rw"),
    "Basic YWxpY2U6cHc", "Bearer abc", "Negotiate", "NTLM a b", "Digest username=\"a\"",
    "Digest garbage", 'Digest username="a", realm="r", nonce="n", uri="/", response="short"',
    "Basic " + "A" * 70000,
    # not strict Base64 (a2b_base64's strict_mode on 3.11, which 3.10 lacks: mypy found the call)
    "Basic YWxpY2U6cHc=YQ==", "Basic =YWxpY2U6cHc=", "Basic YWxp Y2U6cHc=", "Basic YWxpY2U6cHc==",
])
def test_malformed_credentials(value):
    with pytest.raises(cred.Malformed) as e:
        cred.parse(value)
    assert "YWxp" not in str(e.value) and "pw" not in str(e.value)


@given(st.binary(max_size=300))
def test_any_header_is_read_or_malformed(data):
    for value in (data.decode("latin-1"), "Basic " + data.decode("latin-1"),
                  "Digest " + data.decode("latin-1"), basic(data)):
        try:
            cred.parse(value)
        except cred.Malformed:
            pass


@pytest.mark.skipif(sys.version_info < (3, 11), reason="compares with a2b_base64's strict_mode (Python 3.11)")
@given(st.text(alphabet="AZaz09+/= ", max_size=14))
def test_basic_base64_is_strict_as_strict_mode_reads_it(text):
    """Basic credentials are strict Base64 without a2b_base64's strict_mode, which Python
    3.10 lacks (mypy found the call): the same verdict as Python 3.11's strict_mode."""
    try:
        binascii.a2b_base64(text.encode(), strict_mode=True)
        strict = True
    except binascii.Error:
        strict = False
    assert bool(cred._BASE64.fullmatch(text)) == strict


def test_utf8_option_reencodes_latin1_and_cp1251():
    latin = cred.parse(basic("józef:pw".encode("latin-1")), utf8=True)
    assert latin.user.encode("latin-1") == "józef".encode("utf-8")
    cyr = cred.parse(basic("иван:pw".encode("cp1251")), utf8=True, accept_language="ru-RU,ru;q=0.9")
    assert cyr.user.encode("latin-1") == "иван".encode("utf-8")


def test_digest_params():
    c = cred.parse('Digest username="bob", realm="R", nonce="abc", uri="/x", qop=auth, nc=00000001, '
                   'cnonce="c", response="' + "0" * 32 + '", algorithm=MD5')
    assert (c.user, c.realm, c.nonce, c.uri, c.qop, c.nc) == ("bob", "R", "abc", "/x", "auth", "00000001")


# ---------------------------------------------------------------- nonces


def test_nonce_counts_and_ages():
    clock = Clock()
    store = NonceStore(NonceRules(max_duration=60, max_count=3), clock)
    n = store.new()
    assert store.check(n, "00000001") == VALID
    assert store.check(n, "00000001") == STALE          # replayed count
    n = store.new()
    assert [store.check(n, f"{i:08x}") for i in (1, 2, 3, 4)] == [VALID, VALID, VALID, STALE]
    n = store.new()
    clock.now += 61
    assert store.check(n, "00000001") == STALE
    assert store.check("not-ours", "00000001") == UNKNOWN


def test_nonce_strictness_and_count_check():
    clock = Clock()
    loose = NonceStore(NonceRules(), clock)
    n = loose.new()
    assert loose.check(n, "00000001") == VALID and loose.check(n, "00000003") == VALID
    strict = NonceStore(NonceRules(strictness=True), clock)
    n = strict.new()
    assert strict.check(n, "00000001") == VALID and strict.check(n, "00000003") == STALE
    unchecked = NonceStore(NonceRules(check_nonce_count=False), clock)
    n = unchecked.new()
    assert unchecked.check(n, "00000001") == VALID and unchecked.check(n, "00000001") == VALID


def test_nonce_garbage_collection():
    clock = Clock()
    store = NonceStore(NonceRules(max_duration=10, garbage_interval=60), clock)
    store.new()
    clock.now += 61
    store.new()
    assert len(store.nonces) == 1


# ---------------------------------------------------------------- the user cache


def test_basic_cache_credentialsttl_and_password_change():
    clock = Clock()
    cache = UserCache(clock)
    assert cache.basic("alice", "pw", 7200)[0] == UNCHECKED
    cache.record_basic("alice", "pw", "OK", [("tag", "x")])
    assert cache.basic("alice", "pw", 7200)[0] == OK
    assert cache.basic("alice", "other", 7200)[0] == UNCHECKED    # a new password is checked
    cache.record_basic("alice", "other", "ERR")
    assert cache.basic("alice", "other", 7200)[0] == FAILED
    cache.record_basic("alice", "pw", "OK")
    clock.now += 7200
    assert cache.basic("alice", "pw", 7200)[0] == UNCHECKED       # credentialsttl passed


def test_helper_that_cannot_decide_is_not_remembered():
    cache = UserCache(Clock())
    cache.record_basic("alice", "pw", "BH")
    assert cache.basic("alice", "pw", 7200)[0] == UNCHECKED
    cache.record_basic("alice", "pw", "Unknown")
    assert cache.basic("alice", "pw", 7200)[0] == UNCHECKED


def test_cache_keeps_no_password():
    cache = UserCache(Clock())
    entry = cache.record_basic("alice", "hunter2", "OK")
    assert "hunter2" not in repr(entry) and b"hunter2" not in entry.secret


def test_authenticate_ttl_garbage():
    clock = Clock()
    cache = UserCache(clock, authenticate_ttl=3600, garbage_interval=600)
    cache.record_basic("alice", "pw", "OK")
    clock.now += 3601
    cache.basic("bob", "pw", 7200)
    assert ("basic", "alice") not in cache.users


def test_the_warm_path_keeps_a_users_last_use_to_the_second():
    """known_header (a logged-in browser's requests) records when the user was seen, and
    moves it to the recently used end, at most once a second; authenticate_ttl still
    forgets a user who stopped."""
    clock = Clock()
    cache = UserCache(clock, authenticate_ttl=3600, garbage_interval=600)
    alice = cache.record_basic("alice", "pw", "OK")
    cache.remember_header(alice, b"Basic alice", None)
    cache.record_basic("bob", "pw", "OK")
    clock.now += 0.5
    assert cache.known_header(b"Basic alice", 7200) is alice
    assert alice.seen == 5000.0 and list(cache.users)[-1] == ("basic", "bob")
    clock.now += 0.5
    assert cache.known_header(b"Basic alice", 7200) is alice
    assert alice.seen == 5001.0 and list(cache.users)[-1] == ("basic", "alice")
    clock.now += 3599.5                 # bob was last seen 3600.5 s ago, alice 3599.5
    assert cache.known_header(b"Basic alice", 7200) is alice
    assert list(cache.users) == [("basic", "alice")]
    clock.now += 3600
    cache.basic("carol", "pw", 7200)    # alice unused for authenticate_ttl: forgotten
    assert ("basic", "alice") not in cache.users


def test_max_user_ip_counts_addresses_within_ttl():
    clock = Clock()
    cache = UserCache(clock, ip_ttl=60)
    entry = cache.record_basic("alice", "pw", "OK")
    assert cache.note_ip(entry, "10.0.0.1") == 1
    assert cache.note_ip(entry, "10.0.0.2") == 2
    assert cache.note_ip(entry, "10.0.0.1") == 2
    clock.now += 61
    assert cache.note_ip(entry, "10.0.0.3") == 1
    cache.note_ip(entry, "10.0.0.4")
    cache.over_limit(entry, "10.0.0.4", strict=True)
    assert list(entry.ips) == ["10.0.0.3"]
    cache.over_limit(entry, "10.0.0.3", strict=False)
    assert cache.ip_count(entry) == 0


# ---------------------------------------------------------------- auth_param


def test_auth_param_lines_and_defaults():
    config = auth_config("""
auth_param digest program PROG
auth_param digest realm My Proxy Realm
auth_param basic program PROG -x
auth_param basic children 5 startup=5 idle=1
auth_param basic credentialsttl 2 hours
auth_param basic casesensitive on
""")
    assert [s.scheme for s in config.active()] == ["digest", "basic"]
    b = config.get("basic")
    assert b.program == ["/bin/true", "-x"] and b.children.n_max == 5 and b.credentialsttl == 7200
    assert b.casesensitive and b.effective_realm() == "Squid proxy-caching web server"
    assert config.get("digest").realm == "My Proxy Realm"


@pytest.mark.parametrize("line,message", [
    ("auth_param kerberos program /bin/true", "unknown authentication scheme"),
    ("auth_param basic program /no/such/helper", "no such file"),
    ("auth_param basic children 0", "less than 1"),
    ("auth_param ntlm children 5 concurrency=2", "concurrency"),
    ("auth_param basic realm", "missing"),
    ("auth_param basic casesensitive maybe", "on"),
])
def test_auth_param_errors(line, message):
    with pytest.raises(ValueError, match=message):
        auth_config(line)


def test_digest_needs_realm():
    assert auth_config("auth_param digest program PROG").check()
    assert not auth_config("auth_param digest program PROG\nauth_param digest realm R").check()


# ---------------------------------------------------------------- decisions


def authenticator(lines="auth_param basic program PROG"):
    clock = Clock()
    config = auth_config(lines)
    return Authenticator(config, UserCache(clock), clock), clock


def test_challenges_in_squid_order():
    a, _ = authenticator("""
auth_param negotiate program PROG
auth_param digest program PROG
auth_param digest realm R
auth_param ntlm program PROG
auth_param basic program PROG
auth_param basic realm Company proxy
auth_param basic utf8 on
""")
    values = a.challenge()
    assert values[0] == "Negotiate"
    assert values[1].startswith('Digest realm="R", nonce="') and values[1].endswith('qop="auth", stale=false')
    assert values[2:] == ["NTLM", 'Basic realm="Company proxy", charset="UTF-8"']


def test_basic_flow_asks_once_then_uses_cache():
    a, _ = authenticator()
    assert a.examine(None).kind == NONE
    assert a.examine("Basic !!").kind == MALFORMED
    first = a.examine(basic(b"alice:p w"))
    assert first.kind == ASK and first.line == "alice p%20w"
    done = a.answered(first, "OK", [("group", "staff")])
    assert done.kind == DONE and done.user == "alice"
    again = a.examine(basic(b"alice:p w"))
    assert again.kind == DONE and again.notes == [("group", "staff")]
    wrong = a.examine(basic(b"alice:bad"))
    assert a.answered(wrong, "ERR", []).kind == REFUSED
    assert a.examine(basic(b"alice:bad")).kind == REFUSED


def test_known_answers_only_what_needs_no_helper_and_no_parsing():
    """The warm path: a Basic value accepted within credentialsttl, a logged-in connection;
    everything else (unknown, refused, expired, other schemes) is left to examine()."""
    a, clock = authenticator("auth_param basic program PROG\nauth_param basic credentialsttl 60 seconds\n"
                             "auth_param negotiate program PROG")
    value = basic(b"alice:pw")
    assert a.known(value) is None and a.known(None) is None and a.known("Negotiate AAAA") is None
    a.answered(a.examine(value), "OK", [])
    assert a.known(value).user == "alice" and a.known(value.encode()).user == "alice"
    assert a.known(basic(b"alice:other")) is None
    conn = ConnectionAuth()                              # a browser's connection remembers its value's key
    assert a.known(value.encode(), conn).user == "alice" and conn.basic_value == value.encode()
    assert a.known(value.encode(), conn).user == "alice"
    assert a.known(basic(b"alice:other").encode(), conn) is None and conn.basic_value != value.encode()
    wrong = a.examine(basic(b"bob:bad"))
    a.answered(wrong, "ERR", [])
    assert a.known(basic(b"bob:bad")) is None and a.examine(basic(b"bob:bad")).kind == REFUSED
    clock.now += 60
    assert a.known(value) is None and a.examine(value).kind == ASK        # credentialsttl passed
    conn = ConnectionAuth()
    a.answered(a.examine("Negotiate AAAA", conn=conn), "OK", [("token", "T"), ("user", "carol")], conn=conn, child=1)
    assert a.known(None, conn).user == "carol" and a.known("Negotiate AAAA", conn).user == "carol"
    assert a.known("Negotiate OTHER", conn) is None


def test_helper_line_cannot_be_split_by_a_client():
    a, _ = authenticator()
    outcome = a.examine(basic(b"eve x:pw\tOK"))
    assert outcome.kind == ASK and "\n" not in outcome.line and outcome.line.count(" ") == 1


def test_unconfigured_scheme_is_malformed():
    a, _ = authenticator()
    assert a.examine('Digest username="a", realm="r", nonce="n", uri="/", response="' + "0" * 32 + '"').kind \
        == MALFORMED


def test_digest_flow():
    a, _ = authenticator("auth_param digest program PROG\nauth_param digest realm R")
    nonce = a.nonces.new()
    ha1 = ha1_from_password("bob", "R", "pw")

    def header(nc, password_ha1=ha1, method="GET"):
        from squidpy.auth.credentials import Digest
        d = Digest("bob", "R", nonce, "/x", "0" * 32, "auth", nc, "cn")
        resp = expected_response(password_ha1, d, method)
        return (f'Digest username="bob", realm="R", nonce="{nonce}", uri="/x", qop=auth, nc={nc}, '
                f'cnonce="cn", response="{resp}"')
    first = a.examine(header("00000001"))
    assert first.kind == ASK and first.line == '"bob":"R"'
    assert a.answered(first, "OK", [("ha1", ha1)]).kind == DONE
    assert a.examine(header("00000002")).kind == DONE
    replay = a.examine(header("00000002"))
    assert replay.kind == REFUSED and replay.stale
    assert 'stale=true' in a.challenge(replay)[0]
    wrong = a.examine(header("00000003", ha1_from_password("bob", "R", "nope")))
    assert wrong.kind == ASK                       # the password may have changed: ask again once
    assert a.answered(wrong, "OK", [("ha1", ha1)]).kind == REFUSED


def test_negotiate_handshake_on_one_connection():
    a, _ = authenticator("auth_param negotiate program PROG")
    conn = ConnectionAuth()
    first = a.examine("Negotiate AAAA", conn=conn)
    assert first.kind == ASK and first.line == "YR AAAA"
    step = a.answered(first, "TT", [("token", "BBBB")], conn=conn, child=3)
    assert step.kind == HANDSHAKE and a.challenge(step) == ["Negotiate BBBB"]
    second = a.examine("Negotiate CCCC", conn=conn)
    assert second.line == "KK CCCC"
    done = a.answered(second, "OK", [("token", "DDDD"), ("user", "alice@EXAMPLE.TEST")], conn=conn, child=3)
    assert done.kind == DONE and done.user == "alice@EXAMPLE.TEST"
    later = a.examine(None, conn=conn)                  # the connection stays authenticated
    assert later.kind == DONE and later.user == "alice@EXAMPLE.TEST"
    assert a.examine("Negotiate AAAA").kind == MALFORMED   # no connection: cannot hold a handshake


def test_negotiate_failure_closes():
    a, _ = authenticator("auth_param negotiate program PROG")
    conn = ConnectionAuth()
    first = a.examine("Negotiate AAAA", conn=conn)
    failed = a.answered(first, "ERR", [("message", "bad ticket")], conn=conn, child=1)
    assert failed.kind == REFUSED and failed.close and failed.message == "bad ticket"


@pytest.mark.parametrize("auth_required,last_is_auth,page,ssl,expected", [
    (True, False, None, False, (407, "ERR_CACHE_ACCESS_DENIED")),
    (False, True, None, False, (407, "ERR_CACHE_ACCESS_DENIED")),
    (False, False, None, False, (403, "ERR_ACCESS_DENIED")),
    (False, True, "ERR_CUSTOM", False, (407, "ERR_CUSTOM")),
    (True, False, None, True, (403, "ERR_CACHE_ACCESS_DENIED")),
])
def test_denial(auth_required, last_is_auth, page, ssl, expected):
    assert denial(auth_required, last_is_auth, page, ssl) == expected
