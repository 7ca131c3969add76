"""squidpy's LDAP helpers (ldap3), for machines without Squid's.

    auth_param basic program /usr/bin/squidpy-basic-ldap --uri ldap://dc1 \\
        --base ou=people,dc=example,dc=com --filter '(uid=%s)' \\
        --bind-dn cn=proxy,dc=example,dc=com --bind-password-file /etc/squidpy/ldap.pw
    external_acl_type ldap_group %LOGIN /usr/bin/squidpy-ext-ldap-group --uri ldap://dc1 \\
        --base ou=groups,dc=example,dc=com --filter '(&(cn=%g)(member=%u))' \\
        --user-base ou=people,dc=example,dc=com --user-filter '(uid=%s)'

squidpy-basic-ldap checks a password by binding as the user: the user's DN is
either made from a template (``--user-dn 'uid=%s,ou=people,dc=example,dc=com'``)
or found by a search (``--base`` and ``--filter``, optionally bound as a service
account).  squidpy-ext-ldap-group answers OK when the user is in one of the
groups the ACL names.  ``--starttls`` or an ``ldaps://`` URI protect the
password on the wire (``--ca FILE`` to trust a private CA).  An empty password
is always refused (LDAP would take it for an anonymous bind).  A server that
cannot be reached gives ``BH``, so squidpy asks again next time rather than
remembering a failure.
"""

from __future__ import annotations

import argparse
import ssl
import sys
from typing import TYPE_CHECKING

from squidpy.helpers.program import answer, serve

if TYPE_CHECKING:
    from ldap3 import Connection, Server


def _server(args: argparse.Namespace) -> Server:
    from ldap3 import Server, Tls
    tls = None
    if args.starttls or args.uri.startswith("ldaps://"):
        tls = Tls(validate=ssl.CERT_REQUIRED if not args.insecure else ssl.CERT_NONE,
                  ca_certs_file=args.ca, version=ssl.PROTOCOL_TLS_CLIENT)
    return Server(args.uri, use_ssl=args.uri.startswith("ldaps://"), tls=tls, connect_timeout=args.timeout)


def _connection(args: argparse.Namespace, server: Server, user: str | None = None,
                password: str | None = None) -> Connection:
    from ldap3 import Connection
    conn = Connection(server, user=user, password=password, receive_timeout=args.timeout,
                      raise_exceptions=False, auto_bind=False)
    conn.open()
    if args.starttls and not args.uri.startswith("ldaps://"):
        conn.start_tls()
    return conn


