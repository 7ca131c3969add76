"""Certificates minted for bumped connections, mimicking the origin's as Squid does
(src/ssl/gadgets.cc: buildCertificate, mimicExtensions; client_side.cc:
buildSslCertGenerationParams).

What is copied from the origin's certificate: the whole subject; the
subjectAltName extension as it is (unless ``sslproxy_cert_adapt setCommonName``
replaced the CN: then the SAN is the new CN); the validity dates; keyUsage,
extendedKeyUsage and basicConstraints exactly, adding keyEncipherment to
keyUsage when our RSA key stands in for a non-RSA one (NSS requires it); an
authorityKeyIdentifier pointing at the signer when the origin's has one.
Without an origin certificate (bumping before connecting, or to serve an
error) the certificate carries the host name as CN and as SAN.

``sslproxy_cert_adapt`` setValidAfter/setValidBefore take the CA's dates
instead; ``sslproxy_cert_sign`` picks the signer: the CA (``signTrusted``), a
CA nobody trusts (``signUntrusted``, made from ours as Squid does: "Not
trusted by ...") so the browser warns as it would have, or the certificate
itself (``signSelf``).  The hash is sslproxy_cert_sign_hash (SHA-256 by
default), as in Squid.

Where squidpy differs, on purpose: the key is not the CA's own (Squid reuses
the CA key in every handshake) but one leaf key made once per CA and kept
with the certificate cache; a certificate's validity is kept within the CA's
(an origin certificate that is already expired stays expired, so the browser
still says so); an IP address host gets an IP address SAN.  The serial number
is derived from the properties, so the same origin certificate gives the
same minted certificate after a restart, as with Squid.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from squidpy.tls.ca import SigningCa, signing_hash

SIGN_TRUSTED, SIGN_UNTRUSTED, SIGN_SELF = "signTrusted", "signUntrusted", "signSelf"
SIGN_ALGORITHMS = (SIGN_TRUSTED, SIGN_UNTRUSTED, SIGN_SELF)
ADAPT_ALGORITHMS = ("setValidAfter", "setValidBefore", "setCommonName")
MAX_CN = 64                     # RFC 5280 A.1: ub-common-name


@dataclass(frozen=True)
class CertProperties:
    """What a minted certificate is made from (Squid's CertificateProperties)."""

    common_name: str                     # the CONNECT host or SNI, or setCommonName{...}
    mimic: x509.Certificate | None = None
    set_valid_after: bool = False
    set_valid_before: bool = False
    set_common_name: bool = False
    sign: str = SIGN_TRUSTED
    sign_hash: str = "sha256"

    def cache_key(self, signer_fingerprint: str) -> str:
        """One name per distinct certificate (Squid's InRamCertificateDbKey, plus the CA)."""
        h = hashlib.sha256()
        if self.mimic is not None:
            h.update(self.mimic.public_bytes(serialization.Encoding.DER))
        if self.mimic is None or self.set_common_name:
            h.update(b"CN=" + self.common_name.encode("utf-8", "replace"))
        h.update(b"%d%d%d|%s|%s|%s" % (self.set_common_name, self.set_valid_after, self.set_valid_before,
                                       self.sign.encode(), self.sign_hash.encode(), signer_fingerprint.encode()))
        return h.hexdigest()


def common_name_for(host: str) -> str | None:
    """Squid's replaceCommonName: a name longer than 64 characters becomes the
    shortest ``*.parent`` that fits (None when there is none); IPv6 brackets go."""
    cn = host
    if len(cn) > MAX_CN:
        labels = cn.split(".")
        cn = None
        for i in range(1, len(labels) - 1):
            candidate = "*." + ".".join(labels[i:])
            if len(candidate) < MAX_CN:      # Squid keeps one character to spare
                cn = candidate
                break
        if cn is None:
            return None
    if len(cn) > 2 and cn.startswith("[") and cn.endswith("]"):
        cn = cn[1:-1]
    return cn


def _subject(props: CertProperties) -> x509.Name:
    base = list(props.mimic.subject.rdns) if props.mimic is not None else []
    if props.mimic is not None and not props.set_common_name:
        return x509.Name(base)
    cn = common_name_for(props.common_name)
    rdns = [rdn for rdn in base if not any(a.oid == NameOID.COMMON_NAME for a in rdn)]
    if cn:
        rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    return x509.Name(rdns)


def validity(props: CertProperties, signer: x509.Certificate) -> tuple[datetime.datetime, datetime.datetime]:
    """notBefore and notAfter: the origin's (or the CA's when adapted or without an
    origin certificate), kept within the CA's own unless the origin's were
    already outside it the other way (an expired origin stays expired)."""
    ca_before, ca_after = signer.not_valid_before_utc, signer.not_valid_after_utc
    mimic = props.mimic
    before = mimic.not_valid_before_utc if mimic is not None and not props.set_valid_before else ca_before
    after = mimic.not_valid_after_utc if mimic is not None and not props.set_valid_after else ca_after
    after = min(after, ca_after)
    if max(before, ca_before) <= after:
        before = max(before, ca_before)
    if after < before:
        after = before
    return before, after


def _serial(props: CertProperties, signer: SigningCa) -> int:
    digest = hashlib.sha1(props.cache_key(signer.fingerprint).encode()).digest()
    serial = int.from_bytes(digest, "big") & ~(1 << 159)     # a positive 20-byte integer
    return serial or 1


def _mimicked_extensions(mimic: x509.Certificate, leaf_key) -> list[x509.Extension]:
    out = []
    for cls in (x509.KeyUsage, x509.ExtendedKeyUsage, x509.BasicConstraints):
        try:
            ext = mimic.extensions.get_extension_for_class(cls)
        except (x509.ExtensionNotFound, ValueError):
            continue
        value = ext.value
        if cls is x509.KeyUsage and isinstance(leaf_key, rsa.RSAPrivateKey) and not isinstance(
                mimic.public_key(), rsa.RSAPublicKey) and not value.key_encipherment:
            value = x509.KeyUsage(
                digital_signature=value.digital_signature, content_commitment=value.content_commitment,
                key_encipherment=True, data_encipherment=value.data_encipherment,
                key_agreement=value.key_agreement, key_cert_sign=value.key_cert_sign, crl_sign=value.crl_sign,
                encipher_only=value.encipher_only if value.key_agreement else False,
                decipher_only=value.decipher_only if value.key_agreement else False)
        out.append(x509.Extension(ext.oid, ext.critical, value))
    return out


def _san_for(name: str) -> x509.SubjectAlternativeName:
    host = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        return x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))])
    except ValueError:
        return x509.SubjectAlternativeName([x509.DNSName(host)])


