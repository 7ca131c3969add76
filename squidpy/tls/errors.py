"""TLS errors in Squid's words: certificate validation errors, handshake failures,
and what ERR_SECURE_CONNECT_FAIL says about them.

Squid names certificate errors as OpenSSL does (``X509_V_ERR_CERT_HAS_EXPIRED``)
plus a few of its own (``SQUID_X509_V_ERR_DOMAIN_MISMATCH``, ``SQUID_TLS_ERR_CONNECT``);
the ``ssl_error`` ACL takes those names, a number, or a shortcut
(``ssl::certUntrusted`` ...).  An error page shows the name (``%x``, "TLS
code") and a detail sentence (``%D``) about the certificate at fault, with its
subject as ``X509_NAME_oneline`` writes it and dates as ``ASN1_TIME_print``
does.  Pure: certificates come in as ``cryptography`` objects.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING

from squidpy.tls.names import certificate_names

if TYPE_CHECKING:
    from cryptography import x509

# OpenSSL 3's X509_V_ERR_* codes (openssl/x509_vfy.h)
OPENSSL_CODES: dict[str, int] = {
    "X509_V_ERR_UNSPECIFIED": 1,
    "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT": 2,
    "X509_V_ERR_UNABLE_TO_GET_CRL": 3,
    "X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE": 4,
    "X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE": 5,
    "X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY": 6,
    "X509_V_ERR_CERT_SIGNATURE_FAILURE": 7,
    "X509_V_ERR_CRL_SIGNATURE_FAILURE": 8,
    "X509_V_ERR_CERT_NOT_YET_VALID": 9,
    "X509_V_ERR_CERT_HAS_EXPIRED": 10,
    "X509_V_ERR_CRL_NOT_YET_VALID": 11,
    "X509_V_ERR_CRL_HAS_EXPIRED": 12,
    "X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD": 13,
    "X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD": 14,
    "X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD": 15,
    "X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD": 16,
    "X509_V_ERR_OUT_OF_MEM": 17,
    "X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT": 18,
    "X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN": 19,
    "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY": 20,
    "X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE": 21,
    "X509_V_ERR_CERT_CHAIN_TOO_LONG": 22,
    "X509_V_ERR_CERT_REVOKED": 23,
    "X509_V_ERR_NO_ISSUER_PUBLIC_KEY": 24,
    "X509_V_ERR_PATH_LENGTH_EXCEEDED": 25,
    "X509_V_ERR_INVALID_PURPOSE": 26,
    "X509_V_ERR_CERT_UNTRUSTED": 27,
    "X509_V_ERR_CERT_REJECTED": 28,
    "X509_V_ERR_SUBJECT_ISSUER_MISMATCH": 29,
    "X509_V_ERR_AKID_SKID_MISMATCH": 30,
    "X509_V_ERR_AKID_ISSUER_SERIAL_MISMATCH": 31,
    "X509_V_ERR_KEYUSAGE_NO_CERTSIGN": 32,
    "X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER": 33,
    "X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION": 34,
    "X509_V_ERR_KEYUSAGE_NO_CRL_SIGN": 35,
    "X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION": 36,
    "X509_V_ERR_INVALID_NON_CA": 37,
    "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED": 38,
    "X509_V_ERR_KEYUSAGE_NO_DIGITAL_SIGNATURE": 39,
    "X509_V_ERR_PROXY_CERTIFICATES_NOT_ALLOWED": 40,
    "X509_V_ERR_INVALID_EXTENSION": 41,
    "X509_V_ERR_INVALID_POLICY_EXTENSION": 42,
    "X509_V_ERR_NO_EXPLICIT_POLICY": 43,
    "X509_V_ERR_DIFFERENT_CRL_SCOPE": 44,
    "X509_V_ERR_UNSUPPORTED_EXTENSION_FEATURE": 45,
    "X509_V_ERR_UNNESTED_RESOURCE": 46,
    "X509_V_ERR_PERMITTED_VIOLATION": 47,
    "X509_V_ERR_EXCLUDED_VIOLATION": 48,
    "X509_V_ERR_SUBTREE_MINMAX": 49,
    "X509_V_ERR_APPLICATION_VERIFICATION": 50,
    "X509_V_ERR_UNSUPPORTED_CONSTRAINT_TYPE": 51,
    "X509_V_ERR_UNSUPPORTED_CONSTRAINT_SYNTAX": 52,
    "X509_V_ERR_UNSUPPORTED_NAME_SYNTAX": 53,
    "X509_V_ERR_CRL_PATH_VALIDATION_ERROR": 54,
    "X509_V_ERR_PATH_LOOP": 55,
    "X509_V_ERR_SUITE_B_INVALID_VERSION": 56,
    "X509_V_ERR_SUITE_B_INVALID_ALGORITHM": 57,
    "X509_V_ERR_SUITE_B_INVALID_CURVE": 58,
    "X509_V_ERR_SUITE_B_INVALID_SIGNATURE_ALGORITHM": 59,
    "X509_V_ERR_SUITE_B_LOS_NOT_ALLOWED": 60,
    "X509_V_ERR_SUITE_B_CANNOT_SIGN_P_384_WITH_P_256": 61,
    "X509_V_ERR_HOSTNAME_MISMATCH": 62,
    "X509_V_ERR_EMAIL_MISMATCH": 63,
    "X509_V_ERR_IP_ADDRESS_MISMATCH": 64,
    "X509_V_ERR_DANE_NO_MATCH": 65,
    "X509_V_ERR_EE_KEY_TOO_SMALL": 66,
    "X509_V_ERR_CA_KEY_TOO_SMALL": 67,
    "X509_V_ERR_CA_MD_TOO_WEAK": 68,
    "X509_V_ERR_INVALID_CALL": 69,
    "X509_V_ERR_STORE_LOOKUP": 70,
    "X509_V_ERR_NO_VALID_SCTS": 71,
    "X509_V_ERR_PROXY_SUBJECT_NAME_VIOLATION": 72,
    "X509_V_ERR_OCSP_VERIFY_NEEDED": 73,
    "X509_V_ERR_OCSP_VERIFY_FAILED": 74,
    "X509_V_ERR_OCSP_CERT_UNKNOWN": 75,
    "X509_V_ERR_UNSUPPORTED_SIGNATURE_ALGORITHM": 76,
    "X509_V_ERR_SIGNATURE_ALGORITHM_MISMATCH": 77,
    "X509_V_ERR_SIGNATURE_ALGORITHM_INCONSISTENCY": 78,
    "X509_V_ERR_INVALID_CA": 79,
    "X509_V_ERR_PATHLEN_INVALID_FOR_NON_CA": 80,
    "X509_V_ERR_PATHLEN_WITHOUT_KU_KEY_CERT_SIGN": 81,
    "X509_V_ERR_KU_KEY_CERT_SIGN_INVALID_FOR_NON_CA": 82,
    "X509_V_ERR_ISSUER_NAME_EMPTY": 83,
    "X509_V_ERR_SUBJECT_NAME_EMPTY": 84,
    "X509_V_ERR_MISSING_AUTHORITY_KEY_IDENTIFIER": 85,
    "X509_V_ERR_MISSING_SUBJECT_KEY_IDENTIFIER": 86,
    "X509_V_ERR_EMPTY_SUBJECT_ALT_NAME": 87,
    "X509_V_ERR_EMPTY_SUBJECT_SAN_NOT_CRITICAL": 88,
    "X509_V_ERR_CA_BCONS_NOT_CRITICAL": 89,
    "X509_V_ERR_AUTHORITY_KEY_IDENTIFIER_CRITICAL": 90,
    "X509_V_ERR_SUBJECT_KEY_IDENTIFIER_CRITICAL": 91,
    "X509_V_ERR_CA_CERT_MISSING_KEY_USAGE": 92,
    "X509_V_ERR_EXTENSIONS_REQUIRE_VERSION_3": 93,
    "X509_V_ERR_EC_KEY_EXPLICIT_PARAMS": 94,
}

# Squid's own codes (src/security/forward.h: negative, from INT_MIN up)
_SQUID_BASE = -(2 ** 31)
SQUID_TLS_ERR_ACCEPT = _SQUID_BASE + 1
SQUID_TLS_ERR_CONNECT = _SQUID_BASE + 2
SQUID_X509_V_ERR_CERT_CHANGE = _SQUID_BASE + 3
SQUID_X509_V_ERR_DOMAIN_MISMATCH = _SQUID_BASE + 4
SQUID_X509_V_ERR_INFINITE_VALIDATION = _SQUID_BASE + 5
SQUID_CODES: dict[str, int] = {
    "SQUID_TLS_ERR_ACCEPT": SQUID_TLS_ERR_ACCEPT,
    "SQUID_TLS_ERR_CONNECT": SQUID_TLS_ERR_CONNECT,
    "SQUID_X509_V_ERR_CERT_CHANGE": SQUID_X509_V_ERR_CERT_CHANGE,
    "SQUID_X509_V_ERR_DOMAIN_MISMATCH": SQUID_X509_V_ERR_DOMAIN_MISMATCH,
    "SQUID_X509_V_ERR_INFINITE_VALIDATION": SQUID_X509_V_ERR_INFINITE_VALIDATION,
}
CODES: dict[str, int] = {**OPENSSL_CODES, **SQUID_CODES}
NAMES: dict[int, str] = {code: name for name, code in CODES.items()}
LEGACY_NAMES = {"SQUID_ERR_SSL_HANDSHAKE": SQUID_TLS_ERR_CONNECT}

X509_V_ERR_CERT_NOT_YET_VALID = OPENSSL_CODES["X509_V_ERR_CERT_NOT_YET_VALID"]
X509_V_ERR_CERT_HAS_EXPIRED = OPENSSL_CODES["X509_V_ERR_CERT_HAS_EXPIRED"]
X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT = OPENSSL_CODES["X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT"]
X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = OPENSSL_CODES["X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY"]

# ssl_error shortcuts, usable with or without "ssl::" (and predefined as ACLs with it)
SHORTCUTS: dict[str, tuple[int, ...]] = {
    "certHasExpired": (X509_V_ERR_CERT_HAS_EXPIRED,),
    "certNotYetValid": (X509_V_ERR_CERT_NOT_YET_VALID,),
    "certDomainMismatch": (SQUID_X509_V_ERR_DOMAIN_MISMATCH,),
    "certUntrusted": tuple(OPENSSL_CODES[n] for n in (
        "X509_V_ERR_INVALID_CA", "X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN", "X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE",
        "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT", "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
        "X509_V_ERR_CERT_UNTRUSTED")),
    "certSelfSigned": (X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT,),
}


def parse_error_name(text: str) -> tuple[int, ...]:
    """The codes an ``ssl_error`` value stands for; raises ValueError for an unknown name."""
    if text[:1].isdigit():
        try:
            value = int(text, 0)
        except ValueError:
            raise ValueError(f"'{text}' is not a TLS error number") from None
        return (value,)
    short = text[5:] if text.startswith("ssl::") else text
    if short in SHORTCUTS:
        return SHORTCUTS[short]
    code = CODES.get(text, LEGACY_NAMES.get(text))
    if code is None:
        raise ValueError(f"unknown TLS error name '{text}'")
    return (code,)


def error_name(code: int) -> str:
    return NAMES.get(code) or f"SSL_ERR={code}"


# (short description, detail sentence) for the errors origins really produce; the
# detail's %-codes are those of Squid's error-details.txt
_WORDS: dict[str, tuple[str, str]] = {
    "SQUID_TLS_ERR_ACCEPT": ("Failed to accept a secure connection", "%ssl_error_descr: %ssl_lib_error"),
    "SQUID_TLS_ERR_CONNECT": ("Failed to establish a secure connection", "%ssl_error_descr: %ssl_lib_error"),
    "SQUID_X509_V_ERR_DOMAIN_MISMATCH": ("Certificate does not match domainname", "%ssl_error_descr: %ssl_subject"),
    "SQUID_X509_V_ERR_CERT_CHANGE": ("Certificate changed since it was peeked at", "%ssl_error_descr: %ssl_subject"),
    "SQUID_X509_V_ERR_INFINITE_VALIDATION": ("Certificate validation does not end", "%ssl_error_descr: %ssl_subject"),
    "X509_V_ERR_CERT_HAS_EXPIRED": ("Certificate has expired", "SSL Certificate expired on: %ssl_notafter"),
    "X509_V_ERR_CERT_NOT_YET_VALID": ("Certificate is not yet valid",
                                      "SSL Certificate is not valid before: %ssl_notbefore"),
    "X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT": ("Self signed certificate", "Self-signed SSL Certificate: %ssl_subject"),
    "X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN": ("Self signed certificate in certificate chain",
                                             "Self-signed SSL Certificate in chain: %ssl_subject"),
    "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT": ("Unable to get issuer certificate",
                                             "SSL Certificate error: certificate issuer (CA) not known: %ssl_ca_name"),
    "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY": (
        "Unable to get local issuer certificate",
        "SSL Certificate error: certificate issuer (CA) not known: %ssl_ca_name"),
    "X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE": ("Unable to verify the first certificate",
                                                   "%ssl_error_descr: %ssl_subject"),
    "X509_V_ERR_INVALID_CA": ("Invalid CA certificate", "%ssl_error_descr: %ssl_ca_name"),
    "X509_V_ERR_CERT_REVOKED": ("Certificate revoked", "%ssl_error_descr: %ssl_subject"),
    "X509_V_ERR_CERT_SIGNATURE_FAILURE": ("Certificate signature failure", "%ssl_error_descr: %ssl_subject"),
    "X509_V_ERR_INVALID_PURPOSE": ("Unsupported certificate purpose", "%ssl_error_descr: %ssl_subject"),
    "X509_V_ERR_CERT_UNTRUSTED": ("Certificate not trusted", "%ssl_error_descr: %ssl_subject"),
}


def description(code: int) -> str:
    """A short sentence for the error (%ssl_error_descr)."""
    name = error_name(code)
    if name in _WORDS:
        return _WORDS[name][0]
    if code > 0:
        return _openssl_words(code)
    return "[Not available]"


def _openssl_words(code: int) -> str:
    """OpenSSL's own sentence for a verification code, capitalised."""
    try:
        from OpenSSL._util import ffi, lib
        text = ffi.string(lib.X509_verify_cert_error_string(code)).decode("latin-1")
    except Exception:
        return f"Certificate error {code}"
    return text[:1].upper() + text[1:]


