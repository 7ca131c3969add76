"""The TLS ACL types: ``ssl::server_name``, ``ssl::server_name_regex``, ``ssl_error``,
``server_cert_fingerprint``, ``user_cert``, ``ca_cert`` and ``at_step``.

They read the TLS facts of a checklist: ``sni`` (the ClientHello's server
name), ``server_cert`` (the origin's certificate, once seen), ``ssl_errors``
(what verifying it found), ``client_cert`` (a client's certificate on an
``https_port``) and ``bump_step``.  A transaction that is not bumped has none
of them and is at step SslBump1, as in Squid: there ``ssl::server_name``
matches the CONNECT host (or the URL host), so it works in ``http_access``
too, and the others do not match.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from squidpy.acl.checklist import Checklist
from squidpy.acl.domains import normalize_host
from squidpy.acl.types import ACL_TYPES, AclType, AclWarning, _DomainAcl, _RegexAcl
from squidpy.tls.errors import error_name, parse_error_name, x509_name_oneline
from squidpy.tls.names import certificate_matches_host, certificate_names, match_domain_name

if TYPE_CHECKING:
    from cryptography import x509

SERVER_NAME_OPTIONS = ("--client-requested", "--server-provided", "--consensus")
STEP1, STEP2, STEP3 = "SslBump1", "SslBump2", "SslBump3"      # at_step names; SslBump's steps
STEPS = (STEP1, STEP2, STEP3)


class _ServerName:
    """Squid's ACLServerNameStrategy: which name(s) the server has at this point."""

    flags: frozenset[str]           # the AclType's

    def _policy(self) -> str | None:
        chosen = [o for o in SERVER_NAME_OPTIONS if o in self.flags]
        return chosen[0] if chosen else None

    def _check_options(self) -> None:
        if sum(o in self.flags for o in SERVER_NAME_OPTIONS) > 1:
            raise ValueError("give only one of --client-requested, --server-provided and --consensus")

    def _match_server(self, ch: Checklist) -> bool:
        requested = ch.sni or normalize_host(ch.host) or None
        cert = ch.server_cert
        policy = self._policy()
        if policy == "--consensus":
            name = requested if requested and (cert is None or certificate_matches_host(cert, requested)) else None
        elif policy == "--client-requested":
            name = requested
        else:
            if cert is not None:
                return any(self._match_certificate_name(n) for n in certificate_names(cert))
            name = None if policy == "--server-provided" else requested
        return self._match_name(name or "none")

    def _match_name(self, name: str) -> bool:
        raise NotImplementedError

    def _match_certificate_name(self, name: str) -> bool:
        return self._match_name(name)


class ServerNameAcl(_ServerName, _DomainAcl):
    """``ssl::server_name [--client-requested|--server-provided|--consensus] .example.com ...``:
    the server's name as far as it is known: the certificate's names once the origin's
    certificate is in (any one matching), else the SNI, else the CONNECT host; the
    options pick one source, and 'none' matches when the chosen one has no name."""

    name = "ssl::server_name"
    flags_allowed = frozenset(SERVER_NAME_OPTIONS)
    example = ".bank.example.com .health.example.org"

    def finish(self) -> list[AclWarning]:
        self._check_options()
        return super().finish()

    def match(self, ch: Checklist) -> bool:
        return self._match_server(ch)

    def _match_name(self, name: str) -> bool:
        return normalize_host(name) in self.domains

    def _match_certificate_name(self, name: str) -> bool:
        """A certificate's ``*.example.com`` matches every entry ending in ``.example.com``."""
        if "*" not in name:
            return self._match_name(name)
        entries = [("." + d) for d in self.domains.wild] + list(self.domains.exact)
        return any(match_domain_name(name, entry, honor_wildcards=True) for entry in entries)


