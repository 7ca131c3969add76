"""Exchange transcripts for the paths helpers add (issue 13): the 407 challenge,
credentials that a helper accepts, refuses, cannot check or never answers,
malformed credentials, the Negotiate and NTLM handshakes over one connection,
external ACLs (answers, cache, grace, failures), the URL rewriter (rewrite,
redirect, bypass, timeout) and store IDs.  Events in, exact commands out; the
helpers' answers are events like any other."""

from __future__ import annotations

import base64

import pytest

from squidpy.exchange import ClientInfo, State
from squidpy.exchange import commands as c
from squidpy.exchange import events as ev
from squidpy.helpers.protocol import TIMEDOUT, UNKNOWN, Reply, parse_reply
from tests.exchange_kit import FakeCache, FakeShared, kinds, make, response_head, sent, upstream

REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nCache-Control: max-age=600\r\n\r\n"

BASIC = """
auth_param basic program /bin/true
auth_param basic realm Test proxy
acl users proxy_auth REQUIRED
http_access allow users
http_access deny all
"""


def basic(user_password: bytes) -> bytes:
    return b"Basic " + base64.b64encode(user_password)


def get(url: bytes = b"http://o.test/a", auth: bytes | None = None, extra: bytes = b"") -> bytes:
    head = b"GET " + url + b" HTTP/1.1\r\nHost: o.test\r\n"
    if auth is not None:
        head += b"Proxy-Authorization: " + auth + b"\r\n"
    return head + extra + b"\r\n"


def answer(helper: str, line: str, child: int | None = 1) -> ev.HelperAnswered:
    return ev.HelperAnswered(helper, parse_reply(line), child)


def challenge_fields(out) -> list[bytes]:
    return [line.split(b": ", 1)[1] for line in sent(out).split(b"\r\n\r\n")[0].split(b"\r\n")
            if line.lower().startswith(b"proxy-authenticate:")]


def logged(out):
    return next(cmd.entry for cmd in out if isinstance(cmd, c.Log))


def relay(x, out=None):
    """From Connected to the end of a 5-byte reply."""
    out = list(out or [])
    out += x.handle(ev.Connected("192.0.2.1", 80))
    out += x.handle_all([ev.ResponseStarted(response_head(REPLY)), ev.ResponseBody(b"hello"),
                         ev.ResponseEnd(reusable=True)])
    return out


def connection(ip: str = "10.0.0.7") -> ClientInfo:
    return ClientInfo(ip, 40000, "10.0.0.1", 3128, "")


# ---------------------------------------------------------------- Basic
def test_no_credentials_get_a_407_with_the_challenge_and_nothing_is_forwarded():
    x = make(get(), FakeShared(BASIC))
    out = x.handle(ev.RequestStarted)
    assert kinds(out) == ["SendToClient", "Log", "Finished"]
    reply = sent(out)
    assert reply.startswith(b"HTTP/1.1 407 Proxy Authentication Required\r\n")
    assert challenge_fields(out) == [b'Basic realm="Test proxy"']
    assert b"X-Squid-Error: ERR_CACHE_ACCESS_DENIED 0\r\n" in reply
    e = logged(out)
    assert (e.result, e.status, e.user, e.hierarchy) == ("TCP_DENIED", 407, None, "HIER_NONE")
    assert out[-1] == c.Finished(keep_alive=True)


def test_good_credentials_are_checked_by_the_helper_then_forwarded_without_them():
    shared = FakeShared(BASIC)
    x = make(get(auth=basic(b"Alice:open sesame")), shared)
    out = x.handle(ev.RequestStarted)
    assert out == [c.AskHelper("basic", "alice open%20sesame")]       # lower-cased, URL-escaped
    assert x.state is State.CHECKING
    assert "sesame" not in repr(out[0])
    out = x.handle(answer("basic", "OK"))
    assert out == [c.Connect("http", "o.test", 80)]
    out = relay(x)
    assert b"proxy-authorization" not in upstream(out).lower()
    assert logged(out).user == "alice" and logged(out).user_login == "alice"