def x509_name_oneline(name: x509.Name) -> str:
    """``/C=US/O=Example/CN=www.example.com``, as OpenSSL's X509_NAME_oneline writes it."""
    parts = []
    for rdn in name.rdns:
        for attr in rdn:
            key = attr.rfc4514_attribute_name
            short = _ONELINE_KEYS.get(attr.oid.dotted_string, key)
            value = attr.value if isinstance(attr.value, str) else attr.value.hex()
            if not value.isascii() or not value.isprintable():
                # OpenSSL writes bytes outside 32..126 as \xHH: a name stays one line
                value = "".join(chr(b) if 32 <= b <= 126 else f"\\x{b:02X}" for b in value.encode("utf-8"))
            parts.append(f"/{short}={value}")
    return "".join(parts)


_ONELINE_KEYS = {
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU",
    "1.2.840.113549.1.9.1": "emailAddress", "2.5.4.5": "serialNumber", "0.9.2342.19200300.100.1.25": "DC",
    "2.5.4.9": "street", "2.5.4.17": "postalCode", "2.5.4.4": "SN", "2.5.4.42": "GN", "2.5.4.12": "title",
}


def asn1_time_print(when: datetime.datetime) -> str:
    """``Jan  1 00:00:00 2030 GMT``, as OpenSSL's ASN1_TIME_print writes a time."""
    when = when.astimezone(datetime.timezone.utc) if when.tzinfo else when
    return f"{when.strftime('%b')} {when.day:2d} {when.strftime('%H:%M:%S')} {when.year} GMT"


