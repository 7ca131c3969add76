"""Named ACLs and access lists (``http_access`` and its kin), Squid's semantics.

* ``acl NAME TYPE [-flags] VALUE ...``: lines with one NAME accumulate values;
  NAME is compared without regard to (ASCII) case, as Squid compares it.
* ``http_access allow|deny [!]ACL ...``: the ACLs of a line are ANDed, ``!``
  negates, lines are tried in order and the first full match decides; when
  none matches the answer is the opposite of the last line's action, and an
  empty list answers with the list's default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from squidpy.acl import tls as tls_acls      # registers the TLS ACL types in ACL_TYPES
from squidpy.acl.checklist import AuthRequired, Checklist, Undecided
from squidpy.acl.types import ACL_TYPES, AclType, ManagerAcl, _Unusable

ACL_NAME_MAX = 63                  # Squid's ACL_NAME_SZ - 1
_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def acl_key(name: str) -> str:
    """How Squid finds an ACL by name: strcasecmp, ASCII letters only."""
    return name.translate(_FOLD)


class Acl:
    """A named ACL: one type, the values of every line that names it."""

    __slots__ = ("name", "type_name", "where", "matcher")

    def __init__(self, name: str, type_name: str, where: str, matcher: AclType):
        self.name = name
        self.type_name = type_name
        self.where = where
        self.matcher = matcher

    def match(self, ch: Checklist) -> bool:
        return self.matcher.match(ch)

    def __repr__(self) -> str:
        return f"<Acl {self.name} {self.type_name}>"


# Squid 5 defines these before reading squid.conf.
PREDEFINED = (
    ("all", "src", ["all"]),
    ("localhost", "src", ["127.0.0.1/32", "::1"]),
    ("to_localhost", "dst", ["127.0.0.0/8", "0.0.0.0/32", "::1/128", "::/128"]),
    ("to_linklocal", "dst", ["169.254.0.0/16", "fe80::/10"]),
    ("manager", "url_regex", ["-i", "^cache_object://", "+i", "^[^:]+://[^/]+/squid-internal-mgr/"]),
    ("CONNECT", "method", ["CONNECT"]),
    *tls_acls.PREDEFINED,
)


class AclTable:
    """Every ACL of a configuration, by name."""

    def __init__(self) -> None:
        self.acls: dict[str, Acl] = {}          # by acl_key(name)
        for name, type_name, values in PREDEFINED:
            acl = self.define(name, type_name, [], "<predefined>")
            if name == "manager":
                acl.matcher = ManagerAcl(frozenset())
            acl.matcher.begin_line(frozenset())
            for v in values:
                acl.matcher.add(v, None)
            acl.matcher.end_line()
            acl.matcher.finish()

    def define(self, name: str, type_name: str, flags: list[str], where: str) -> Acl:
        """The ACL called ``name`` (created on first use); raises ValueError."""
        if len(name) > ACL_NAME_MAX:
            raise ValueError(f"ACL name '{name}' is longer than {ACL_NAME_MAX} characters")
        cls = ACL_TYPES.get(type_name)
        if cls is None:
            raise ValueError(f"unknown ACL type '{type_name}'")
        bad = [f for f in flags if f.split("=", 1)[0] not in cls.flags_allowed]
        if bad:
            raise ValueError(f"ACL type '{type_name}' does not take the option '{bad[0]}'")
        acl = self.acls.get(acl_key(name))
        if acl is None:
            matcher = cls(frozenset(flags))
            matcher.table = self
            acl = Acl(name, type_name, where, matcher)
            self.acls[acl_key(name)] = acl
        elif acl.type_name != type_name:
            raise ValueError(
                f"ACL '{name}' is already defined as type '{acl.type_name}' at {acl.where}; "
                f"it cannot also be '{type_name}'"
            )
        return acl

    def define_unusable(self, name: str, type_name: str, where: str) -> None:
        """Hold the name of an ACL whose line was refused, so later lines naming it
        report nothing more (the configuration does not load anyway)."""
        if acl_key(name) not in self.acls:
            matcher = _Unusable()
            matcher.name = type_name
            self.acls[acl_key(name)] = Acl(name, type_name, where, matcher)

    def get(self, name: str) -> Acl | None:
        return self.acls.get(acl_key(name))

    def predefined(self, name: str) -> Acl:
        """One of Squid's predefined ACLs (PREDEFINED), which every table holds."""
        return self.acls[acl_key(name)]

    def names_method(self, method: str) -> bool:
        """Whether a ``method`` ACL lists ``method``: Squid honours PURGE only then
        (``acl Purge method PURGE``), whether or not http_access uses that ACL."""
        return any(acl.type_name == "method" and method in acl.matcher.words  # type: ignore[attr-defined]  # a MethodAcl
                   for acl in self.acls.values())