def mint(props: CertProperties, signer: SigningCa, leaf_key) -> x509.Certificate:
    """The certificate for ``props``, with ``leaf_key``'s public key, signed as
    ``props.sign`` says by ``signer`` (the CA, or the untrusted CA for signUntrusted)."""
    subject = _subject(props)
    before, after = validity(props, signer.cert)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if props.sign == SIGN_SELF else signer.cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(_serial(props, signer))
        .not_valid_before(before).not_valid_after(after)
    )
    mimic = props.mimic
    san_done = False
    if mimic is not None and not props.set_common_name:
        try:
            san = mimic.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            builder = builder.add_extension(san.value, san.critical)
        except (x509.ExtensionNotFound, ValueError):
            pass
        san_done = True          # Squid mimics the origin's SAN, it does not enhance it
    if mimic is not None:
        for ext in _mimicked_extensions(mimic, leaf_key):
            builder = builder.add_extension(ext.value, ext.critical)
        if props.sign != SIGN_SELF and _has_extension(mimic, x509.AuthorityKeyIdentifier):
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.cert.public_key()), False)
    if not san_done:
        cn = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if cn and " " not in cn[0].value:
            builder = builder.add_extension(_san_for(cn[0].value), False)
    key = leaf_key if props.sign == SIGN_SELF else signer.key
    return builder.sign(key, signing_hash(key, props.sign_hash))


def _has_extension(cert: x509.Certificate, cls) -> bool:
    try:
        cert.extensions.get_extension_for_class(cls)
        return True
    except (x509.ExtensionNotFound, ValueError):
        return False


def untrusted_ca(ca: SigningCa) -> SigningCa:
    """The CA signUntrusted certificates are signed by: ours mimicked, self-signed,
    with the CN 'Not trusted by "<our CN>"' (Squid's generateUntrustedCert), and the
    same key.  Browsers know nothing of it, so they warn as they would have."""
    names = ca.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = ca.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if names:
        cn = f'Not trusted by "{names[0].value}"'
    elif orgs:
        cn = f'Not trusted by "{orgs[0].value}"'
    else:
        cn = "Not trusted"
    props = CertProperties(cn[:MAX_CN], mimic=ca.cert, set_common_name=True, sign=SIGN_SELF)
    cert = mint(props, ca, ca.key)
    return SigningCa(cert, ca.key, [], ca.source + " (untrusted)")