class ServerNameRegexAcl(_ServerName, _RegexAcl):
    """``ssl::server_name_regex [-i] REGEX ...``: the same names, against regular expressions."""

    name = "ssl::server_name_regex"
    flags_allowed = frozenset({"-i", "+i", *SERVER_NAME_OPTIONS})
    example = r"-i (^|\.)bank\."

    def begin_line(self, flags: frozenset[str]) -> None:
        super().begin_line(flags)
        self.flags = self.flags | flags

    def finish(self) -> list[AclWarning]:
        self._check_options()
        return super().finish()

    def match(self, ch: Checklist) -> bool:
        return self._match_server(ch)

    def _match_name(self, name: str) -> bool:
        return self.search(name)


class SslErrorAcl(AclType):
    """``ssl_error X509_V_ERR_CERT_HAS_EXPIRED ssl::certSelfSigned ...``: any error found
    while verifying the origin's certificate (for sslproxy_cert_error, sslproxy_cert_sign
    and sslproxy_cert_adapt)."""

    name = "ssl_error"
    example = "ssl::certHasExpired X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT"

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.codes: set[int] = set()

    def add(self, value: str, where: str | None = None) -> None:
        self.codes.update(parse_error_name(value))

    def match(self, ch: Checklist) -> bool:
        return any(e.code in self.codes for e in ch.ssl_errors or ())

    def describe(self) -> list[str]:
        return sorted(error_name(c) for c in self.codes)


def sha1_fingerprint(cert: x509.Certificate) -> str:
    """``AB:CD:...``, as Squid writes a certificate's fingerprint."""
    from cryptography.hazmat.primitives import hashes   # here: only a certificate at hand needs it

    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA1()))


class ServerCertFingerprintAcl(AclType):
    """``server_cert_fingerprint AB:CD:...``: the SHA-1 digest of the origin's certificate,
    compared as Squid compares it (upper-case hex, colons).  Squid documents a ``-sha1``
    option, but Squid 5.7 refuses every line that gives it; so does squidpy."""

    name = "server_cert_fingerprint"
    example = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01"

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.values: set[str] = set()
        self._warnings: list[AclWarning] = []

    def add(self, value: str, where: str | None = None) -> None:
        if value.startswith("-"):
            raise ValueError(f"'{value}': Squid 5.7 refuses options on server_cert_fingerprint lines "
                             "(SHA-1 is the only digest): write the fingerprint alone")
        if value != value.upper():
            self._warnings.append((where, f"'{value}' has lower-case letters and never matches: Squid compares "
                                          "fingerprints written in upper case"))
        self.values.add(value)

    def finish(self) -> list[AclWarning]:
        warnings, self._warnings = self._warnings, []
        return warnings

    def match(self, ch: Checklist) -> bool:
        return ch.server_cert is not None and sha1_fingerprint(ch.server_cert) in self.values


# OpenSSL short and long names of the attributes people use (OBJ_txt2nid)
ATTRIBUTES = {
    "CN": "2.5.4.3", "commonName": "2.5.4.3", "C": "2.5.4.6", "countryName": "2.5.4.6",
    "L": "2.5.4.7", "localityName": "2.5.4.7", "ST": "2.5.4.8", "stateOrProvinceName": "2.5.4.8",
    "O": "2.5.4.10", "organizationName": "2.5.4.10", "OU": "2.5.4.11", "organizationalUnitName": "2.5.4.11",
    "emailAddress": "1.2.840.113549.1.9.1", "serialNumber": "2.5.4.5", "DC": "0.9.2342.19200300.100.1.25",
    "domainComponent": "0.9.2342.19200300.100.1.25", "UID": "0.9.2342.19200300.100.1.1", "SN": "2.5.4.4",
    "GN": "2.5.4.42", "title": "2.5.4.12", "street": "2.5.4.9", "postalCode": "2.5.4.17",
}


