"""``ssl_bump``: which action applies to a CONNECT at which step, as Squid decides.

SslBump looks at a connection three times (``at_step``):

* **SslBump1**: the CONNECT request is known (host and port; nothing of TLS yet);
* **SslBump2**: the client's ClientHello has been read (SNI, ALPN);
* **SslBump3**: the origin's first flight has been read (its certificate, unless
  it speaks TLS 1.3).

At each step every ``ssl_bump`` rule is considered in order; a rule whose
action is impossible at that step is skipped (Squid's "banned" actions), the
first rule whose ACLs all match decides, and with no match the connection is
spliced (or, at step 3 after ``stare``, bumped).  ``peek`` and ``stare`` at
steps 1 and 2 mean "look further": after peeking at the server (step 2) the
connection can still be spliced but no longer bumped, after staring it can be
bumped but no longer spliced.  ``bump`` at step 1 is Squid's client-first
(the certificate is minted from the CONNECT host or SNI, without asking the
origin), at step 2 it is server-first with the SNI known.  The old actions
(``client-first``, ``server-first``, ``none``) count only at step 1, and the
older ``allow``/``deny`` lines are converted as Squid converts them.

Everything here is pure: rules, a checklist, a step in; a :class:`Decision`
out.  An ACL that needs a lookup raises :class:`~squidpy.acl.checklist.Pending`
as anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from squidpy.acl.access import AccessList, AccessRule, matches
from squidpy.acl.checklist import Checklist
from squidpy.acl.tls import STEP1, STEP2, STEP3

PEEK, STARE, SPLICE, BUMP, TERMINATE = "peek", "stare", "splice", "bump", "terminate"
CLIENT_FIRST, SERVER_FIRST, NONE = "client-first", "server-first", "none"
ACTIONS = (PEEK, STARE, SPLICE, BUMP, TERMINATE, CLIENT_FIRST, SERVER_FIRST, NONE)

# Actions that cannot be taken at a step (Squid's banAction calls).
BANNED = {
    STEP1: frozenset(),
    STEP2: frozenset({NONE, CLIENT_FIRST, SERVER_FIRST}),
    STEP3: frozenset({NONE, PEEK, STARE, CLIENT_FIRST, SERVER_FIRST}),
}

# What happens next, once a step has decided.
TUNNEL = "tunnel"                        # pass bytes untouched (TCP_TUNNEL)
CLOSE = "close"                          # terminate: close the client (and origin) connections
READ_CLIENT_HELLO = "read-client-hello"  # go to step 2
PEEK_AT_SERVER = "peek-at-server"        # send the client's own hello to the origin, go to step 3
STARE_AT_SERVER = "stare-at-server"      # our own handshake with the origin, go to step 3
BUMP_CLIENT_FIRST = "bump-client-first"  # TLS with the client now, certificate from the name alone
BUMP_SERVER_FIRST = "bump-server-first"  # TLS with the origin, then with the client (mimicking)
BUMP_NOW = "bump"                        # step 3: finish the origin's handshake, then the client's


class SslBumpError(ValueError):
    pass


@dataclass
class BumpRule:
    action: str
    rule: AccessRule                     # the ACLs (as an allow line), where and text

    @property
    def where(self) -> str:
        return self.rule.where

    @property
    def text(self) -> str:
        return self.rule.text


@dataclass(frozen=True)
class Decision:
    """What a step decided: the action (for the log's %ssl::bump_mode), the rule that
    said so (None: no rule matched, the default applied), and what happens next."""

    step: str
    action: str
    next: str
    rule: BumpRule | None = None


class SslBumpRules:
    """The ``ssl_bump`` lines of a configuration."""

    def __init__(self):
        self.rules: list[BumpRule] = []
        self._style: str | None = None
        self._last_old: str | None = None

    def __bool__(self) -> bool:
        return bool(self.rules)

    def add(self, args: list[str], acls, where: str, text: str, warn) -> BumpRule:
        """Parse ``ACTION [!]ACL ...``; raises ValueError."""
        if not args:
            raise SslBumpError("expected: ssl_bump ACTION [!]ACL ...")
        word = args[0]
        if word == "allow":
            warn('SECURITY NOTICE: auto-converting deprecated "ssl_bump allow <acl>" to '
                 '"ssl_bump client-first <acl>", which is usually inferior to the newer server-first '
                 'bumping mode. Update your ssl_bump rules.')
            action, style = CLIENT_FIRST, "old"
        elif word == "deny":
            warn('auto-converting deprecated "ssl_bump deny <acl>" to "ssl_bump none <acl>". '
                 'Update your ssl_bump rules.')
            action, style = NONE, "old"
        elif word in ACTIONS:
            action, style = word, "new"
        else:
            raise SslBumpError(f"unknown ssl_bump mode '{word}' (peek, stare, splice, bump, terminate; "
                               "or client-first, server-first, none)")
        if self._style is not None and style != self._style:
            names = {"new": "new client/server-first/none", "old": "deprecated allow/deny"}
            raise SslBumpError(f"do not mix {names[style]} actions with {names[self._style]} actions; "
                               "update your ssl_bump rules")
        self._style = style
        if style == "old":
            self._last_old = action
        rule = AccessList("ssl_bump").add_rule(["allow", *args[1:]], acls, where, text)
        bump_rule = BumpRule(action, rule)
        self.rules.append(bump_rule)
        return bump_rule

    def finish(self, acls, where: str, warn) -> None:
        """Squid's implicit last rule for allow/deny configurations."""
        if self._style != "old":
            return
        if self._last_old == CLIENT_FIRST:
            warn('auto-converting deprecated implicit "ssl_bump deny all" to "ssl_bump none all". '
                 'New ssl_bump configurations must not use implicit rules. Update your ssl_bump rules.')
            action = NONE
        else:
            warn('SECURITY NOTICE: auto-converting deprecated implicit "ssl_bump allow all" to '
                 '"ssl_bump client-first all", which is usually inferior to the newer server-first bumping '
                 'mode. New ssl_bump configurations must not use implicit rules. Update your ssl_bump rules.')
            action = CLIENT_FIRST
        rule = AccessList("ssl_bump").add_rule(["allow", "all"], acls, where, f"ssl_bump {action} all (implicit)")
        self.rules.append(BumpRule(action, rule))
        self._style = "new"

    def first_match(self, step: str, ch: Checklist, banned: frozenset[str] = frozenset()) -> BumpRule | None:
        """The first rule not banned at ``step`` whose ACLs all match (may raise Pending)."""
        ch.bump_step = step
        skip = BANNED[step] | banned
        for rule in self.rules:
            if rule.action in skip:
                continue
            if matches(rule.rule, ch):
                return rule
        return None


def step1(rules: SslBumpRules, ch: Checklist) -> Decision:
    """A CONNECT that http_access allowed, on an ``ssl-bump`` port."""
    found = rules.first_match(STEP1, ch) if rules else None
    action = found.action if found else SPLICE
    nxt = {
        SPLICE: TUNNEL, NONE: TUNNEL, TERMINATE: CLOSE,
        BUMP: BUMP_CLIENT_FIRST, CLIENT_FIRST: BUMP_CLIENT_FIRST, SERVER_FIRST: BUMP_SERVER_FIRST,
        PEEK: READ_CLIENT_HELLO, STARE: READ_CLIENT_HELLO,
    }[action]
    return Decision(STEP1, action, nxt, found)


def step2(rules: SslBumpRules, ch: Checklist) -> Decision:
    """The client's ClientHello is in (``ch.sni`` set); reached after peek or stare at step 1."""
    found = rules.first_match(STEP2, ch)
    action = found.action if found else SPLICE
    nxt = {SPLICE: TUNNEL, TERMINATE: CLOSE, BUMP: BUMP_SERVER_FIRST, PEEK: PEEK_AT_SERVER,
           STARE: STARE_AT_SERVER}[action]
    return Decision(STEP2, action, nxt, found)


def step3(rules: SslBumpRules, ch: Checklist, step2_action: str) -> Decision:
    """The origin's first flight is in (``ch.server_cert`` set when it could be read).
    After a peek only splice and terminate remain possible, after a stare only bump and
    terminate; with no matching rule, a stare bumps and a peek splices."""
    banned = frozenset({BUMP}) if step2_action == PEEK else frozenset({SPLICE})
    found = rules.first_match(STEP3, ch, banned)
    if found is not None:
        action = found.action
    else:
        action = BUMP if step2_action == STARE else SPLICE
    nxt = {SPLICE: TUNNEL, BUMP: BUMP_NOW, TERMINATE: CLOSE}[action]
    return Decision(STEP3, action, nxt, found)


def bump_to_deny(port_bumps: bool, rules: SslBumpRules, has_ca: bool, bump_denied_connect: bool,
                 status: int) -> bool:
    """Whether a CONNECT that gets an error (a denial ...) is bumped to show the page.

    Squid bumps (client-first) whenever the port has ``ssl-bump`` and ``ssl_bump`` lines
    exist, except for a 407 (the browser would not authenticate).  squidpy also does it
    with no ``ssl_bump`` line at all when the port has a CA, unless
    ``bump_denied_connect off`` says not to."""
    if not port_bumps or status == 407:
        return False
    if rules:
        return True
    return has_ca and bump_denied_connect
