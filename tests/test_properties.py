"""Property tests (hypothesis): no input makes the parsers raise anything but
their documented errors, and what the proxy writes stays well-formed."""

from __future__ import annotations

import re
import socket
import string

import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from squidpy.acl.types import ACL_TYPES
from squidpy.config import loader
from squidpy.http import message
from squidpy.http.message import RequestHead
from squidpy.http.url import BadTarget, parse_target
from squidpy.log.entry import LogEntry
from squidpy.log.logformat import compile_format

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

printable = st.text(alphabet=string.printable, max_size=80)
methods = st.sampled_from(["GET", "HEAD", "POST", "CONNECT", "OPTIONS", "PUT"])


@FAST
@given(methods, st.one_of(printable, st.builds(lambda s, h, p: f"{s}://{h}{p}",
                                               st.sampled_from(["http", "https", "ftp", "HTTP"]),
                                               printable, printable)))
def test_request_targets_parse_or_raise_bad_target(method, target):
    try:
        t = parse_target(method, target)
    except BadTarget as e:
        assert e.status in (400, 501) and e.error.startswith("ERR_")
        return
    assert "\r" not in t.url and "\n" not in t.url
    if t.kind != "origin":
        assert t.host and 0 < t.port < 65536


# header names and values as llhttp lets them through: tokens, and values without CR, LF or NUL
token = st.text(alphabet=string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~", min_size=1, max_size=20)
value = st.text(alphabet="".join(chr(c) for c in range(32, 127)) + "\t", max_size=60).map(str.strip)
headers = st.lists(st.tuples(token, value), max_size=12)


@FAST
@given(headers, st.sampled_from(["on", "off", "transparent", "delete", "truncate"]))
def test_rewritten_request_head_is_valid_http(fields, xff):
    raw = [(k.encode(), v.encode()) for k, v in fields
           if k.lower() not in ("content-length", "transfer-encoding")]
    head = RequestHead("GET", "http://example.com/", "1.1", raw)
    out = message.request_head_for_origin(head, "/p?q", "example.com", "10.0.0.1",
                                          message.via_value("1.1", "p"), xff)
    seen = []

    class Collect:
        def on_header(self, name, value):
            seen.append(name.lower())

        def on_message_complete(self):
            seen.append(None)

    httptools.HttpRequestParser(Collect()).feed_data(out)
    assert seen[-1] is None and seen.count(b"host") == 1
    for name in message.HOP_BY_HOP - {b"upgrade"}:
        assert name not in seen or name == b"connection"


directive_names = st.sampled_from(["http_port", "acl", "http_access", "connect_timeout", "via", "include",
                                   "forwarded_for", "access_log", "logformat", "deny_info", "cache_log",
                                   "request_header_max_size", "visible_hostname", "dns_nameservers", "bogus"])
words = st.text(alphabet=string.ascii_letters + string.digits + ".:/-_!\"%{}[]*#\\", max_size=15)
config_lines = st.lists(st.builds(lambda d, ws: " ".join([d, *ws]), directive_names, st.lists(words, max_size=5)),
                        max_size=10)


@pytest.mark.slow
@FAST
@given(config_lines)
def test_any_configuration_loads_or_reports_file_and_line(lines):
    text = "\n".join(lines) + "\n"
    try:
        loader.load("/nonexistent/dir/fuzz.conf", text=text)
    except loader.ConfigErrors as e:
        assert e.errors
        for err in e.errors:
            assert re.match(r"^(/nonexistent/dir/|<default )[^:]*:\d+: \S", str(err)), str(err)


@FAST
@given(st.sampled_from(sorted(ACL_TYPES)), st.lists(words, min_size=1, max_size=6))
def test_any_acl_line_loads_or_reports_an_error(acl_type, values):
    text = f"acl x {acl_type} {' '.join(values)}\nhttp_reply_access allow x\n"
    try:
        loader.load("/etc/squidpy/fuzz.conf", text=text)
    except loader.ConfigErrors as e:
        assert all(str(err).startswith("/etc/squidpy/fuzz.conf:") for err in e.errors)


@FAST
@given(st.text(max_size=60).map(lambda t: t.replace("\r", "").replace("\n", "")), st.text(max_size=60))
def test_logformat_compiles_or_raises_value_error_and_never_splits_lines(spec, hostile):
    try:
        fmt = compile_format(spec)
    except ValueError:
        return
    e = LogEntry(1.0)
    e.url = e.method = e.user_login = e.mime_type = hostile
    e.request_headers = [(b"User-Agent", hostile.encode("utf-8", "replace"))]
    line = fmt.format(e)
    assert "\n" not in line or "\\n" in spec      # only a literal \n the admin wrote
    assert "\r" not in line


# ------------------------------------------------------------ the real proxy

@pytest.fixture(scope="module")
def fuzz_proxy(tmp_path_factory):
    from tests.conftest import LOCAL_POLICY, assert_no_tracebacks
    from tests.proxyproc import ProxyProcess
    p = ProxyProcess(tmp_path_factory.mktemp("fuzz"), LOCAL_POLICY + "request_timeout 2 seconds\n")
    yield p
    p.stop()
    assert_no_tracebacks(p)


request_like = st.builds(
    lambda m, t, v, hs, body: (f"{m} {t} {v}\r\n" + "".join(f"{k}: {val}\r\n" for k, val in hs) + "\r\n").encode(
        "latin-1", "replace") + body,
    st.sampled_from(["GET", "POST", "CONNECT", "FOO", "get", ""]),
    st.sampled_from(["http://127.0.0.1:9/", "/", "*", "http://[::1", "x:y", "http://a b/"]),
    st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/0.9", "", "HTTP/1.1\r"]),
    st.lists(st.tuples(st.sampled_from(["Host", "Content-Length", "Transfer-Encoding", "Connection", "X"]),
                       st.text(alphabet=string.printable, max_size=10)), max_size=5),
    st.binary(max_size=40),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(request_like, st.binary(max_size=300)))
def test_the_proxy_answers_any_bytes_with_http_or_a_close(fuzz_proxy, data):
    with socket.create_connection(("127.0.0.1", fuzz_proxy.port), timeout=5) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            reply = b""
            while len(reply) < 65536:
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except (ConnectionResetError, BrokenPipeError):
            reply = b""
        except socket.timeout:
            pytest.fail(f"no answer and no close for {data!r}")
    if reply:
        assert reply.startswith(b"HTTP/1.1 "), reply[:60]
        assert int(reply[9:12]) in range(100, 600)
    assert fuzz_proxy.proc.poll() is None