class _CertificateAttributeAcl(AclType):
    """``ATTRIBUTE VALUE ...``: one attribute of a name (``DN`` for the whole name as
    OpenSSL writes it on one line), the same attribute on every line."""

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.attribute: str | None = None
        self.oid: str | None = None
        self.values: set[str] = set()
        self._expect_attribute = True

    def begin_line(self, flags: frozenset[str]) -> None:
        super().begin_line(flags)
        self._expect_attribute = True

    def add(self, value: str, where: str | None = None) -> None:
        if self._expect_attribute:
            self._expect_attribute = False
            if self.attribute is not None and value.lower() != self.attribute.lower():
                raise ValueError(f"an ACL must use one attribute on all its lines ({value} != {self.attribute})")
            if value != "DN" and value not in ATTRIBUTES and not all(c.isdigit() or c == "." for c in value):
                raise ValueError(f"'{value}' is not a certificate attribute name (CN, O, OU, emailAddress, DN ...) "
                                 "or a numeric OID")
            self.attribute = value
            self.oid = None if value == "DN" else ATTRIBUTES.get(value, value)
            return
        self.values.add(value)

    def name_of(self, cert: x509.Certificate) -> x509.Name:
        raise NotImplementedError

    def match(self, ch: Checklist) -> bool:
        cert = ch.client_cert
        if cert is None or self.attribute is None:
            return False
        name = self.name_of(cert)
        if self.oid is None:
            text = x509_name_oneline(name)
        else:
            from cryptography import x509       # here: only a client certificate at hand needs it

            found = name.get_attributes_for_oid(x509.ObjectIdentifier(self.oid))
            if not found:
                return False
            text = found[0].value if isinstance(found[0].value, str) else found[0].value.hex()
        return text in self.values


class UserCertAcl(_CertificateAttributeAcl):
    """``user_cert ATTRIBUTE VALUE ...``: the client certificate's subject (https_port clients)."""

    name = "user_cert"
    example = "CN alice bob"

    def name_of(self, cert: x509.Certificate) -> x509.Name:
        return cert.subject


class CaCertAcl(_CertificateAttributeAcl):
    """``ca_cert ATTRIBUTE VALUE ...``: the client certificate's issuer."""

    name = "ca_cert"
    example = "O Example-Corp"

    def name_of(self, cert: x509.Certificate) -> x509.Name:
        return cert.issuer


class AtStepAcl(AclType):
    """``at_step SslBump1|SslBump2|SslBump3``: where SslBump is (a transaction that is not
    being bumped is at SslBump1, as in Squid; GeneratingCONNECT never happens here)."""

    name = "at_step"
    example = "SslBump1"
    NAMES = {s.lower(): s for s in (*STEPS, "GeneratingCONNECT")}

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.steps: set[str] = set()

    def add(self, value: str, where: str | None = None) -> None:
        step = self.NAMES.get(value.lower())
        if step is None:
            raise ValueError(f"unknown at_step step name '{value}' (SslBump1, SslBump2, SslBump3, GeneratingCONNECT)")
        self.steps.add(step)

    def match(self, ch: Checklist) -> bool:
        return ch.bump_step in self.steps


for _cls in (ServerNameAcl, ServerNameRegexAcl, SslErrorAcl, ServerCertFingerprintAcl, UserCertAcl, CaCertAcl,
             AtStepAcl):
    ACL_TYPES[_cls.name] = _cls

# Squid predefines these (cf.data.pre, acl DEFAULT lines)
PREDEFINED = (
    ("ssl::certHasExpired", "ssl_error", ["X509_V_ERR_CERT_HAS_EXPIRED"]),
    ("ssl::certNotYetValid", "ssl_error", ["X509_V_ERR_CERT_NOT_YET_VALID"]),
    ("ssl::certDomainMismatch", "ssl_error", ["SQUID_X509_V_ERR_DOMAIN_MISMATCH"]),
    ("ssl::certUntrusted", "ssl_error", ["X509_V_ERR_INVALID_CA", "X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN",
                                         "X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE",
                                         "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT",
                                         "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "X509_V_ERR_CERT_UNTRUSTED"]),
    ("ssl::certSelfSigned", "ssl_error", ["X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT"]),
)