def test_a_known_user_costs_no_helper_round_trip():
    shared = FakeShared(BASIC)
    first = make(get(auth=basic(b"alice:pw")), shared)
    first.handle(ev.RequestStarted)
    first.handle(answer("basic", "OK"))
    again = make(get(auth=basic(b"alice:pw")), shared)
    assert again.handle(ev.RequestStarted) == [c.Connect("http", "o.test", 80)]
    other_password = make(get(auth=basic(b"alice:guess")), shared)
    assert other_password.handle(ev.RequestStarted) == [c.AskHelper("basic", "alice guess")]


@pytest.mark.parametrize("path", ["warm", "helper", "challenge", "auth_param only"])
def test_an_authenticating_exchange_is_freed_by_reference_counting(path):
    """No reference cycle through the checklist's authenticate(): with auth_param
    configured, every request's objects would otherwise wait for the garbage collector
    (measured end to end: about 10 % more CPU per hit)."""
    import gc
    import weakref

    shared = FakeShared(BASIC if path != "auth_param only" else
                        BASIC.replace("acl users proxy_auth REQUIRED\nhttp_access allow users\n",
                                      "acl local src 10.0.0.0/8\nhttp_access allow local\n"))
    client = connection()
    if path == "warm":
        first = make(get(auth=basic(b"alice:pw")), shared, client=client)
        first.handle(ev.RequestStarted)
        first.handle(answer("basic", "OK"))
        relay(first)
    gc.disable()
    try:
        x = make(get(auth=None if path == "challenge" else basic(b"alice:pw")), shared, client=client)
        out = x.handle(ev.RequestStarted)
        if path == "helper":
            assert out == [c.AskHelper("basic", "alice pw")]
            out = x.handle(answer("basic", "OK"))
        if path != "challenge":
            assert out == [c.Connect("http", "o.test", 80)]
            out = relay(x)
        assert x.state is State.DONE
        assert logged(out).user == (None if path in ("challenge", "auth_param only") else "alice")
        ref = weakref.ref(x)
        del x, out
        assert ref() is None
    finally:
        gc.enable()


def test_refused_credentials_get_407_logged_with_the_user_and_stay_refused():
    shared = FakeShared(BASIC)
    x = make(get(auth=basic(b"alice:wrong")), shared)
    x.handle(ev.RequestStarted)
    out = x.handle(answer("basic", "ERR message=Bad%20password"))
    assert sent(out).startswith(b"HTTP/1.1 407 ")
    assert challenge_fields(out) == [b'Basic realm="Test proxy"']
    e = logged(out)
    assert (e.result, e.status, e.user) == ("TCP_DENIED", 407, "alice")
    again = make(get(auth=basic(b"alice:wrong")), shared)
    out = again.handle(ev.RequestStarted)                 # no helper: refused until credentialsttl
    assert kinds(out) == ["SendToClient", "Log", "Finished"] and sent(out).startswith(b"HTTP/1.1 407 ")


@pytest.mark.parametrize("value", [
    b"Basic !!!!", b"Basic " + base64.b64encode(b"nopassword"), b"Basic " + base64.b64encode(b"alice:"),
    b"Bogus abc", b"Negotiate abc", b"Digest username=\"a\"", b"Basic " + b"QUFB" * 20000, b"",
])
def test_malformed_credentials_get_407_again_never_an_error(value):
    out = make(get(auth=value), FakeShared(BASIC)).handle(ev.RequestStarted)
    assert kinds(out) == ["SendToClient", "Log", "Finished"]
    assert sent(out).startswith(b"HTTP/1.1 407 ")
    assert logged(out).result == "TCP_DENIED"


@pytest.mark.parametrize("reply", [parse_reply("BH message=ldap%20down"), Reply(UNKNOWN), Reply(TIMEDOUT)])
def test_a_helper_that_cannot_decide_gets_407_and_is_asked_again_next_time(reply):
    shared = FakeShared(BASIC)
    x = make(get(auth=basic(b"alice:pw")), shared)
    x.handle(ev.RequestStarted)
    out = x.handle(ev.HelperAnswered("basic", reply, 1))
    assert sent(out).startswith(b"HTTP/1.1 407 ")
    again = make(get(auth=basic(b"alice:pw")), shared)
    assert again.handle(ev.RequestStarted) == [c.AskHelper("basic", "alice pw")]


