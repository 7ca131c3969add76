"""The bumping CA (squidpy.tls.ca), minted certificates (squidpy.tls.mint), their cache
(squidpy.tls.certcache) and Squid's certificate helper (squidpy.tls.certgen), the last one
compared with what Squid 5.7's own security_file_certgen mints."""

from __future__ import annotations

import datetime
import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from squidpy.tls.ca import CA_FILE, CERT_FILE, CaError, export_der, export_text, init_ca, load_ca
from squidpy.tls.certcache import CertCache, Minted, Minter, leaf_key_for
from squidpy.tls.certgen import CertgenHelper, HelperCommand, HelperError, compose_request, parse_reply
from squidpy.tls.mint import (
    SIGN_SELF,
    SIGN_TRUSTED,
    SIGN_UNTRUSTED,
    CertProperties,
    common_name_for,
    mint,
    untrusted_ca,
    validity,
)
from tests.tlscert import DAY, TestCA

CERTGEN = "/opt/squid-openssl/usr/lib/squid/security_file_certgen"
NOW = datetime.datetime.now(datetime.timezone.utc)


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    pem, _ = init_ca(str(tmp_path_factory.mktemp("ca")), "Test Bump CA")
    return load_ca(str(pem))


@pytest.fixture(scope="module")
def origin_ca():
    return TestCA("Origin Root")


def ext(cert, cls):
    try:
        return cert.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return None


# ---------------------------------------------------------------- the CA

def test_init_ca_files_modes_and_extensions(tmp_path):
    pem, crt = init_ca(str(tmp_path / "ca"), "Office CA", permitted=("example.com", "10.0.0.0/8"),
                       excluded=("bank.example.com",))
    assert pem.name == CA_FILE and crt.name == CERT_FILE
    assert stat.S_IMODE(os.stat(pem).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(crt).st_mode) == 0o644
    assert b"PRIVATE KEY" in pem.read_bytes() and b"PRIVATE KEY" not in crt.read_bytes()
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert ext(cert, x509.SubjectKeyIdentifier) is not None
    nc = ext(cert, x509.NameConstraints)
    assert nc.critical
    assert x509.DNSName("example.com") in nc.value.permitted_subtrees
    assert x509.DNSName("bank.example.com") in nc.value.excluded_subtrees
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Office CA"
    loaded = load_ca(str(pem))
    assert loaded.cert == cert and loaded.warnings == []


def test_init_ca_does_not_replace_a_ca_clients_trust(tmp_path):
    init_ca(str(tmp_path))
    with pytest.raises(CaError, match="already exists"):
        init_ca(str(tmp_path))
    init_ca(str(tmp_path), force=True, key_type="ec")
    assert isinstance(load_ca(str(tmp_path / CA_FILE)).key, ec.EllipticCurvePrivateKey)


def test_load_ca_key_in_another_file(tmp_path):
    pem, crt = init_ca(str(tmp_path))
    key_only = tmp_path / "key.pem"
    key_only.write_bytes(pem.read_bytes().split(b"-----END CERTIFICATE-----\n")[1])
    assert load_ca(str(crt), str(key_only)).cert == load_ca(str(pem)).cert


@pytest.mark.parametrize("case, message", [
    ("missing", "cannot read"),
    ("no-key", "no private key"),
    ("wrong-key", "does not belong"),
    ("not-a-ca", "not a CA certificate"),
    ("no-certsign", "keyCertSign"),
    ("garbage", "no PEM certificate"),
])
def test_load_ca_refusals(tmp_path, case, message):
    pem, crt = init_ca(str(tmp_path / "a"))
    if case == "missing":
        path, key = str(tmp_path / "nope.pem"), None
    elif case == "no-key":
        path, key = str(crt), None
    elif case == "wrong-key":
        other, _ = init_ca(str(tmp_path / "b"))
        path, key = str(crt), str(other)
    elif case == "garbage":
        (tmp_path / "g.pem").write_text("hello")
        path, key = str(tmp_path / "g.pem"), None
    else:
        leaf_ca = TestCA()
        cert, leaf_key = leaf_ca.issue(["x.test"])
        if case == "no-certsign":
            k = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "half CA")])
            cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
                    .serial_number(1).not_valid_before(NOW - DAY).not_valid_after(NOW + DAY)
                    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                    .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                                   critical=True)
                    .sign(k, hashes.SHA256()))
            leaf_key = k
        path = tmp_path / "c.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        path, key = str(path), None
    with pytest.raises(CaError, match=message):
        load_ca(path, key)


