"""The reasons of ERR_SECURE_CONNECT_FAIL in Squid's own words: Squid 5.7 built with OpenSSL
(Debian's squid-openssl, unpacked by .ci/run) fetches https:// URLs from the test's bad
origins and answers with its page; squidpy's verification of the same origins must name the
same TLS code and give the same detail sentence."""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from squidpy.tls.options import outgoing_defaults
from tests.squidproc import SQUID_OPENSSL, SquidProcess
from tests.test_tls_verify import handshake

KINDS = ("expired", "notyet", "wrongname", "selfsigned", "unknownca")


@pytest.fixture(scope="module")
def squid_pages(tls_origins):
    """Squid's (%E, %x, %D) for each bad origin, fetched once.  Its files live under /tmp:
    run as root, Squid drops to the 'proxy' user, who cannot enter pytest's private tmp_path."""
    d = Path(tempfile.mkdtemp(prefix="squid-tls-"))
    os.chmod(d, 0o755)
    cafile = d / "test-root.pem"
    shutil.copy(tls_origins.cafile, cafile)
    os.chmod(cafile, 0o644)
    hosts = {f"{kind}.test": "127.0.0.1" for kind in KINDS}
    squid = SquidProcess(d / "squid", f"http_access allow all\ntls_outgoing_options cafile={cafile}\n",
                         hosts=hosts, binary=SQUID_OPENSSL)
    pages = {}
    try:
        for kind in KINDS:
            with socket.create_connection(("127.0.0.1", squid.port), timeout=15) as s:
                s.sendall(f"GET https://{kind}.test:{tls_origins.port(kind)}/size/3 HTTP/1.1\r\nHost: {kind}.test\r\n"
                          f"Connection: close\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            text = data.decode("latin-1")
            assert text.startswith("HTTP/1.1 503 "), text[:200]
            m = re.search(r"<pre>(.*?) \(TLS code: (.*?)\)</pre>\s*<p>(.*?)</p>", text, re.S)
            pages[kind] = m.groups()
    finally:
        squid.stop()
        shutil.rmtree(d, ignore_errors=True)
    return pages


@pytest.mark.parametrize("kind", ["expired", "notyet", "wrongname", "selfsigned"])
def test_same_tls_code_and_detail_as_squid(kind, squid_pages, tls_origins):
    options = outgoing_defaults()
    options.cafiles.append(str(tls_origins.cafile))
    _, failure, _ = handshake(tls_origins.port(kind), f"{kind}.test", options)
    errno_text, code, detail = squid_pages[kind]
    assert (failure.errno_text, failure.brief(), failure.detail()) == (errno_text, code, detail.replace("&amp;", "&"))


def test_unknown_issuer_is_named_where_squid_gives_up(squid_pages, tls_origins):
    """Squid 5.7 hides an unknown issuer to look for missing intermediates, then reports a bare
    handshake failure; squidpy names the issuer it does not know (a documented difference)."""
    assert squid_pages["unknownca"][1].startswith("SQUID_TLS_ERR_CONNECT")
    options = outgoing_defaults()
    options.cafiles.append(str(tls_origins.cafile))
    _, failure, _ = handshake(tls_origins.port("unknownca"), "unknownca.test", options)
    assert failure.brief() == "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY+broken_cert"