@dataclass
class AccessRule:
    """One ``http_access`` line."""

    allow: bool
    acls: list[tuple[bool, Acl]]      # (negated, acl)
    where: str
    text: str

    @property
    def action(self) -> str:
        return "allow" if self.allow else "deny"


@dataclass(frozen=True)
class Verdict:
    """The answer of an access list and why, for logs, deny_info and ``squidpy check``.

    Verdicts are made once per rule when the configuration loads, so a check
    allocates nothing.
    """

    allowed: bool
    rule: AccessRule | None = None
    implicit: bool = False

    @property
    def matched(self) -> list[str]:
        """The ACL names of the deciding line as written (with '!'), if it matched."""
        if self.rule is None or self.implicit:
            return []
        return [("!" if n else "") + a.name for n, a in self.rule.acls]

    @property
    def last_acl(self) -> str | None:
        """The ACL that completed the deciding line (Squid's deny_info key)."""
        if self.rule is None or not self.rule.acls:
            return None
        return self.rule.acls[-1][1].name


def matches(rule: AccessRule | None, ch: Checklist) -> bool:
    """Whether every ACL of a filter line matches (no filter matches everything);
    may raise :class:`Pending`."""
    if rule is None:
        return True
    for negated, acl in rule.acls:
        if acl.match(ch) == negated:
            return False
    return True


class AccessList:
    """An ordered list of allow/deny rules (``http_access``, ``cache`` ...)."""

    def __init__(self, name: str, empty_allows: bool = False):
        self.name = name
        self.empty_allows = empty_allows
        self.rules: list[AccessRule] = []
        self._decisions: list[tuple[AccessRule, Verdict]] = []
        self._default = Verdict(empty_allows, None, implicit=True)

    def add_rule(self, args: list[str], acls: AclTable, where: str, text: str,
                 allow_reply: bool = False, warn: Callable[[str], None] | None = None) -> AccessRule:
        """Parse ``allow|deny [!]ACL ...``; raises ValueError.

        A reply ACL where there is no reply yet (``allow_reply`` false) never
        matches, as in Squid ("assuming mismatch"); ``warn`` is told so."""
        if not args or args[0] not in ("allow", "deny"):
            raise ValueError(f"{self.name} needs 'allow' or 'deny' first")
        refs = []
        for word in args[1:]:
            negated = word.startswith("!")
            name = word[1:] if negated else word
            acl = acls.get(name)
            if acl is None:
                raise ValueError(f"ACL '{name}' is used before it is defined (define it with an 'acl {name} ...' line first)")
            if acl.matcher.reply and not allow_reply and warn is not None:
                warn(f"ACL '{name}' is of type '{acl.type_name}', which needs a reply; {self.name} is "
                     f"checked before there is one, so it never matches here (use http_reply_access)")
            refs.append((negated, acl))
        rule = AccessRule(args[0] == "allow", refs, where, text)
        self.rules.append(rule)
        self._decisions.append((rule, Verdict(rule.allow, rule)))
        self._default = Verdict(not rule.allow, rule, implicit=True)
        return rule

    def check(self, ch: Checklist) -> Verdict:
        """First full match decides; may raise :class:`Pending` for a lookup, or
        :class:`AuthRequired`/:class:`Undecided` naming the ACL that ended the check."""
        try:
            for rule, verdict in self._decisions:
                for negated, acl in rule.acls:
                    if acl.match(ch) == negated:
                        break
                else:
                    return verdict
        except (AuthRequired, Undecided) as ended:
            ended.acl = acl
            raise
        return self._default

    def explain(self, ch: Checklist) -> tuple[Verdict, list["Step"]]:
        """The same decision as :meth:`check`, with every ACL tried on the way
        (for ``squidpy check`` and for deny_info after an implicit deny)."""
        steps = []
        for rule, verdict in self._decisions:
            step = Step(rule, [])
            steps.append(step)
            for negated, acl in rule.acls:
                matched = acl.match(ch)
                step.tried.append((negated, acl, matched))
                if matched == negated:
                    break
            else:
                return verdict, steps
        return self._default, steps

    def __bool__(self) -> bool:
        return bool(self.rules)


@dataclass
class Step:
    """One line tried by :meth:`AccessList.explain`: its ACLs up to the first mismatch."""

    rule: AccessRule
    tried: list[tuple[bool, Acl, bool]]      # (negated, acl, the ACL matched)

    @property
    def last_acl(self) -> str | None:
        """The last ACL evaluated on this line (Squid's deny_info key on an implicit deny)."""
        return self.tried[-1][1].name if self.tried else None