def test_expired_ca_warns(tmp_path):
    pem, _ = init_ca(str(tmp_path), days=1)
    ca = load_ca(str(pem), now=NOW + 10 * DAY)
    assert ca.warnings and "expired" in ca.warnings[0]


def test_export(ca):
    text = export_text(ca)
    assert "update-ca-certificates" in text and "certutil -d sql:$HOME/.pki/nssdb" in text
    assert "SHA-256 fingerprint: " + ":".join(f"{b:02X}" for b in ca.cert.fingerprint(hashes.SHA256())) in text
    pem = text[text.index("-----BEGIN CERTIFICATE-----"):]
    assert x509.load_pem_x509_certificate(pem.encode()) == ca.cert
    assert x509.load_der_x509_certificate(export_der(ca)) == ca.cert


# ---------------------------------------------------------------- minting

def test_mimic_copies_subject_san_dates_and_usage(ca, origin_ca):
    origin, _ = origin_ca.issue(["www.example.com", "example.com"], organization="Example Inc",
                                not_before=NOW - DAY / 2, not_after=NOW + 80 * DAY)
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = mint(CertProperties("www.example.com", mimic=origin), ca, leaf_key)
    assert cert.subject == origin.subject
    assert cert.issuer == ca.cert.subject
    assert ext(cert, x509.SubjectAlternativeName).value == ext(origin, x509.SubjectAlternativeName).value
    assert cert.not_valid_before_utc == origin.not_valid_before_utc
    assert cert.not_valid_after_utc == origin.not_valid_after_utc
    assert ext(cert, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    assert ext(cert, x509.BasicConstraints).value.ca is False
    ku = ext(cert, x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment      # RSA key standing in for an EC one (NSS)
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(ca.cert, x509.SubjectKeyIdentifier).value.digest
    assert cert.public_key().public_numbers() == leaf_key.public_key().public_numbers()
    ca.cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                __import__("cryptography.hazmat.primitives.asymmetric.padding",
                                           fromlist=["PKCS1v15"]).PKCS1v15(), cert.signature_hash_algorithm)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)


def test_same_properties_same_certificate(ca, origin_ca):
    origin, _ = origin_ca.issue(["same.test"])
    key = ec.generate_private_key(ec.SECP256R1())
    a, b = (mint(CertProperties("same.test", mimic=origin), ca, key) for _ in range(2))
    assert a.serial_number == b.serial_number and a.subject == b.subject
    c = mint(CertProperties("same.test", mimic=origin, set_valid_after=True), ca, key)
    assert c.serial_number != a.serial_number


def test_without_origin_certificate_the_host_is_cn_and_san(ca):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = mint(CertProperties("denied.example.org"), ca, key)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "denied.example.org"
    assert ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == ["denied.example.org"]
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (ca.cert.not_valid_before_utc,
                                                                    ca.cert.not_valid_after_utc)
    ip = mint(CertProperties("192.0.2.7"), ca, key)
    assert [str(a) for a in ext(ip, x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress)] == [
        "192.0.2.7"]
    v6 = mint(CertProperties("[2001:db8::1]"), ca, key)
    assert v6.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "2001:db8::1"