def _service_password(args: argparse.Namespace) -> str | None:
    if args.bind_password_file:
        with open(args.bind_password_file, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n")
    return None


def find_user_dn(args: argparse.Namespace, server: Server, user: str) -> str | None:
    """The user's DN: from the template, or the single entry a search finds."""
    from ldap3.utils.conv import escape_filter_chars
    from ldap3.utils.dn import escape_rdn
    if args.user_dn:
        made: str = args.user_dn.replace("%s", escape_rdn(user))
        return made
    conn = _connection(args, server, args.bind_dn, _service_password(args))
    try:
        if args.bind_dn and not conn.bind():
            raise ConnectionError("the service account could not bind")
        search_filter = args.filter.replace("%s", escape_filter_chars(user))
        conn.search(args.base, search_filter, attributes=[], size_limit=2)
        entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
        if len(entries) != 1:
            return None
        dn: str = entries[0]["dn"]
        return dn
    finally:
        conn.unbind()


def check_password(args: argparse.Namespace, user: str, password: str) -> str:
    from ldap3.core.exceptions import LDAPException
    if not password:
        return answer("ERR", message="Empty password")
    try:
        server = _server(args)
        dn = find_user_dn(args, server, user)
        if dn is None:
            return answer("ERR", message="No such user")
        conn = _connection(args, server, dn, password)
        try:
            ok = conn.bind()
        finally:
            conn.unbind()
    except (LDAPException, OSError, ConnectionError) as e:
        return answer("BH", message=f"LDAP server unavailable: {type(e).__name__}")
    return answer("OK") if ok else answer("ERR", message="Wrong password")


def check_groups(args: argparse.Namespace, user: str, groups: list[str]) -> str:
    from ldap3.core.exceptions import LDAPException
    from ldap3.utils.conv import escape_filter_chars
    try:
        server = _server(args)
        user_dn = user
        if args.user_base or args.user_dn:
            lookup = argparse.Namespace(**{**vars(args), "base": args.user_base or args.base,
                                           "filter": args.user_filter})
            found = find_user_dn(lookup, server, user)
            if found is None:
                return answer("ERR", message="No such user")
            user_dn = found
        conn = _connection(args, server, args.bind_dn, _service_password(args))
        try:
            if args.bind_dn and not conn.bind():
                return answer("BH", message="the service account could not bind")
            for group in groups:
                search_filter = (args.filter.replace("%u", escape_filter_chars(user_dn))
                                 .replace("%v", escape_filter_chars(user))
                                 .replace("%g", escape_filter_chars(group)))
                conn.search(args.base, search_filter, attributes=[], size_limit=1)
                if any(e.get("type") == "searchResEntry" for e in conn.response or []):
                    return answer("OK", tag=group)
        finally:
            conn.unbind()
    except (LDAPException, OSError, ConnectionError) as e:
        return answer("BH", message=f"LDAP server unavailable: {type(e).__name__}")
    return answer("ERR")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--uri", required=True, help="ldap://HOST[:PORT] or ldaps://HOST[:PORT]")
    parser.add_argument("--starttls", action="store_true", help="upgrade ldap:// with StartTLS")
    parser.add_argument("--ca", help="CA certificates file to verify the server with")
    parser.add_argument("--insecure", action="store_true", help="do not verify the server's certificate")
    parser.add_argument("--bind-dn", help="service account for searches")
    parser.add_argument("--bind-password-file", help="file whose first line is the service password")
    parser.add_argument("--timeout", type=int, default=10, help="seconds for connecting and each answer")
    parser.add_argument("--concurrency", action="store_true", help="lines start with a channel ID")


def basic_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="squidpy-basic-ldap", description="Basic authentication against LDAP")
    _common(parser)
    parser.add_argument("--user-dn", help="DN template, %%s is the user name (bind-as-user without search)")
    parser.add_argument("--base", help="where to search for the user")
    parser.add_argument("--filter", default="(uid=%s)", help="search filter, %%s is the user name")
    args = parser.parse_args(argv)
    if not args.user_dn and not args.base:
        parser.error("give --user-dn, or --base (and --filter) to search for the user")

    def handle(words: list[str]) -> str:
        if len(words) < 2:
            return answer("ERR", message="expected: user password")
        return check_password(args, words[0], words[1])
    return serve(handle, args.concurrency)


def group_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="squidpy-ext-ldap-group",
                                     description="external_acl_type helper: LDAP group membership")
    _common(parser)
    parser.add_argument("--base", required=True, help="where to search for groups")
    parser.add_argument("--filter", default="(&(objectClass=groupOfNames)(cn=%g)(member=%u))",
                        help="group filter: %%g the group, %%u the user's DN, %%v the user name")
    parser.add_argument("--user-base", help="search the user's DN here (for %%u)")
    parser.add_argument("--user-filter", default="(uid=%s)", help="user search filter, %%s is the user name")
    parser.add_argument("--user-dn", help="user DN template instead of a search, %%s is the user name")
    args = parser.parse_args(argv)

    def handle(words: list[str]) -> str:
        if len(words) < 2:
            return answer("ERR", message="expected: user group ...")
        return check_groups(args, words[0], words[1:])
    return serve(handle, args.concurrency)


if __name__ == "__main__":
    sys.exit(basic_main())