def test_a_known_user_keeps_working_while_the_helper_cannot_check_within_credentialsttl():
    shared = FakeShared(BASIC + "auth_param basic credentialsttl 60 seconds\n")
    x = make(get(auth=basic(b"alice:pw")), shared)
    x.handle(ev.RequestStarted)
    x.handle(answer("basic", "OK"))
    shared.clock += 59
    assert make(get(auth=basic(b"alice:pw")), shared).handle(ev.RequestStarted)[0] == c.Connect("http", "o.test", 80)
    shared.clock += 2
    x = make(get(auth=basic(b"alice:pw")), shared)
    assert x.handle(ev.RequestStarted) == [c.AskHelper("basic", "alice pw")]
    assert sent(x.handle(answer("basic", "BH message=down"))).startswith(b"HTTP/1.1 407 ")


def test_connect_is_challenged_like_get():
    shared = FakeShared(BASIC)
    out = make(b"CONNECT o.test:443 HTTP/1.1\r\nHost: o.test:443\r\n\r\n", shared).handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 407 ") and logged(out).method == "CONNECT"
    assert out[-1] == c.Finished(keep_alive=True)
    x = make(b"CONNECT o.test:443 HTTP/1.1\r\nProxy-Authorization: " + basic(b"alice:pw") + b"\r\n\r\n", shared)
    assert x.handle(ev.RequestStarted) == [c.AskHelper("basic", "alice pw")]
    assert x.handle(answer("basic", "OK")) == [c.Connect("authority", "o.test", 443, tunnel=True)]


def test_a_denial_by_an_authentication_acl_challenges_and_deny_info_picks_the_page():
    config = BASIC.replace("http_access allow users", "acl bob proxy_auth bob\nacl carol proxy_auth carol\n"
                           "deny_info ERR_ACCESS_DENIED carol\nhttp_access deny bob\nhttp_access deny carol\n"
                           "http_access allow users")
    shared = FakeShared(config)
    x = make(get(auth=basic(b"bob:pw")), shared)
    x.handle(ev.RequestStarted)
    out = x.handle(answer("basic", "OK"))
    assert sent(out).startswith(b"HTTP/1.1 407 ") and challenge_fields(out)
    x = make(get(auth=basic(b"carol:pw")), shared)
    x.handle(ev.RequestStarted)
    out = x.handle(answer("basic", "OK"))
    assert sent(out).startswith(b"HTTP/1.1 407 ") and b"X-Squid-Error: ERR_ACCESS_DENIED 0" in sent(out)


def test_a_denial_by_another_acl_is_403_for_a_known_user():
    config = BASIC.replace("http_access allow users", "acl bad dstdomain o.test\nhttp_access deny bad\n"
                           "http_access allow users")
    out = make(get(), FakeShared(config)).handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 403 ") and not challenge_fields(out)


def test_deny_info_redirect_is_not_used_while_credentials_are_missing():
    config = BASIC.replace("http_access allow users", "deny_info http://login.test/ users\nhttp_access allow users")
    out = make(get(), FakeShared(config)).handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 407 ")


def test_max_user_ip():
    config = BASIC.replace("http_access allow users", "acl two max_user_ip -s 1\nhttp_access deny two\n"
                           "http_access allow users") + "authenticate_ip_ttl 60 seconds\n"
    shared = FakeShared(config)
    x = make(get(auth=basic(b"alice:pw")), shared, client_ip="10.0.0.7")
    x.handle(ev.RequestStarted)
    assert x.handle(answer("basic", "OK")) == [c.Connect("http", "o.test", 80)]
    out = make(get(auth=basic(b"alice:pw")), shared, client_ip="10.0.0.8").handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 403 ")       # a second address within authenticate_ip_ttl
    out = make(get(auth=basic(b"alice:pw")), shared, client_ip="10.0.0.7").handle(ev.RequestStarted)
    assert out == [c.Connect("http", "o.test", 80)]     # -s: only the address that went over is refused


