"""The CA that signs the certificates SslBump mints, and its rollout.

``squidpy ca init DIR`` makes one fit for bumping (:func:`init_ca`): a root
with basicConstraints CA:TRUE (path length 0: it signs leaves only),
keyUsage keyCertSign and cRLSign, a subject key identifier and, if asked,
name constraints that limit it to some domains.  It writes ``squidpy-ca.pem``
(certificate and key, mode 0600: what ``http_port ... tls-cert=`` names) and
``squidpy-ca.crt`` (the certificate alone: what browsers and systems import).

:func:`load_ca` reads what ``tls-cert=``/``tls-key=`` name, as Squid does (the
key may sit in the certificate's file, and intermediate certificates after
it are sent along), and checks that it can sign: a CA certificate whose key
is the one given.  :func:`export_text` says how to make clients trust it.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

CA_FILE = "squidpy-ca.pem"        # certificate and key (0600)
CERT_FILE = "squidpy-ca.crt"      # certificate only (0644), to import into browsers


class CaError(ValueError):
    """The CA cannot be used (an admin can act on the message)."""


@dataclass
class SigningCa:
    """A CA certificate, its private key and the intermediates sent with minted certificates."""

    cert: x509.Certificate
    key: object                          # a cryptography private key
    chain: list[x509.Certificate] = field(default_factory=list)
    source: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return self.cert.fingerprint(hashes.SHA256()).hex()

    @property
    def common_name(self) -> str | None:
        names = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not names:
            return None
        value = names[0].value          # str, but for the few bit-string attribute types
        return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CaError(f"cannot read {path}: {e.strerror}") from None


def load_ca(cert_file: str, key_file: str | None = None, now: datetime.datetime | None = None) -> SigningCa:
    """The signing CA from PEM files; raises CaError saying what is wrong."""
    data = _read(cert_file)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CaError(f"{cert_file}: no PEM certificate in it") from None
    key_data = data if not key_file or key_file == cert_file else _read(key_file)
    key_source = key_file or cert_file
    if b"PRIVATE KEY-----" not in key_data:
        raise CaError(f"{key_source}: no private key in it (give tls-key=, or put the key in the same file)")
    if b"ENCRYPTED" in key_data:
        raise CaError(f"{key_source}: the private key is encrypted; squidpy needs it unencrypted")
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError) as e:
        raise CaError(f"{key_source}: cannot read the private key ({e})") from None
    cert = certs[0]
    if _public_bytes(cert.public_key()) != _public_bytes(key.public_key()):
        raise CaError(f"{key_source}: this private key does not belong to the certificate in {cert_file}")
    ca = SigningCa(cert, key, certs[1:], cert_file)
    ca.warnings = check_signing_ca(cert, now)
    return ca


def _public_bytes(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_signing_ca(cert: x509.Certificate, now: datetime.datetime | None = None) -> list[str]:
    """Raise CaError if ``cert`` cannot sign certificates browsers accept; return warnings."""
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise CaError("the certificate is not a CA certificate (it has no basicConstraints CA:TRUE); "
                      "make one with 'squidpy ca init DIR'") from None
    if not bc.ca:
        raise CaError("the certificate is not a CA certificate (basicConstraints CA:FALSE); "
                      "make one with 'squidpy ca init DIR'")
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is not None and not ku.key_cert_sign:
        raise CaError("the CA certificate's keyUsage does not allow signing certificates (keyCertSign)")
    warnings = []
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if cert.not_valid_after_utc < now:
        warnings.append(f"the CA certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}: "
                        "browsers will refuse every bumped site")
    elif cert.not_valid_before_utc > now:
        warnings.append(f"the CA certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d}")
    if bc.path_length is not None and bc.path_length < 0:
        raise CaError("the CA certificate has a negative path length")
    return warnings


def new_key(key_type: str):
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise CaError(f"unknown key type '{key_type}' (rsa or ec)")


def signing_hash(key, name: str = "sha256"):
    """The hash to sign with (sslproxy_cert_sign_hash); none for Ed25519/Ed448 keys."""
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None
    try:
        return getattr(hashes, name.upper().replace("-", ""))()
    except AttributeError:
        raise CaError(f"unknown signing hash '{name}' (sha256, sha384, sha512, sha1)") from None


def make_ca_certificate(common_name: str, key, days: int = 3650, organization: str | None = "squidpy",
                        permitted: tuple[str, ...] = (), excluded: tuple[str, ...] = (),
                        now: datetime.datetime | None = None) -> x509.Certificate:
    """A root fit for bumping: CA:TRUE with path length 0, keyCertSign and cRLSign,
    a subject key identifier, and name constraints when domains are given."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    attrs = []
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    name = x509.Name(attrs)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if permitted or excluded:
        builder = builder.add_extension(x509.NameConstraints(
            permitted_subtrees=[_subtree(d) for d in permitted] or None,
            excluded_subtrees=[_subtree(d) for d in excluded] or None), critical=True)
    return builder.sign(key, signing_hash(key))


