"""The TLS hello parsers (squidpy.tls.hello): real hellos from OpenSSL, hellos built field
by field, and hypothesis throwing cut, split, mutated and random bytes at them."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from OpenSSL import SSL

from squidpy.tls.hello import (
    MAX_HANDSHAKE,
    ClientHello,
    HelloError,
    MalformedHello,
    NotTls,
    is_grease,
    normalise_server_name,
    parse_client_hello,
    parse_server_hello,
)
from tests.tlsbytes import (
    alpn_extension,
    client_hello,
    openssl_client_hello,
    openssl_server_flight,
    records,
    sni_extension,
    u8,
    u16,
    u24,
    versions_extension,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def server_cert(tmp_path_factory):
    from tests.tlscert import make_self_signed
    cert, key = make_self_signed(tmp_path_factory.mktemp("hello"), "origin.test")
    return cert.read_bytes(), key.read_bytes()


# ---------------------------------------------------------------- real clients

def test_openssl_client_hello_gives_sni_alpn_and_tls13():
    data = openssl_client_hello("www.Example.COM.", alpn=(b"h2", b"http/1.1"))
    hello = parse_client_hello(data)
    assert hello.server_name == "www.example.com"
    assert hello.sni_raw == b"www.Example.COM."
    assert hello.alpn == ("h2", "http/1.1")
    assert 0x0304 in hello.supported_versions and hello.version == 0x0304
    assert hello.version_name == "TLS/1.3"
    assert hello.size == len(data)


def test_a_tls12_only_client_offers_tls12():
    hello = parse_client_hello(openssl_client_hello("a.test", alpn=(), max_version=SSL.TLS1_2_VERSION))
    assert hello.version == 0x0303 and hello.alpn == ()


def test_no_sni_is_none():
    hello = parse_client_hello(openssl_client_hello(None))
    assert hello.server_name is None and hello.sni_raw is None


def test_every_prefix_of_a_real_hello_asks_for_more():
    data = openssl_client_hello("prefix.test")
    for i in range(len(data)):
        assert parse_client_hello(data[:i]) is None
    assert parse_client_hello(data).server_name == "prefix.test"


def test_bytes_after_the_hello_are_not_its_own():
    data = openssl_client_hello("after.test")
    hello = parse_client_hello(data + b"\x17\x03\x03\x00\x05hello")
    assert hello.size == len(data)


def test_server_flight_tls12_carries_the_certificate(server_cert):
    from cryptography import x509
    cert_pem, key_pem = server_cert
    client = openssl_client_hello("origin.test", alpn=(b"h2", b"http/1.1"))
    flight = openssl_server_flight(client, cert_pem, key_pem, max_version=SSL.TLS1_2_VERSION,
                                   alpn_select=b"http/1.1")
    hello = parse_server_hello(flight)
    assert hello.version_name == "TLS/1.2"
    assert hello.alpn == "http/1.1"
    assert len(hello.certificates) == 1
    assert x509.load_der_x509_certificate(hello.certificates[0]) == x509.load_pem_x509_certificate(cert_pem)
    for i in range(len(flight)):
        assert parse_server_hello(flight[:i]) is None


def test_server_flight_tls13_hides_the_certificate(server_cert):
    client = openssl_client_hello("origin.test")
    flight = openssl_server_flight(client, *server_cert)
    hello = parse_server_hello(flight)
    assert hello.version_name == "TLS/1.3" and hello.certificates == ()
    assert not hello.hello_retry


# ---------------------------------------------------------------- built hellos

def test_hello_split_over_records_is_joined():
    message = client_hello([sni_extension(b"split.test"), alpn_extension(b"http/1.1")])
    for sizes in ([1], [3, 4], [10, 10, 10], [len(message) - 1]):
        hello = parse_client_hello(records(message, sizes))
        assert hello.server_name == "split.test" and hello.alpn == ("http/1.1",)


def test_first_host_name_wins_and_other_name_types_are_skipped():
    other = u8(7) + u16(3) + b"abc"
    body = u16(len(other) + 3 + 6) + other + u8(0) + u16(6) + b"one.tv"
    assert parse_client_hello(records(client_hello([(0, body)]))).server_name == "one.tv"
    assert parse_client_hello(records(client_hello([sni_extension(b"a.tv", b"b.tv")]))).server_name == "a.tv"


def test_an_empty_sni_extension_is_no_name():
    hello = parse_client_hello(records(client_hello([(0, b"")])))
    assert hello.server_name is None and hello.sni_raw == b""


@pytest.mark.parametrize("raw", [b"bad name.test", b"x\x00y.test", b"\xc3\xa9t\xc3\xa9.test", b".lead.test",
                                 b"dou..ble", b"a" * 300, b"under/slash"])
def test_unusable_sni_names_are_no_name(raw):
    hello = parse_client_hello(records(client_hello([sni_extension(raw)])))
    assert hello.server_name is None and hello.sni_raw == raw


def test_sslv3_hello_without_extensions():
    hello = parse_client_hello(records(client_hello(version=0x0300, with_extensions=False), version=0x0300))
    assert hello.version_name == "SSL/3.0" and hello.extensions == ()


def test_tls10_hello():
    hello = parse_client_hello(records(client_hello([sni_extension(b"old.test")], version=0x0301)))
    assert hello.version_name == "TLS/1.0" and hello.server_name == "old.test"


def test_grease_and_unknown_versions_are_ignored():
    hello = parse_client_hello(records(client_hello([versions_extension(0x3A3A, 0x0304, 0x0303, 0x7F1C)])))
    assert hello.supported_versions == (0x0304, 0x0303)
    assert is_grease(0x3A3A) and is_grease(0xFAFA) and not is_grease(0x0304)


def test_supported_versions_only_count_with_legacy_12():
    # RFC 8446 4.1.2: a client offering 1.3 says 1.2 in legacy_version; otherwise the extension is not believed
    hello = parse_client_hello(records(client_hello([versions_extension(0x0304)], version=0x0301)))
    assert hello.version == 0x0301


def test_sslv2_compatible_hello():
    specs = b"\x00\x00\x2f" + b"\x01\x00\x80"      # TLS_RSA_WITH_AES_128_CBC_SHA, an SSLv2 spec
    challenge = bytes(range(16))
    body = u8(1) + u16(0x0301) + u16(len(specs)) + u16(0) + u16(len(challenge)) + specs + challenge
    data = bytes([0x80 | (len(body) >> 8), len(body) & 0xFF]) + body
    hello = parse_client_hello(data)
    assert hello.sslv2 and hello.legacy_version == 0x0301 and hello.cipher_suites == (0x002F,)
    assert hello.server_name is None and hello.size == len(data)
    assert parse_client_hello(data[:2]) is None and parse_client_hello(data[:-1]) is None


# ---------------------------------------------------------------- refusals

@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"CONNECT a:443 HTTP/1.1\r\n",
                                  b"G", b"PRI * HTTP/2.0\r\n", b"SSH-2.0-OpenSSH_9.2\r\n", b"\x00\x01\x02\x03\x04"])
def test_not_tls(data):
    with pytest.raises(NotTls):
        parse_client_hello(data)


def test_plain_http_is_said_to_be_http():
    with pytest.raises(NotTls, match="plain HTTP"):
        parse_client_hello(b"GET http://x/ HTTP/1.1\r\n")


@pytest.mark.parametrize("data, why", [
    (b"\x15\x03\x03\x00\x02\x02\x28", "alert"),
    (b"\x16\x02\x00\x00\x04\x01\x00\x00\x00", "not TLS"),
    (b"\x16\x03\x01\x00\x00", "empty"),
    (b"\x16\x03\x01\x40\x01" + b"\x01", "at most"),
    (records(b"\x02\x00\x00\x00"), "not ClientHello"),
    (records(u8(1) + u24(MAX_HANDSHAKE + 1) + b"\x03\x03"), "at most"),
    (records(client_hello(session=bytes(33))), "longer than 32"),
    (records(client_hello(suites=())), "shorter than 2"),
    (records(client_hello(compression=b"")), "shorter than 1"),
    (records(client_hello() + b"\x00"), "stray"),
    (records(client_hello([(0, b"\x00\x06\x00\x00\x09abc")])), "claims"),
    (records(client_hello([(16, b"\x00\x00")])), "shorter than 2"),
    (records(client_hello([(43, b"\x03\x03\x04\x03")])), "odd length"),
], ids=["alert", "record-version", "empty-record", "huge-record", "not-client-hello", "huge-hello", "session-id",
        "no-ciphers", "no-compression", "stray-bytes", "sni-length", "empty-alpn", "odd-versions"])
def test_malformed(data, why):
    with pytest.raises(MalformedHello, match=why):
        parse_client_hello(data)


def test_inner_length_larger_than_the_message():
    message = bytearray(client_hello([sni_extension(b"x.test")]))
    message[1:4] = u24(len(message) - 4 - 1)          # the message says it is one byte shorter than its body
    with pytest.raises(MalformedHello):
        parse_client_hello(records(bytes(message)))


def test_a_record_of_another_type_inside_the_hello():
    message = client_hello([sni_extension(b"x.test")])
    data = records(message[:10]) + records(b"\x01", ctype=20) + records(message[10:])
    with pytest.raises(MalformedHello, match="type 20"):
        parse_client_hello(data)


def test_normalise_server_name():
    assert normalise_server_name(b"WWW.Example.Com.") == "www.example.com"
    assert normalise_server_name(b"under_score.test") == "under_score.test"
    assert normalise_server_name(b".") is None and normalise_server_name(None) is None


# ---------------------------------------------------------------- hypothesis

labels = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
host_names = st.lists(labels, min_size=1, max_size=5).map(".".join)
protocols = st.binary(min_size=1, max_size=20)
grease = st.sampled_from([0x0A0A, 0x1A1A, 0x2A2A, 0xFAFA])


@st.composite
def hello_parts(draw):
    name = draw(st.one_of(st.none(), host_names))
    alpn = draw(st.lists(protocols, max_size=4))
    versions = draw(st.lists(st.one_of(st.sampled_from([0x0301, 0x0302, 0x0303, 0x0304]), grease), max_size=6))
    extensions = [(draw(st.integers(1000, 1200)), draw(st.binary(max_size=40))) for _ in range(draw(st.integers(0, 3)))]
    if name is not None:
        extensions.append(sni_extension(name.encode()))
    if alpn:
        extensions.append(alpn_extension(*alpn))
    if versions:
        extensions.append(versions_extension(*versions))
    draw(st.randoms()).shuffle(extensions)
    suites = draw(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=30))
    session = draw(st.binary(max_size=32))
    return name, alpn, versions, client_hello(extensions, suites=suites, session=session)


@FUZZ
@given(hello_parts(), st.lists(st.integers(1, 300), max_size=8))
def test_built_hellos_read_back_whatever_the_record_boundaries(parts, cuts):
    name, alpn, versions, message = parts
    data = records(message, cuts)
    hello = parse_client_hello(data)
    assert isinstance(hello, ClientHello)
    assert hello.server_name == name
    assert hello.alpn == tuple(p.decode("latin-1") for p in alpn)
    assert hello.supported_versions == tuple(v for v in versions if not is_grease(v))
    assert hello.size == len(data)
    for i in sorted({len(data) - 1, len(data) // 2, 4, 5, 6}):
        if 0 <= i < len(data):
            assert parse_client_hello(data[:i]) is None


def _parse_any(data: bytes):
    for parser in (parse_client_hello, parse_server_hello):
        try:
            parser(data)
        except HelloError:
            pass


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_are_refused_cleanly(data):
    _parse_any(data)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_inside_a_record_are_refused_cleanly(payload):
    _parse_any(records(b"\x01" + u24(len(payload)) + payload))
    _parse_any(records(b"\x02" + u24(len(payload)) + payload))


@FUZZ
@given(hello_parts(), st.data())
def test_mutated_hellos_never_crash(parts, data):
    message = bytearray(records(parts[3]))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(message) - 1))
        message[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(message)))
    try:
        hello = parse_client_hello(bytes(message[:cut]))
    except HelloError:
        return
    if hello is not None:
        assert hello.size <= cut


@FUZZ
@given(st.data())
def test_mutated_server_flights_never_crash(data):
    flight = bytearray(_fuzz_flight())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(flight) - 1))
        flight[at] = data.draw(st.integers(0, 255))
    try:
        parse_server_hello(bytes(flight[:data.draw(st.integers(0, len(flight)))]))
    except HelloError:
        pass


_FLIGHT = []


def _fuzz_flight() -> bytes:
    """One TLS 1.2 server flight, made once (its random bytes must not change between examples)."""
    if not _FLIGHT:
        import tempfile
        from pathlib import Path

        from tests.tlscert import make_self_signed
        cert, key = make_self_signed(Path(tempfile.mkdtemp()), "f.test")
        _FLIGHT.append(openssl_server_flight(openssl_client_hello("f.test"), cert.read_bytes(), key.read_bytes(),
                                             max_version=SSL.TLS1_2_VERSION))
    return _FLIGHT[0]


# ---------------------------------------------------------------- hellos captured from curl and Chromium

def _capture_hello(command: list[str], port_holder: list) -> bytes:
    """Run a real client against a loopback socket that only listens, and keep what it sends
    first (the client then fails, which is expected)."""
    import socket
    import subprocess
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(30)
    port_holder.append(server.getsockname()[1])
    proc = subprocess.Popen([c.replace("PORT", str(port_holder[0])) for c in command],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        conn, _ = server.accept()
        conn.settimeout(10)
        data = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
            try:
                if parse_client_hello(data) is not None:
                    break
            except HelloError:
                break
        conn.close()
        return data
    finally:
        server.close()
        proc.kill()
        proc.wait(10)


def test_curl_hello():
    data = _capture_hello(["curl", "-s", "-m", "10", "--resolve", "curl.sni.test:PORT:127.0.0.1",
                           "https://curl.sni.test:PORT/"], [])
    hello = parse_client_hello(data)
    assert hello.server_name == "curl.sni.test"
    assert "http/1.1" in hello.alpn


def test_chromium_hello(tmp_path):
    from tests.chromium import CHROME_FLAGS, CHROMIUM
    assert CHROMIUM, "chromium is installed by .ci/run"
    data = _capture_hello([CHROMIUM, *CHROME_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                           "--host-resolver-rules=MAP chromium.sni.test 127.0.0.1", "--dump-dom",
                           "https://chromium.sni.test:PORT/"], [])
    hello = parse_client_hello(data)
    assert hello.server_name == "chromium.sni.test"
    assert hello.alpn[:2] == ("h2", "http/1.1")
    assert hello.version == 0x0304
    assert any(is_grease(t) for t, _ in hello.extensions)       # Chromium sends GREASE extensions