def test_key_extras_go_to_the_helper_and_key_the_user_cache():
    shared = FakeShared(BASIC + 'auth_param basic key_extras "%>a"\n')
    x = make(get(auth=basic(b"alice:pw")), shared, client_ip="10.0.0.7")
    assert x.handle(ev.RequestStarted) == [c.AskHelper("basic", "alice pw 10.0.0.7")]
    x.handle(answer("basic", "OK"))
    assert make(get(auth=basic(b"alice:pw")), shared, client_ip="10.0.0.7").handle(ev.RequestStarted) == [
        c.Connect("http", "o.test", 80)]
    elsewhere = make(get(auth=basic(b"alice:pw")), shared, client_ip="10.0.0.8")
    assert elsewhere.handle(ev.RequestStarted) == [c.AskHelper("basic", "alice pw 10.0.0.8")]


def test_first_challenge_closes_with_keep_alive_off():
    config = BASIC.replace("auth_param basic realm Test proxy",
                           "auth_param ntlm program /bin/true\nauth_param ntlm keep_alive off")
    out = make(get(), FakeShared(config)).handle(ev.RequestStarted)
    assert challenge_fields(out) == [b"Basic realm=\"Squid proxy-caching web server\"", b"NTLM"]
    assert out[-1] == c.Finished(keep_alive=False)


# ---------------------------------------------------------------- Negotiate and NTLM over one connection
NEGOTIATE = BASIC.replace("auth_param basic program /bin/true\nauth_param basic realm Test proxy",
                          "auth_param negotiate program /bin/true")


def test_negotiate_kerberos_login_then_the_connection_stays_authenticated():
    shared, conn = FakeShared(NEGOTIATE), connection()
    out = make(get(), shared, client=conn).handle(ev.RequestStarted)
    assert challenge_fields(out) == [b"Negotiate"] and out[-1] == c.Finished(keep_alive=True)
    x = make(get(auth=b"Negotiate YIIkerberos"), shared, client=conn)
    assert x.handle(ev.RequestStarted) == [c.AskHelper("negotiate", "YR YIIkerberos")]
    out = x.handle(answer("negotiate", "OK token=oRQwEqADCgEA user=alice@EXAMPLE.TEST", child=4))
    assert out == [c.ReleaseHelper("negotiate", 4), c.Connect("http", "o.test", 80)]
    assert logged(relay(x)).user == "alice@EXAMPLE.TEST"
    later = make(get(b"http://o.test/b"), shared, client=conn)      # no credentials: the connection's
    assert later.handle(ev.RequestStarted) == [c.Connect("http", "o.test", 80)]
    elsewhere = make(get(b"http://o.test/b"), shared)                # another connection is not logged in
    assert sent(elsewhere.handle(ev.RequestStarted)).startswith(b"HTTP/1.1 407 ")


@pytest.mark.parametrize("line, shown", [
    ("BH gss_accept_sec_context() failed: Ticket expired",
     "{result=BH, notes={message: gss_accept_sec_context() failed: Ticket expired; }}"),
    ("TimedOut", "{result=Timeout}")])
def test_a_token_the_negotiate_helper_cannot_check_is_407_with_squids_cache_log_line(line, shown):
    shared, conn = FakeShared(NEGOTIATE), connection()
    x = make(get(auth=b"Negotiate YIIexpired"), shared, client=conn)
    assert x.handle(ev.RequestStarted) == [c.AskHelper("negotiate", "YR YIIexpired")]
    reply = parse_reply(line) if line.startswith("BH") else Reply(TIMEDOUT)
    out = x.handle(ev.HelperAnswered("negotiate", reply, 3))
    assert out[0] == c.Report("error", f"ERROR: Negotiate Authentication validating user. Result: {shown}")
    assert out[1] == c.ReleaseHelper("negotiate", 3)
    assert sent(out).startswith(b"HTTP/1.1 407 ") and not any(isinstance(cmd, c.Connect) for cmd in out)
    assert (logged(out).result, logged(out).status) == ("TCP_DENIED", 407)