def test_set_common_name_replaces_cn_and_san(ca, origin_ca):
    origin, _ = origin_ca.issue(["real.test", "alt.test"])
    cert = mint(CertProperties("configured.test", mimic=origin, set_common_name=True), ca,
                ec.generate_private_key(ec.SECP256R1()))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "configured.test"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Origin Ltd"
    assert ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == ["configured.test"]


def test_long_names_become_wildcards():
    assert common_name_for("x" * 60 + ".sub.example.com") == "*.sub.example.com"
    assert common_name_for("x" * 30 + "." + "y" * 40 + ".example.com") == "*." + "y" * 40 + ".example.com"
    assert common_name_for("x" * 10 + "." + "y" * 60 + ".com") is None       # only *.com would fit
    assert common_name_for("x" * 70 + ".com") is None
    assert common_name_for("www.example.com") == "www.example.com"


def test_validity_kept_within_the_cas(ca, origin_ca):
    long_lived, _ = origin_ca.issue(["long.test"], not_before=ca.cert.not_valid_before_utc - 400 * DAY,
                                    not_after=ca.cert.not_valid_after_utc + 400 * DAY)
    before, after = validity(CertProperties("long.test", mimic=long_lived), ca.cert)
    assert (before, after) == (ca.cert.not_valid_before_utc, ca.cert.not_valid_after_utc)
    expired, _ = origin_ca.issue(["old.test"], not_before=NOW - 900 * DAY, not_after=NOW - 300 * DAY)
    before, after = validity(CertProperties("old.test", mimic=expired), ca.cert)
    assert after == expired.not_valid_after_utc and after < NOW          # an expired origin stays expired
    adapted = validity(CertProperties("old.test", mimic=expired, set_valid_after=True, set_valid_before=True), ca.cert)
    assert adapted == (ca.cert.not_valid_before_utc, ca.cert.not_valid_after_utc)


def test_untrusted_and_self_signed(ca, origin_ca):
    origin, _ = origin_ca.issue(["shady.test"])
    untrusted = untrusted_ca(ca)
    assert untrusted.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
        'Not trusted by "Test Bump CA"'
    assert untrusted.cert.issuer == untrusted.cert.subject
    assert ext(untrusted.cert, x509.BasicConstraints).value.ca
    key = ec.generate_private_key(ec.SECP256R1())
    cert = mint(CertProperties("shady.test", mimic=origin, sign=SIGN_UNTRUSTED), untrusted, key)
    assert cert.issuer == untrusted.cert.subject
    self_signed = mint(CertProperties("shady.test", mimic=origin, sign=SIGN_SELF), ca, key)
    assert self_signed.issuer == self_signed.subject
    self_signed.public_key().verify(self_signed.signature, self_signed.tbs_certificate_bytes,
                                    ec.ECDSA(self_signed.signature_hash_algorithm))


# ---------------------------------------------------------------- the cache

def test_second_handshake_mints_nothing(ca, origin_ca, tmp_path):
    origin, _ = origin_ca.issue(["cached.test"])
    minter = Minter(ca, CertCache(4 << 20, str(tmp_path / "db")))
    first = minter.certificate(CertProperties("cached.test", mimic=origin))
    second = minter.certificate(CertProperties("cached.test", mimic=origin))
    assert first is second and minter.minted == 1 and minter.cache.memory_hits == 1
    minter.certificate(CertProperties("cached.test", mimic=origin, sign=SIGN_UNTRUSTED))
    assert minter.minted == 2