def _subtree(domain: str) -> x509.GeneralName:
    """A name-constraint subtree: a domain (covers its subdomains) or an address block."""
    import ipaddress
    try:
        return x509.IPAddress(ipaddress.ip_network(domain, strict=False))
    except ValueError:
        pass
    domain = domain.strip().lstrip(".").lower()
    if not domain or " " in domain:
        raise CaError(f"'{domain}' is not a domain name for a name constraint")
    return x509.DNSName(domain)


def init_ca(directory: str, common_name: str | None = None, days: int = 3650, key_type: str = "rsa",
            permitted: tuple[str, ...] = (), excluded: tuple[str, ...] = (), force: bool = False) -> tuple[Path, Path]:
    """Create DIR/squidpy-ca.pem (certificate and key, 0600) and DIR/squidpy-ca.crt.
    Refuses to replace an existing CA unless ``force``: every client trusts the old one."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    pem, crt = folder / CA_FILE, folder / CERT_FILE
    if not force and (pem.exists() or crt.exists()):
        raise CaError(f"{pem} already exists: browsers that trust it would have to import a new one "
                      "(use --force to replace it)")
    key = new_key(key_type)
    cert = make_ca_certificate(common_name or f"squidpy CA on {socket.gethostname() or 'localhost'}", key, days,
                               permitted=permitted, excluded=excluded)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    write_private(pem, cert_pem + key_pem)
    tmp = crt.with_suffix(".tmp")
    tmp.write_bytes(cert_pem)
    os.chmod(tmp, 0o644)
    os.replace(tmp, crt)
    return pem, crt


def write_private(path: Path, data: bytes) -> None:
    """Write a file holding a private key: created 0600, never readable by others, even briefly."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def export_text(ca: SigningCa) -> str:
    """The CA certificate and how to make browsers and systems trust it."""
    cert = ca.cert
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    sha256 = ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))
    sha1 = ":".join(f"{b:02X}" for b in hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).digest())
    subject = cert.subject.rfc4514_string()
    return f"""\
# squidpy's bumping CA: {subject}
# valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}
# SHA-256 fingerprint: {sha256}
# SHA-1 fingerprint:   {sha1}
#
# Save the certificate below as squidpy-ca.crt (or use 'squidpy ca export --der' for
# systems that want DER), check the fingerprint on each client, then import it:
#
#   Debian, Ubuntu:   cp squidpy-ca.crt /usr/local/share/ca-certificates/ && update-ca-certificates
#   RHEL, Fedora:     cp squidpy-ca.crt /etc/pki/ca-trust/source/anchors/ && update-ca-trust
#   macOS:            security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain squidpy-ca.crt
#   Windows:          certutil -addstore -f ROOT squidpy-ca.crt   (or a Group Policy for the domain)
#   Chrome, Chromium on Linux (per user, NSS):
#                     certutil -d sql:$HOME/.pki/nssdb -A -t "C,," -n squidpy -i squidpy-ca.crt
#   Firefox:          policies.json "Certificates": {{"ImportEnterpriseRoots": true}} once the system
#                     trusts it, or "Install": ["/path/squidpy-ca.crt"]
#   Android, iOS:     install squidpy-ca.crt as a CA certificate (profile / "Install certificates");
#                     apps that pin their certificates will still refuse bumped connections:
#                     splice them (ssl_bump splice with ssl::server_name).
#
# Keep squidpy-ca.pem (it holds the private key) readable by squidpy only.
{pem}"""


def export_der(ca: SigningCa) -> bytes:
    return ca.cert.public_bytes(serialization.Encoding.DER)