def test_ntlm_handshake_over_two_requests_on_one_connection_reserves_the_child():
    config = NEGOTIATE.replace("negotiate", "ntlm")
    shared, conn = FakeShared(config), connection()
    x = make(get(auth=b"NTLM TlRMTVNTUAABAAAA"), shared, client=conn)
    assert x.handle(ev.RequestStarted) == [c.AskHelper("ntlm", "YR TlRMTVNTUAABAAAA")]
    out = x.handle(answer("ntlm", "TT TlRMTVNTUAACAAAA", child=2))
    assert out[0] == c.ReserveHelper("ntlm", 2)
    assert challenge_fields(out) == [b"NTLM TlRMTVNTUAACAAAA"]
    assert out[-1] == c.Finished(keep_alive=True)
    y = make(get(auth=b"NTLM TlRMTVNTUAADAAAA"), shared, client=conn)
    assert y.handle(ev.RequestStarted) == [c.AskHelper("ntlm", "KK TlRMTVNTUAADAAAA", reservation=2)]
    out = y.handle(answer("ntlm", "AF bob", child=2))
    assert out == [c.ReleaseHelper("ntlm", 2), c.Connect("http", "o.test", 80)]


def test_a_failed_handshake_is_407_and_closes_the_connection():
    config = NEGOTIATE.replace("negotiate", "ntlm")
    shared, conn = FakeShared(config), connection()
    x = make(get(auth=b"NTLM TlRMTVNTUAABAAAA"), shared, client=conn)
    x.handle(ev.RequestStarted)
    x.handle(answer("ntlm", "TT TlRMTVNTUAACAAAA", child=2))
    y = make(get(auth=b"NTLM TlRMTVNTUAADAAAA"), shared, client=conn)
    y.handle(ev.RequestStarted)
    out = y.handle(answer("ntlm", "NA wrong password", child=2))
    assert out[0] == c.ReleaseHelper("ntlm", 2)
    assert sent(out).startswith(b"HTTP/1.1 407 ") and out[-1] == c.Finished(keep_alive=False)


def test_a_handshake_needs_a_persistent_connection():
    config = NEGOTIATE.replace("negotiate", "ntlm")
    x = make(get(auth=b"NTLM TlRMTVNTUAABAAAA", extra=b"Connection: close\r\n"), FakeShared(config))
    x.handle(ev.RequestStarted)
    out = x.handle(answer("ntlm", "TT TlRMTVNTUAACAAAA", child=2))
    assert c.ReserveHelper("ntlm", 2) not in out
    assert sent(out).startswith(b"HTTP/1.1 407 ") and out[-1] == c.Finished(keep_alive=False)


def test_an_answer_from_another_helper_is_illegal():
    from squidpy.exchange import IllegalEvent
    x = make(get(auth=basic(b"alice:pw")), FakeShared(BASIC))
    x.handle(ev.RequestStarted)
    with pytest.raises(IllegalEvent):
        x.handle(answer("url_rewrite", "OK"))


# ---------------------------------------------------------------- external ACLs
EXTERNAL = """
external_acl_type groups ttl=60 negative_ttl=30 grace=50 %SRC /bin/true
acl staff external groups staff
http_access allow staff
http_access deny all
"""


def test_external_acl_allows_denies_and_caches():
    shared = FakeShared(EXTERNAL)
    x = make(get(), shared)
    assert x.handle(ev.RequestStarted) == [c.AskHelper("external:groups", "10.0.0.7 staff")]
    out = x.handle(answer("external:groups", "OK user=ext%20bob tag=t1 log=seen"))
    assert out == [c.Connect("http", "o.test", 80)]
    e = logged(relay(x))
    assert (e.user_external, e.user, e.tag, e.ext_log) == ("ext bob", "ext bob", "t1", "seen")
    again = make(get(), shared)
    assert again.handle(ev.RequestStarted) == [c.Connect("http", "o.test", 80)]        # cached (ttl)
    other = make(get(), shared, client_ip="10.0.0.9")
    other.handle(ev.RequestStarted)
    out = other.handle(answer("external:groups", "ERR message=not%20staff"))
    assert sent(out).startswith(b"HTTP/1.1 403 ")
    shared.clock += 31                                 # negative_ttl: asked again
    assert make(get(), shared, client_ip="10.0.0.9").handle(ev.RequestStarted) == [
        c.AskHelper("external:groups", "10.0.0.9 staff")]