@dataclass(frozen=True)
class CertError:
    """One problem with a certificate chain: the code, the certificate at fault
    (the origin's own, or one up its chain) and its depth (0: the origin's)."""

    code: int
    cert: x509.Certificate | None = None
    depth: int = 0

    @property
    def name(self) -> str:
        return error_name(self.code)


@dataclass(frozen=True)
class TlsFailure:
    """Why a secure connection failed, as ERR_SECURE_CONNECT_FAIL tells it.

    ``errors``: every certificate problem found (what ``ssl_error`` ACLs match);
    ``code``: the one the page names (the first that was not bypassed);
    ``lib_error``: the TLS library's own words for a handshake failure."""

    code: int
    errors: tuple[CertError, ...] = ()
    peer_cert: x509.Certificate | None = None
    broken_cert: x509.Certificate | None = None
    lib_error: str | None = None
    system_error: str | None = None      # "(104) Connection reset by peer" when the socket failed

    @property
    def name(self) -> str:
        return error_name(self.code)

    @property
    def errno_text(self) -> str:
        """%E: the system error if there was one; "[No Error]" otherwise, as Squid 5.7 shows it."""
        return self.system_error or "[No Error]"

    def detail(self) -> str:
        """%D: one sentence about the failure and the certificate at fault."""
        name = self.name
        template = _WORDS[name][1] if name in _WORDS else (
            "%ssl_error_descr: %ssl_subject" if self.code > 0 else "SSL handshake error (%err_name)")
        values = {
            "ssl_subject": self._cert_field(lambda c: x509_name_oneline(c.subject)),
            "ssl_ca_name": self._cert_field(lambda c: x509_name_oneline(c.issuer)),
            "ssl_cn": self._cert_field(lambda c: ", ".join(certificate_names(c)) or None),
            "ssl_notbefore": self._cert_field(lambda c: asn1_time_print(c.not_valid_before_utc)),
            "ssl_notafter": self._cert_field(lambda c: asn1_time_print(c.not_valid_after_utc)),
            "err_name": name,
            "ssl_error_descr": description(self.code),
            "ssl_lib_error": self.lib_error or "[No Error]",
        }
        out = []
        i = 0
        while i < len(template):
            if template[i] == "%":
                for key in sorted(values, key=len, reverse=True):
                    if template.startswith(key, i + 1):
                        out.append(values[key])
                        i += 1 + len(key)
                        break
                else:
                    out.append("%")
                    i += 1
                continue
            out.append(template[i])
            i += 1
        return "".join(out)

    def brief(self) -> str:
        """%x (the page's TLS code) and the log's error detail: the name, ``+broken_cert``
        when a certificate is at fault, as Squid 5.7 writes it."""
        return self.name + ("+broken_cert" if self.broken_cert is not None else "")

    def _cert_field(self, get) -> str:
        cert = self.broken_cert or self.peer_cert
        if cert is None:
            return "[Not available]"
        try:
            value = get(cert)
        except ValueError:
            value = None
        return value or "[Not available]"
