"""The TLS and SslBump directives, with Squid's syntax, registered in the one registry.

``ssl_bump``, ``sslproxy_cert_error``, ``sslproxy_cert_sign``,
``sslproxy_cert_adapt``, ``sslproxy_cert_sign_hash``, ``tls_outgoing_options``,
``https_port``, ``sslcrtd_program`` and ``sslcrtd_children`` (the TLS options
of ``http_port`` are read by :mod:`squidpy.tls.options` for
:func:`squidpy.config.values.parse_http_port`).  Files they name (the CA of an
``ssl-bump`` port, ``cafile=``) are read when the configuration loads, so a
wrong one is reported as ``FILE:LINE``.

The decisions the exchange asks of these lists (which signer, which
adaptations, whether a certificate problem may pass) are here too, as pure
functions.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from squidpy.acl.access import AccessList, AccessRule, matches
import squidpy.config.helper_directives  # noqa: F401  (the core and helper directives register first)
from squidpy.config.registry import APPEND, CUSTOM, Report, directive
from squidpy.config.values import parse_http_port, parse_size
from squidpy.helpers.protocol import ChildConfig
from squidpy.tls.bump import SslBumpRules
from squidpy.tls.certgen import HelperCommand
from squidpy.tls.options import TlsOptionError, TlsOptions

if TYPE_CHECKING:
    import ssl

    from cryptography import x509

    from squidpy.acl.checklist import Checklist
    from squidpy.config.loader import Config, ParseContext
    from squidpy.tls.errors import CertError
    from squidpy.tls.options import PortTls
    from squidpy.config.values import ListenAddress

SECTION = "TLS and SslBump"


# ---------------------------------------------------------------- ssl_bump

def _ssl_bump(args: list[str], ctx: ParseContext) -> None:
    ctx.config.ssl_bump.add(args, ctx.config.acls, ctx.where, ctx.text, ctx.warn)
    ctx.config.tls_used.setdefault("ssl_bump", ctx.where)


directive(
    "ssl_bump", "peek|stare|splice|bump|terminate|client-first|server-first|none [!]ACL ...", _ssl_bump, None,
    SECTION, kind=CUSTOM, empty=SslBumpRules,
    doc="""What to do with a CONNECT on an http_port with ssl-bump (or a connection to
    an intercepting https_port): splice (pass the encrypted bytes untouched, the
    default), bump (decrypt with a certificate minted for the site, so every request
    inside goes through http_access, the cache and the log with its https:// URL),
    peek or stare (read the client's, then the server's, hello first: peek keeps
    splicing possible, stare keeps bumping possible), or terminate (close). Rules are
    tried in order at each step (at_step SslBump1: the CONNECT; SslBump2: the client's
    hello with its SNI; SslBump3: the server's certificate), rules whose action cannot
    be taken at that step are skipped, and the first whose ACLs match decides.
    client-first, server-first and none are Squid's older actions (step 1 only); the
    oldest allow/deny lines are converted as Squid converts them.""",
)


def _onoff(args: list[str], ctx: ParseContext) -> bool:
    from squidpy.config.values import parse_onoff
    return parse_onoff(args)


directive(
    "bump_denied_connect", "on|off", _onoff, "on", SECTION, squid=False,
    doc="""squidpy extension. A CONNECT that http_access denies, on an http_port with ssl-bump
    and a CA, is bumped just far enough to show the deny page (or deny_info page or redirect)
    inside TLS, so the browser shows the organisation's page instead of its own connection
    error; it needs no ssl_bump line. Squid does this only when ssl_bump lines exist, which
    squidpy also does whatever this says. off: a denied CONNECT is refused with 403, as by
    Squid without ssl_bump lines.""",
)


# ---------------------------------------------------------------- certificate errors, signing, adaptation

def _cert_error(args: list[str], ctx: ParseContext) -> None:
    ctx.config.sslproxy_cert_error.add_rule(args, ctx.config.acls, ctx.where, ctx.text)
    ctx.config.tls_used.setdefault("sslproxy_cert_error", ctx.where)


directive(
    "sslproxy_cert_error", "allow|deny [!]ACL ...", _cert_error, None, SECTION, kind=CUSTOM,
    empty=lambda: AccessList("sslproxy_cert_error", empty_allows=False),
    doc="""Which problems with an origin's certificate to let through (allow), checked
    once per problem found; the ssl_error ACL names the problems (ssl::certHasExpired,
    ssl::certSelfSigned, X509_V_ERR_...). Without any line, every problem ends the
    transaction with ERR_SECURE_CONNECT_FAIL, saying why. Letting errors through is
    dangerous: the site may not be the one it claims to be.""",
)


@dataclass
class CertRule:
    """One sslproxy_cert_sign or sslproxy_cert_adapt line."""

    algorithm: str
    rule: AccessRule
    parameter: str | None = None         # setCommonName{CN}


def _cert_sign(args: list[str], ctx: ParseContext) -> None:
    from squidpy.tls.mint import SIGN_ALGORITHMS    # mint loads cryptography: only a TLS configuration needs it

    if not args:
        raise ValueError("expected: sslproxy_cert_sign signTrusted|signUntrusted|signSelf ACL ...")
    if args[0] not in SIGN_ALGORITHMS:
        raise ValueError(f"unknown cert signing algorithm '{args[0]}' ({', '.join(SIGN_ALGORITHMS)})")
    rule = AccessList("sslproxy_cert_sign").add_rule(["allow", *args[1:]], ctx.config.acls, ctx.where, ctx.text)
    ctx.config.sslproxy_cert_sign.append(CertRule(args[0], rule))
    ctx.config.tls_used.setdefault("sslproxy_cert_sign", ctx.where)


directive(
    "sslproxy_cert_sign", "signTrusted|signUntrusted|signSelf ACL ...", _cert_sign, None, SECTION, kind=CUSTOM,
    empty=list,
    doc="""How a minted certificate is signed, the first line whose ACLs match deciding:
    signTrusted (by the configured CA, which browsers trust), signUntrusted (by a CA
    nobody trusts, so the browser warns as it would have about the origin), signSelf
    (self-signed). After the configured lines come Squid's own: signUntrusted
    ssl::certUntrusted, signSelf ssl::certSelfSigned, signTrusted all.""",
)


def _cert_adapt(args: list[str], ctx: ParseContext) -> None:
    from squidpy.tls.mint import ADAPT_ALGORITHMS, MAX_CN   # mint loads cryptography: only a TLS configuration needs it

    if not args:
        raise ValueError("expected: sslproxy_cert_adapt setValidAfter|setValidBefore|setCommonName[{CN}] ACL ...")
    m = re.fullmatch(r"([A-Za-z]+)(?:\{([^}]*)\})?", args[0])
    algorithm, parameter = (m.group(1), m.group(2)) if m else (args[0], None)
    if m is None and "{" in args[0]:
        raise ValueError(f"'{args[0]}': a setCommonName parameter is written setCommonName{{NAME}}")
    if algorithm not in ADAPT_ALGORITHMS:
        raise ValueError(f"unknown cert adaptation algorithm '{algorithm}' ({', '.join(ADAPT_ALGORITHMS)})")
    if parameter is not None and algorithm != "setCommonName":
        raise ValueError(f"{algorithm} takes no parameter")
    if parameter is not None and len(parameter) > MAX_CN:
        raise ValueError(f"setCommonName{{{parameter}}}: a common name longer than {MAX_CN} bytes is not supported")
    rule = AccessList("sslproxy_cert_adapt").add_rule(["allow", *args[1:]], ctx.config.acls, ctx.where, ctx.text)
    ctx.config.sslproxy_cert_adapt.append(CertRule(algorithm, rule, parameter))
    ctx.config.tls_used.setdefault("sslproxy_cert_adapt", ctx.where)


directive(
    "sslproxy_cert_adapt", "setValidAfter|setValidBefore|setCommonName[{CN}] ACL ...", _cert_adapt, None, SECTION,
    kind=CUSTOM, empty=list,
    doc="""Changes to a minted certificate: setValidAfter and setValidBefore take the
    CA's validity dates instead of the origin's, setCommonName puts CN (or the CONNECT
    host) in the subject and subjectAltName. Within each algorithm the first line whose
    ACLs match applies.""",
)

_HASHES = ("sha1", "sha224", "sha256", "sha384", "sha512", "sha3-256", "sha3-384", "sha3-512")


def _sign_hash(args: list[str], ctx: ParseContext) -> str:
    if len(args) != 1 or args[0].lower() not in _HASHES:
        raise ValueError(f"expected one of: {', '.join(_HASHES)}")
    return args[0].lower()


directive(
    "sslproxy_cert_sign_hash", "sha256|sha384|sha512|sha1|...", _sign_hash, None, SECTION,
    doc="""The hash minted certificates are signed with (SHA-256 when not given, as in
    Squid).""",
)


# ---------------------------------------------------------------- origins

def _outgoing(args: list[str], ctx: ParseContext) -> None:
    if not args:
        raise ValueError("expected TLS options (cafile=, min-version=, options=, flags=, cipher= ...)")
    options = ctx.config.tls_outgoing_options
    try:
        for word in args:
            options.parse(word, ctx.warn, ctx.path)
    except TlsOptionError as e:
        raise ValueError(str(e)) from None
    if ctx.line.lineno:
        ctx.config.tls_used.setdefault("tls_outgoing_options", ctx.where)


directive(
    "tls_outgoing_options", "[cafile=FILE] [capath=DIR] [crlfile=FILE] [min-version=1.N] [options=...] "
    "[cipher=...] [flags=DONT_VERIFY_PEER|DONT_VERIFY_DOMAIN] [default-ca=off] [cert=FILE [key=FILE]] [disable]",
    _outgoing, "min-version=1.0", SECTION, kind=CUSTOM, empty=TlsOptions,
    doc="""TLS towards origins (https:// URLs and bumped connections). Origins' certificates
    are checked against the system's trusted CAs (default-ca=off: only those of cafile=
    and capath=) and must carry the host's name; a failure answers ERR_SECURE_CONNECT_FAIL
    with the reason, unless sslproxy_cert_error allows it. flags=DONT_VERIFY_PEER accepts
    any certificate, DONT_VERIFY_DOMAIN any name. min-version=1.2 refuses older TLS;
    options= takes OpenSSL option names (NO_TLSv1_1, NO_TICKET ...) joined by ':' or ',';
    cipher= an OpenSSL cipher list; cert= and key= a client certificate; disable refuses
    https:// URLs.""",
)


# ---------------------------------------------------------------- https_port

def _https_port(args: list[str], ctx: ParseContext) -> ListenAddress:
    port = parse_http_port(args, ctx.warn, ctx.path, https=True)
    ctx.config.tls_used.setdefault("https_port", ctx.where)
    return port


directive(
    "https_port", "[ADDRESS:]PORT [intercept|tproxy ssl-bump] tls-cert=FILE [tls-key=FILE] [tls-cafile=FILE] "
    "[TLS options] [name=NAME]",
    _https_port, None, SECTION, kind=APPEND,
    doc="""A port where browsers speak TLS to squidpy itself (an https:// proxy, which
    Chromium and curl support), with squidpy's certificate (tls-cert=, and tls-key= unless
    the key is in the same file). tls-cafile= (or clientca=) asks clients for a certificate
    signed by those CAs (the user_cert and ca_cert ACLs read it). With intercept (or
    tproxy) and ssl-bump, it takes the port-443 connections a gateway redirects: each
    enters SslBump as a CONNECT to the address the client connected to (tls-cert= is
    then the bumping CA), peeks at the TLS hello for the SNI, and splices, bumps or
    terminates as ssl_bump says (docs/intercept.md).""",
)


# ---------------------------------------------------------------- the certificate helper

@dataclass
class CrtdProgram:
    command: HelperCommand
    directory: str | None                # the certificate cache directory (-s)
    size: int                            # its size (-M)

    @property
    def internal(self) -> bool:
        return self.command.internal


def _crtd_program(args: list[str], ctx: ParseContext) -> CrtdProgram:
    try:
        command = HelperCommand.parse(ctx.rest)
    except ValueError as e:
        raise ValueError(str(e)) from None
    directory = command.option("-s")
    size_text = command.option("-M")
    try:
        size = parse_size([size_text], "byte") if size_text else 4 << 20
    except ValueError as e:
        raise ValueError(f"-M {size_text}: {e}") from None
    if command.internal:
        known = {"-s", "-M"}
        words = command.argv[1:]
        i = 0
        while i < len(words):
            flag = words[i][:2]
            if flag not in known:
                raise ValueError(f"'internal' takes -s DIRECTORY and -M SIZE, not '{words[i]}'")
            i += 1 if len(words[i]) > 2 else 2
        directory = ctx.path(directory) if directory else None
    else:
        program = command.argv[0]
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            raise ValueError(f"'{program}' is not a program squidpy can run (or write 'internal')")
    return CrtdProgram(command, directory, size)


directive(
    "sslcrtd_program", "internal|PROGRAM [-s DIRECTORY] [-M SIZE]", _crtd_program,
    "internal -s ${state_dir}/ssl_db -M 4MB", SECTION,
    doc="""Who mints certificates for bumped sites. 'internal' (squidpy's default) mints
    them in-process and keeps them in DIRECTORY (-s, mode 0700, keys 0600) up to SIZE (-M),
    besides the memory cache of each port (dynamic_cert_mem_cache_size). Naming Squid's
    security_file_certgen (or another program speaking its protocol) runs it as a helper
    instead, with these arguments; its database is created when missing.""",
)


def _crtd_children(args: list[str], ctx: ParseContext) -> ChildConfig:
    """Squid's helper children syntax (the one every helper uses), at most 32 run."""
    children = ChildConfig.parse(args, ctx.warn)
    if children.n_max > 32:
        ctx.warn(f"sslcrtd_children {children.n_max}: at most 32 helpers are run, as in Squid")
        children = dataclasses.replace(children, n_max=32, startup=min(children.startup, 32),
                                       idle=min(children.idle, 32))
    return children


directive(
    "sslcrtd_children", "N [startup=N] [idle=N] [queue-size=N]", _crtd_children, "32 startup=5 idle=1", SECTION,
    doc="""How many certificate helper processes may run (at most 32 are, as in Squid), when
    sslcrtd_program names a helper. squidpy's internal minter needs none.""",
)


# ---------------------------------------------------------------- decisions made from these lists

def sign_algorithm(config: Config, ch: Checklist) -> str:
    """sslproxy_cert_sign: the first configured line matching, then Squid's defaults
    (signUntrusted for ssl::certUntrusted, signSelf for ssl::certSelfSigned, else signTrusted)."""
    from squidpy.tls.mint import SIGN_SELF, SIGN_TRUSTED, SIGN_UNTRUSTED   # mint loads cryptography: bumping only

    for rule in config.sslproxy_cert_sign:
        if matches(rule.rule, ch):
            return rule.algorithm
    acls = config.acls
    if acls.predefined("ssl::certUntrusted").match(ch):
        return SIGN_UNTRUSTED
    if acls.predefined("ssl::certSelfSigned").match(ch):
        return SIGN_SELF
    return SIGN_TRUSTED


def cert_error_allowed(config: Config, ch: Checklist, error: CertError, peer_cert: x509.Certificate | None) -> bool:
    """sslproxy_cert_error, asked about one problem with an origin's certificate (fast
    ACLs only, as in Squid: one that would need a lookup counts as not matching)."""
    if not config.sslproxy_cert_error:
        return False
    saved = ch.ssl_errors, ch.server_cert
    ch.ssl_errors, ch.server_cert = (error,), peer_cert
    try:
        return config.sslproxy_cert_error.check(ch).allowed
    except Exception:           # a slow ACL (Pending) or an external one: not allowed
        return False
    finally:
        ch.ssl_errors, ch.server_cert = saved


def adaptations(config: Config, ch: Checklist, connect_host: str) -> dict[str, str | bool]:
    """sslproxy_cert_adapt: per algorithm, the first matching line; setCommonName's value is
    its parameter or the CONNECT host."""
    chosen: dict[str, str | bool] = {}
    for rule in config.sslproxy_cert_adapt:
        if rule.algorithm in chosen:
            continue
        if matches(rule.rule, ch):
            chosen[rule.algorithm] = (rule.parameter or connect_host) if rule.algorithm == "setCommonName" else True
    return chosen


def finish(config: Config, warn_at: Report, error_at: Report) -> None:
    """Checks that need the whole file: ssl_bump's implicit rule, the CAs of ssl-bump ports,
    the files of tls_outgoing_options and of cache_peers with tls."""
    where = config.tls_used.get("ssl_bump")
    if where:
        config.ssl_bump.finish(config.acls, where, lambda message: warn_at(where, message))
    for port in [*config.http_port, *config.https_port]:
        tls = port.tls
        if tls is None:
            continue
        if tls.ssl_bump:
            config.tls_used.setdefault("ssl-bump", port.where)
        if tls.certs:
            from squidpy.tls.ca import CaError, load_ca
            cert_file, key_file = tls.certs[0]
            try:
                if tls.ssl_bump and tls.generate_host_certificates:
                    ca = tls.ca = load_ca(cert_file, key_file)
                    for message in ca.warnings:
                        warn_at(port.where, f"{cert_file}: {message}")
                else:
                    _check_readable(cert_file, key_file)
                if port.https and port.interception is None:     # an intercepting one bumps: no static context
                    tls.server_context = _port_context(tls)
            except CaError as e:
                error_at(port.where, f"tls-cert={cert_file}: {e}")
    outgoing = config.tls_outgoing_options
    if not outgoing.disabled and (outgoing.cafiles or outgoing.capath or outgoing.crlfile or outgoing.certs
                                  or outgoing.cipher):
        from squidpy.tls.verify import TlsSetupError, client_context
        try:
            client_context(outgoing)
        except TlsSetupError as e:
            error_at(config.tls_used.get("tls_outgoing_options") or f"{config.source}:0",
                     f"tls_outgoing_options {e}")
    for peer in config.cache_peer:
        if peer.tls is not None:
            from squidpy.tls.verify import TlsSetupError, client_context
            try:
                client_context(peer.tls)
            except TlsSetupError as e:
                error_at(peer.where, f"cache_peer {peer.name} tls-{e}")


def _port_context(tls: PortTls) -> ssl.SSLContext:
    import ssl

    from squidpy.tls.ca import CaError
    from squidpy.tls.session import port_context
    try:
        return port_context(tls)
    except (ssl.SSLError, OSError) as e:
        raise CaError(f"OpenSSL cannot use it with tls-key={tls.certs[0][1]} and the port's options ({e})") from None


def _check_readable(cert_file: str, key_file: str) -> None:
    from squidpy.tls.ca import CaError
    for path in {cert_file, key_file}:
        if not os.access(path, os.R_OK):
            raise CaError(f"cannot read {path}")


__all__ = ["CertRule", "CrtdProgram", "adaptations", "cert_error_allowed", "finish", "sign_algorithm"]