def test_external_acl_in_grace_is_used_and_refreshed_in_the_background_once():
    shared = FakeShared(EXTERNAL)
    x = make(get(), shared)
    x.handle(ev.RequestStarted)
    x.handle(answer("external:groups", "OK"))
    shared.clock += 45                                 # past 50% of ttl=60
    out = make(get(), shared).handle(ev.RequestStarted)
    assert out == [c.RefreshExternal("groups", "10.0.0.7 staff"), c.Connect("http", "o.test", 80)]
    assert make(get(), shared).handle(ev.RequestStarted) == [c.Connect("http", "o.test", 80)]
    shared.helpers.refreshed("groups", "10.0.0.7 staff", "ERR", [])
    assert sent(make(get(), shared).handle(ev.RequestStarted)).startswith(b"HTTP/1.1 403 ")


@pytest.mark.parametrize("line", ["BH message=ldap%20down", "Unknown", "TimedOut"])
def test_external_acl_helper_failure_denies_and_is_not_cached(line):
    config = EXTERNAL.replace("http_access allow staff\n", "http_access allow staff\nhttp_access allow all\n")
    shared = FakeShared(config)
    x = make(get(), shared)
    x.handle(ev.RequestStarted)
    reply = Reply(line) if " " not in line and line != "BH" else parse_reply(line)
    out = x.handle(ev.HelperAnswered("external:groups", reply, 1))
    assert sent(out).startswith(b"HTTP/1.1 403 ")      # the check ends undecided: denied (allow all not reached)
    assert make(get(), shared).handle(ev.RequestStarted) == [c.AskHelper("external:groups", "10.0.0.7 staff")]


def test_external_acl_queue_full_is_refused_without_asking():
    shared = FakeShared(EXTERNAL)
    shared.overloaded.add("external:groups")
    out = make(get(), shared).handle(ev.RequestStarted)
    assert kinds(out) == ["Report", "SendToClient", "Log", "Finished"]
    assert sent(out).startswith(b"HTTP/1.1 403 ")


def test_external_acl_with_login_authenticates_first():
    config = BASIC.replace("http_access allow users\nhttp_access deny all",
                           "external_acl_type grp %LOGIN /bin/true\nacl staff external grp staff\n"
                           "http_access allow staff")
    shared = FakeShared(config)
    out = make(get(), shared).handle(ev.RequestStarted)
    assert sent(out).startswith(b"HTTP/1.1 407 ")     # %LOGIN: credentials first, challenge without them
    x = make(get(auth=basic(b"alice:pw")), shared)
    assert x.handle(ev.RequestStarted) == [c.AskHelper("basic", "alice pw")]
    assert x.handle(answer("basic", "OK")) == [c.AskHelper("external:grp", "alice staff")]
    out = x.handle(answer("external:grp", "ERR"))
    assert sent(out).startswith(b"HTTP/1.1 407 ")     # an external ACL with %LOGIN is an authentication ACL
    shared = FakeShared(config.replace("http_access allow staff", "http_access allow staff\nhttp_access deny all"))
    x = make(get(auth=basic(b"alice:pw")), shared)
    x.handle(ev.RequestStarted)
    x.handle(answer("basic", "OK"))
    assert sent(x.handle(answer("external:grp", "ERR"))).startswith(b"HTTP/1.1 403 ")  # 'deny all' decided


# ---------------------------------------------------------------- URL rewriter and store IDs
REWRITER = """
acl local src 10.0.0.0/8
http_access allow local
http_access deny all
url_rewrite_program /bin/true
"""


def test_rewrite_sends_the_request_elsewhere_and_logs_the_new_url():
    x = make(get(extra=b"Cookie: k\r\n"), FakeShared(REWRITER))
    out = x.handle(ev.RequestStarted)
    assert out == [c.AskHelper("url_rewrite", "http://o.test/a 10.0.0.7/10.0.0.7 - GET myip=10.0.0.1 myport=3128")]
    assert x.state is State.REWRITING
    out = x.handle(answer("url_rewrite", "OK rewrite-url=http://mirror.test:8080/b?x=1"))
    assert out == [c.Connect("http", "mirror.test", 8080)]
    out = relay(x)
    assert upstream(out).startswith(b"GET /b?x=1 HTTP/1.1\r\nHost: mirror.test:8080\r\n")
    assert logged(out).url == "http://mirror.test:8080/b?x=1"


