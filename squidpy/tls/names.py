"""Host names against certificates and domain lists, matched the way Squid matches them.

Squid has one comparison for all of this, ``matchDomainName``, with two
variants: checking an origin's certificate (a ``*`` in the certificate covers
one label, and Squid also lets ``*.example.com`` stand for ``example.com``)
and ``ssl::server_name`` (a certificate's ``*.example.com`` matches any ACL
entry ending in ``.example.com``).  Certificate names are every subject CN
and every DNS subjectAltName, in that order, as Squid reads them; a name
holding a NUL byte never matches.  squidpy adds one thing: a host written as
an IP address also matches an IP address subjectAltName (Squid compares
addresses as text against CN and DNS names only, so it refuses such
certificates).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509


def match_domain_name(host: str, domain: str, honor_wildcards: bool = False,
                      reject_subsub: bool = False) -> bool:
    """Squid's matchDomainName: does ``domain`` (an ACL entry or certificate name,
    ``.example.com`` covering subdomains) cover ``host``?

    ``honor_wildcards``: ``host`` may be a certificate name ``*.example.com``, which
    then matches any ``domain`` ending in ``.example.com``.  ``reject_subsub``: a
    ``.example.com`` domain covers one more label only (``a.example.com``, not
    ``a.b.example.com``), and not a ``host`` written with a leading dot."""
    host_has_subdomains = host.startswith(".")
    h = host.lstrip(".").lower()
    d = domain.lower()
    if not h or not d:
        return False
    common = 0
    while common < len(h) and common < len(d) and h[-1 - common] == d[-1 - common]:
        common += 1
    if common == len(h) and common == len(d):
        return True
    if common == len(h):                 # the host is the domain without its leading dot
        return len(d) == common + 1 and d[0] == "."
    if common == len(d):                 # the domain is a suffix of the host
        if d[0] != ".":
            return False
        if reject_subsub:
            return "." not in h[:len(h) - common] and not host_has_subdomains
        return True
    at = len(h) - 1 - common             # first differing character, from the end
    return honor_wildcards and h[at] == "*" and at + 1 < len(h) and h[at + 1] == "."


def certificate_names(cert: x509.Certificate) -> list[str]:
    """Every subject CN, then every DNS subjectAltName, as Squid lists them (names
    holding a NUL byte or longer than 1023 characters left out)."""
    from cryptography import x509       # here: a proxy that never meets a certificate never loads it
    from cryptography.x509.oid import NameOID

    names = []
    for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attr.value if isinstance(attr.value, str) else attr.value.decode("latin-1")
        names.append(value)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        san = None
    if san is not None:
        names.extend(san.get_values_for_type(x509.DNSName))
    return [n for n in names if n and "\0" not in n and len(n) < 1024]


def certificate_addresses(cert: x509.Certificate) -> list[str]:
    from cryptography import x509       # here: a proxy that never meets a certificate never loads it

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return [str(a) for a in san.get_values_for_type(x509.IPAddress)]


def certificate_matches_host(cert: x509.Certificate, host: str) -> bool:
    """Squid's check of an origin certificate against the name it was asked for
    (its SQUID_X509_V_ERR_DOMAIN_MISMATCH when False)."""
    host = host.strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and any(ipaddress.ip_address(a) == address for a in certificate_addresses(cert)):
        return True
    for name in certificate_names(cert):
        pattern = name[1:] if name.startswith("*") else name
        if match_domain_name(host, pattern, reject_subsub=True):
            return True
    return False