def test_disk_tier_survives_a_restart_with_private_modes(ca, origin_ca, tmp_path):
    db = tmp_path / "db"
    origin, _ = origin_ca.issue(["disk.test"])
    props = CertProperties("disk.test", mimic=origin)
    first = Minter(ca, CertCache(4 << 20, str(db))).certificate(props)
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o700
    files = list((db / "certs").iterdir())
    assert len(files) == 1 and stat.S_IMODE(os.stat(files[0]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(db / "leaf.key").st_mode) == 0o600
    again = Minter(ca, CertCache(4 << 20, str(db)))
    found = again.certificate(props)
    assert again.minted == 0 and again.cache.disk_hits == 1 and found.cert == first.cert
    assert again.leaf_key.private_numbers() == leaf_key_for(ca, str(db)).private_numbers()


def test_damaged_disk_entry_is_minted_again(ca, origin_ca, tmp_path):
    db = tmp_path / "db"
    origin, _ = origin_ca.issue(["damaged.test"])
    props = CertProperties("damaged.test", mimic=origin)
    Minter(ca, CertCache(0, str(db))).certificate(props)
    entry = next((db / "certs").iterdir())
    entry.write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n")
    minter = Minter(ca, CertCache(0, str(db)))
    assert minter.certificate(props).cert.subject == origin.subject and minter.minted == 1


def test_memory_bound_evicts_least_recently_used(ca, origin_ca):
    key = ec.generate_private_key(ec.SECP256R1())
    one = Minted(mint(CertProperties("one.test"), ca, key), key)
    size = len(one.pem())
    cache = CertCache(int(size * 2.5))
    for n in range(5):
        cache.put(f"k{n}", Minted(mint(CertProperties(f"h{n}.test"), ca, key), key))
    assert cache.memory_entries == 2 and cache.get("k4") is not None and cache.get("k0") is None
    off = CertCache(0)
    off.put("k", one)
    assert off.get("k") is None


def test_disk_bound_drops_the_oldest(ca, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    sample = Minted(mint(CertProperties("s.test"), ca, key), key)
    cache = CertCache(0, str(tmp_path / "db"), disk_limit=len(sample.pem()) * 3)
    for n in range(6):
        cache.put(f"k{n}", Minted(mint(CertProperties(f"h{n}.test"), ca, key), key))
        os.utime(tmp_path / "db" / "certs" / f"k{n}.pem", (n, n))
    names = sorted(p.name for p in (tmp_path / "db" / "certs").iterdir())
    assert len(names) <= 3 and "k5.pem" in names and "k0.pem" not in names


# ---------------------------------------------------------------- Squid's helper

def test_request_and_reply_syntax(ca, origin_ca):
    origin, _ = origin_ca.issue(["helper.test"])
    request = compose_request(CertProperties("helper.test", mimic=origin, set_valid_after=True,
                                             sign=SIGN_UNTRUSTED), ca)
    head, _, rest = request.partition(b" ")
    length, _, body = rest.partition(b" ")
    assert head == b"new_certificate" and int(length) == len(body) - 1 and body.endswith(b"\n")
    assert body.startswith(b"host=helper.test\nsetValidAfter=on\nSign=signUntrusted\nSignHash=SHA256\n"
                           b"-----BEGIN CERTIFICATE-----")
    assert body.count(b"-----BEGIN CERTIFICATE-----") == 2 and b"PRIVATE KEY" in body
    assert parse_reply(b"OK 5 hello") == ("OK", b"hello")
    assert parse_reply(b"BH 0 ") == ("BH", b"")
    with pytest.raises(HelperError):
        parse_reply(b"OK 50 short")
    with pytest.raises(HelperError):
        parse_reply(b"\x00\x01")


def test_helper_command_options():
    cmd = HelperCommand.parse("/usr/lib/squid/security_file_certgen -s /var/lib/ssl_db -M4MB")
    assert cmd.option("-s") == "/var/lib/ssl_db" and cmd.option("-M") == "4MB" and not cmd.internal
    assert HelperCommand.parse("internal -s /x").internal


@pytest.fixture
def certgen(tmp_path):
    assert os.path.exists(CERTGEN), ".ci/run unpacks Debian's squid-openssl into /opt/squid-openssl"
    helper = CertgenHelper(HelperCommand.parse(f"{CERTGEN} -s {tmp_path / 'ssl_db'} -M 4MB"), children=2)
    yield helper
    helper.stop()


def test_squids_helper_mints_what_squidpy_mints(ca, origin_ca, certgen):
    """Differential: the same properties through Squid 5.7's security_file_certgen and through
    squidpy give the same subject, SAN, dates, issuer and extensions (keys and serials differ).
    The origin's dates are within the CA's: outside them squidpy narrows them on purpose."""
    origin, _ = origin_ca.issue(["diff.test", "www.diff.test"], organization="Diff Org",
                                not_before=NOW - DAY / 2, not_after=NOW + 50 * DAY)
    for props in (CertProperties("diff.test", mimic=origin), CertProperties("no-origin.test"),
                  CertProperties("diff.test", mimic=origin, set_common_name=True)):
        squid = certgen.mint(props, ca).cert
        ours = mint(props, ca, rsa.generate_private_key(public_exponent=65537, key_size=2048))
        assert ours.subject == squid.subject, props
        assert ours.issuer == squid.issuer
        assert (ours.not_valid_before_utc, ours.not_valid_after_utc) == (
            squid.not_valid_before_utc, squid.not_valid_after_utc)
        for cls in (x509.SubjectAlternativeName, x509.KeyUsage, x509.ExtendedKeyUsage, x509.BasicConstraints,
                    x509.AuthorityKeyIdentifier):
            theirs, mine = ext(squid, cls), ext(ours, cls)
            assert (theirs is None) == (mine is None), (props, cls)
            if theirs is not None:
                assert (theirs.value, theirs.critical) == (mine.value, mine.critical), (props, cls)


def test_squids_helper_as_the_minter(ca, origin_ca, certgen, tmp_path):
    origin, _ = origin_ca.issue(["via-helper.test"])
    minter = Minter(ca, CertCache(4 << 20), helper=certgen)
    first = minter.certificate(CertProperties("via-helper.test", mimic=origin))
    assert minter.certificate(CertProperties("via-helper.test", mimic=origin)) is first and minter.minted == 1
    assert first.cert.subject == origin.subject
    assert (tmp_path / "ssl_db" / "index.txt").exists()     # the helper made its database itself


def test_helper_that_is_not_there(ca):
    helper = CertgenHelper(HelperCommand.parse("/nonexistent/certgen"), children=1)
    with pytest.raises(HelperError, match="cannot start"):
        helper.mint(CertProperties("x.test"), ca)


def test_helper_that_answers_garbage(ca, tmp_path):
    script = tmp_path / "bad-helper"
    script.write_text("#!/bin/sh\nread line\nprintf 'OK 9999 nope\\001'\n")
    script.chmod(0o755)
    helper = CertgenHelper(HelperCommand.parse(str(script)), children=1, timeout=5)
    with pytest.raises(HelperError):
        helper.mint(CertProperties("x.test"), ca)
    helper.stop()


def test_sign_trusted_default(ca):
    assert CertProperties("x").sign == SIGN_TRUSTED


def test_ca_export_from_a_configuration(tmp_path):
    """'squidpy ca export -f CONFIG' finds the CA of the ssl-bump port (the configuration is
    read even though the proxy would not serve it yet)."""
    import subprocess
    import sys
    pem, crt = init_ca(str(tmp_path / "ca"), "Config Export CA")
    conf = tmp_path / "squid.conf"
    conf.write_text(f"http_port 3128 ssl-bump tls-cert={pem}\nssl_bump bump all\n")
    out = subprocess.run([sys.executable, "-m", "squidpy", "ca", "export", "-f", str(conf), "--pem-only"],
                         capture_output=True, timeout=60)
    assert out.returncode == 0 and out.stdout == crt.read_bytes()
    plain = tmp_path / "plain.conf"
    plain.write_text("http_port 3128\n")
    out = subprocess.run([sys.executable, "-m", "squidpy", "ca", "export", "-f", str(plain)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and "has no http_port with ssl-bump" in out.stderr