def test_rewrite_keeps_the_host_header_with_url_rewrite_host_header_off():
    x = make(get(), FakeShared(REWRITER + "url_rewrite_host_header off\n"))
    x.handle(ev.RequestStarted)
    x.handle(answer("url_rewrite", "OK rewrite-url=http://mirror.test/b"))
    assert upstream(relay(x)).startswith(b"GET /b HTTP/1.1\r\nHost: o.test\r\n")


def test_redirect_answers_302_without_forwarding():
    x = make(get(), FakeShared(REWRITER))
    x.handle(ev.RequestStarted)
    out = x.handle(answer("url_rewrite", "OK status=302 url=http://block.test/?u=o.test"))
    assert kinds(out) == ["SendToClient", "Log", "Finished"]
    reply = sent(out)
    assert reply.startswith(b"HTTP/1.1 302 Found\r\n")
    assert b"Location: http://block.test/?u=o.test\r\n" in reply and b"Content-Length: 0\r\n" in reply
    e = logged(out)
    assert (e.result, e.status, e.hierarchy) == ("TCP_REDIRECT", 302, "HIER_NONE")


@pytest.mark.parametrize("line", ["ERR", "OK", "BH", "Unknown", "OK status=200 url=http://x.test/",
                                  "OK rewrite-url=not%20a%20url"])
def test_answers_that_change_nothing_forward_the_request_as_it_was(line):
    x = make(get(), FakeShared(REWRITER))
    x.handle(ev.RequestStarted)
    reply = Reply(line) if line == "Unknown" else parse_reply(line)
    out = x.handle(ev.HelperAnswered("url_rewrite", reply, 1))
    assert out[-1] == c.Connect("http", "o.test", 80)


def test_old_style_rewriter_answers_are_read_as_squid_reads_them():
    x = make(get(), FakeShared(REWRITER))
    x.handle(ev.RequestStarted)
    out = x.handle(ev.HelperAnswered("url_rewrite", parse_reply("301:http://new.test/"), 1))
    assert sent(out).startswith(b"HTTP/1.1 301 ")


def test_url_rewrite_access_and_bypass_skip_the_helper():
    shared = FakeShared(REWRITER + "acl skip dstdomain o.test\nurl_rewrite_access deny skip\n")
    assert make(get(), shared).handle(ev.RequestStarted) == [c.Connect("http", "o.test", 80)]
    shared = FakeShared(REWRITER + "url_rewrite_bypass on\n")
    shared.overloaded.add("url_rewrite")
    assert make(get(), shared).handle(ev.RequestStarted) == [c.Connect("http", "o.test", 80)]


def test_url_rewrite_access_may_wait_for_a_lookup():
    shared = FakeShared(REWRITER + "acl inside dst 192.0.2.0/24\nurl_rewrite_access allow inside\n")
    x = make(get(), shared)
    assert x.handle(ev.RequestStarted) == [c.LookUp("dst", "o.test")]
    assert x.state is State.CHECKING
    out = x.handle(ev.FactKnown("dst", ["192.0.2.9"]))
    assert kinds(out) == ["AskHelper"] and x.state is State.REWRITING


def test_rewriter_timeout_fails_or_bypasses_as_configured():
    x = make(get(), FakeShared(REWRITER + "url_rewrite_timeout 5 seconds\n"))
    x.handle(ev.RequestStarted)
    out = x.handle(ev.HelperAnswered("url_rewrite", Reply(TIMEDOUT), 1))
    assert sent(out).startswith(b"HTTP/1.1 500 ") and b"ERR_GATEWAY_FAILURE" in sent(out)
    x = make(get(), FakeShared(REWRITER + "url_rewrite_timeout 5 seconds on_timeout=bypass\n"))
    x.handle(ev.RequestStarted)
    assert x.handle(ev.HelperAnswered("url_rewrite", Reply(TIMEDOUT), 1)) == [c.Connect("http", "o.test", 80)]


