"""ACL types that need a helper: proxy_auth, proxy_auth_regex, max_user_ip,
ext_user, ext_user_regex and external (Squid 5.7: src/auth/Acl*.cc,
src/acl/MaxUserIp.cc, src/external_acl.cc).

They read facts the caller fills in once a helper has answered: ``ch.auth``
(the request's authentication outcome, ``None`` until examined: the ACL asks
``ch.authenticate`` for credentials known at once, else raises :class:`Pending`
``"auth"``), ``ch.user``, ``ch.user_ip_count``,
``ch.ext_user`` and ``ch.external`` (answers by request line: an unanswered
line raises :class:`ExternalPending`).  Without valid credentials an
authentication ACL raises :class:`AuthRequired`: the client is challenged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from squidpy.acl.checklist import Checklist, ExternalPending, Undecided, authenticated_user
from squidpy.acl.types import AclType, AclWarning, _RegexAcl
from squidpy.auth.cache import forget_addresses

if TYPE_CHECKING:
    from squidpy.helpers.external import ExternalAclType


class ProxyAuthAcl(AclType):
    """``proxy_auth``: the authenticated user (REQUIRED: any valid user)."""

    name = "proxy_auth"
    needs: str | None = "auth"
    auth = True
    flags_allowed = frozenset({"-i"})
    example = "REQUIRED"

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.users: set[str] = set()
        self.required = False
        self._where: list[tuple[str | None, str]] = []

    def add(self, value: str, where: str | None = None) -> None:
        if value == "REQUIRED":
            self.required = True
        else:
            self.users.add(value)
        self._where.append((where, value))

    def finish(self) -> list[AclWarning]:
        if "-i" in self.flags:
            self.users = {u.lower() for u in self.users}
        if self.required and self.users:
            return [(None, "REQUIRED matches every user: the names listed with it change nothing")]
        return []

    def match(self, ch: Checklist) -> bool:
        user = authenticated_user(ch)
        if user is None:
            return False
        if self.required:
            return True
        return (user.lower() if "-i" in self.flags else user) in self.users


class _UserRegexAcl(_RegexAcl):
    """A user name against POSIX extended regular expressions, read and joined as
    Squid reads them (its RegexData, as url_regex)."""


class ProxyAuthRegexAcl(_UserRegexAcl):
    """``proxy_auth_regex``: the authenticated user matches a regular expression."""

    name = "proxy_auth_regex"
    needs = "auth"
    auth = True
    example = "-i ^admin"

    def match(self, ch: Checklist) -> bool:
        user = authenticated_user(ch)
        return user is not None and self.search(user)


class MaxUserIpAcl(AclType):
    """``max_user_ip [-s] N``: the user has come from more than N addresses within
    authenticate_ip_ttl (-s: strict; the caller then forgets only the address that
    went over, else all of the user's addresses, as Squid does)."""

    name = "max_user_ip"
    needs = "auth"
    flags_allowed = frozenset({"-s"})
    example = "-s 2"

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.maximum: int | None = None

    def add(self, value: str, where: str | None = None) -> None:
        if not value.isdigit():
            raise ValueError(f"max_user_ip needs a number, not '{value}'")
        self.maximum = int(value)

    def finish(self) -> list[AclWarning]:
        if self.maximum is None:
            raise ValueError("max_user_ip needs a number")
        return []

    @property
    def strict(self) -> bool:
        return "-s" in self.flags

    def match(self, ch: Checklist) -> bool:
        # finish() refused the ACL without a maximum; a user means ch.auth is set
        if authenticated_user(ch) is None or ch.user_ip_count <= self.maximum:  # type: ignore[operator]
            return False
        entry = ch.auth.entry  # type: ignore[union-attr]
        if entry is not None:
            forget_addresses(entry, ch.src, self.strict)
        return True


class ExtUserAcl(ProxyAuthAcl):
    """``ext_user``: the user name an external ACL helper returned (user=)."""

    name = "ext_user"
    needs = None
    auth = False
    example = "alice bob"

    def match(self, ch: Checklist) -> bool:
        user = ch.ext_user
        if user is None:
            return False
        if self.required:
            return True
        return (user.lower() if "-i" in self.flags else user) in self.users


class ExtUserRegexAcl(_UserRegexAcl):
    """``ext_user_regex``: the external ACL helper's user= matches a regular expression."""

    name = "ext_user_regex"
    example = "^a"

    def match(self, ch: Checklist) -> bool:
        return self.search(ch.ext_user)


class ExternalAcl(AclType):
    """``external TYPE [ARG ...]``: asks the external_acl_type TYPE's helper (answers
    are cached by request line for its ttl).  Its type is bound once the whole
    configuration is read (:meth:`bind`)."""

    name = "external"
    needs = "external"
    example = "ldap_group Staff"

    def __init__(self, flags: frozenset[str] = frozenset()) -> None:
        super().__init__(flags)
        self.type_name = ""                 # the external_acl_type, the line's first value
        self.args: list[str] = []
        self.definition: ExternalAclType | None = None     # bound by bind()
        self.acl_name = ""

    def add(self, value: str, where: str | None = None) -> None:
        if not self.type_name:
            self.type_name = value
        else:
            self.args.append(value)

    def bind(self, definitions: Mapping[str, ExternalAclType], acl_name: str) -> None:
        if not self.type_name:
            raise ValueError("external needs the name of an external_acl_type")
        definition = definitions.get(self.type_name)
        if definition is None:
            raise ValueError(f"external_acl_type '{self.type_name}' not found")
        self.definition = definition
        self.acl_name = acl_name

    @property
    def auth(self) -> bool:
        return self.definition is not None and self.definition.require_auth

    def match(self, ch: Checklist) -> bool:
        from squidpy.helpers.external import NoLogin, apply_reply
        from squidpy.helpers.protocol import ERR, OK
        try:
            # bound when the configuration was read (finish_config), before any request
            line = self.definition.request_line(ch, self.acl_name, self.args)  # type: ignore[union-attr]
        except NoLogin:
            return False
        answer = ch.external.get((self.type_name, line))
        if answer is None:
            raise ExternalPending(self.type_name, line)
        result, notes = answer
        matched = apply_reply(ch, result, notes)
        if result not in (OK, ERR):
            # the helper could not answer (BH, died, timed out, overloaded): Squid ends
            # the check here without an answer, which denies
            raise Undecided(next((v for k, v in notes if k == "message"), "") or f"{self.type_name} failed")
        return matched


AUTH_ACL_TYPES = {cls.name: cls for cls in (ProxyAuthAcl, ProxyAuthRegexAcl, MaxUserIpAcl, ExtUserAcl,
                                           ExtUserRegexAcl, ExternalAcl)}


def is_auth_acl(matcher: AclType) -> bool:
    """A denial decided by this ACL challenges the client (Squid's isProxyAuth)."""
    return bool(getattr(matcher, "auth", False))