def test_the_rewriter_sees_the_authenticated_user():
    config = BASIC + "url_rewrite_program /bin/true\n"
    x = make(get(auth=basic(b"alice:pw")), FakeShared(config))
    x.handle(ev.RequestStarted)
    out = x.handle(answer("basic", "OK"))
    assert out == [c.AskHelper("url_rewrite", "http://o.test/a 10.0.0.7/10.0.0.7 alice GET myip=10.0.0.1 myport=3128")]


def test_an_overlong_rewriter_line_is_refused():
    x = make(get(b"http://o.test/" + b"a" * 8200), FakeShared(REWRITER))
    out = x.handle(ev.RequestStarted)
    assert kinds(out) == ["Report", "SendToClient", "Log", "Finished"] and sent(out).startswith(b"HTTP/1.1 414 ")


STORE_ID = REWRITER.replace("url_rewrite_program", "store_id_program")


def test_store_id_is_the_cache_key_the_origin_is_still_the_url():
    shared = FakeShared(STORE_ID, cache=FakeCache())
    x = make(get(b"http://cdn3.o.test/video.mp4"), shared)
    assert x.handle(ev.RequestStarted) == [c.AskHelper("store_id", "http://cdn3.o.test/video.mp4 10.0.0.7/10.0.0.7 - "
                                                                   "GET myip=10.0.0.1 myport=3128")]
    out = x.handle(answer("store_id", "OK store-id=http://cdn.squid.internal/video.mp4"))
    assert kinds(out) == ["LookUpCache"] and out[0].url == "http://cdn.squid.internal/video.mp4"
    out = x.handle(ev.CacheFound(None, None, ()))
    assert out[-1] == c.Connect("http", "cdn3.o.test", 80)
    out = relay(x)
    store_end = next(cmd for cmd in out if isinstance(cmd, c.StoreEnd))
    assert store_end.url == "http://cdn.squid.internal/video.mp4"
    assert logged(out).url == "http://cdn3.o.test/video.mp4"


def test_store_id_err_keeps_the_url_and_bypass_skips_the_busy_helper():
    shared = FakeShared(STORE_ID, cache=FakeCache())
    x = make(get(), shared)
    x.handle(ev.RequestStarted)
    assert x.handle(answer("store_id", "ERR"))[0].url == "http://o.test/a"
    shared.overloaded.add("store_id")          # store_id_bypass is on by default
    assert kinds(make(get(), shared).handle(ev.RequestStarted)) == ["LookUpCache"]


def test_rewrite_then_store_id():
    shared = FakeShared(REWRITER + "store_id_program /bin/true\n", cache=FakeCache())
    x = make(get(), shared)
    x.handle(ev.RequestStarted)
    out = x.handle(answer("url_rewrite", "OK rewrite-url=http://p.test/z"))
    assert out == [c.AskHelper("store_id", "http://p.test/z 10.0.0.7/10.0.0.7 - GET myip=10.0.0.1 myport=3128")]
    out = x.handle(answer("store_id", "OK store-id=http://key.test/z"))
    assert out[0].url == "http://key.test/z"


# ---------------------------------------------------------------- no helpers: no cost
def test_without_helpers_the_shared_state_has_none():
    shared = FakeShared()
    assert shared.helpers is None
    x = make(get(), shared)
    x.handle(ev.RequestStarted)
    assert x.callout is None


def test_utf8_credentials_are_read_in_the_browsers_language():
    """auth_param basic utf8 on: CP1251 credentials from a browser that prefers Russian
    reach the helper as UTF-8 (the Accept-Language value is read as text, never bytes)."""
    x = make(get(auth=basic("иван:pw".encode("cp1251")), extra=b"Accept-Language: ru-RU,ru;q=0.9\r\n"),
             FakeShared(BASIC + "auth_param basic utf8 on\n"))
    assert x.handle(ev.RequestStarted) == [c.AskHelper("basic", "%D0%B8%D0%B2%D0%B0%D0%BD pw")]
