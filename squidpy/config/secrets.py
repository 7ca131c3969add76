"""The running configuration as text, with its secrets hidden (mgr:config) (pure).

Squid's ``config`` page dumps the configuration in force; Squid hides
``cachemgr_passwd`` passwords behind ``XXXXXXXXXX``.  squidpy shows the lines
as they were read (includes followed, macros expanded, comments dropped), then
the defaults of the directives the file does not set, and hides every secret
it can recognise the same way: cachemgr_passwd passwords, the password of any
``user:password@`` URL, ``login=user:password``, and a helper's password given on
its command line (``-w PASSWORD`` or ``-wPASSWORD``, ``--password PASSWORD``,
``--bind-password PASSWORD``, ``password=PASSWORD``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from squidpy.config.loader import Config

MASK = "XXXXXXXXXX"

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s@/]*(?P<tail>@)")
_LOGIN = re.compile(r"(?P<head>\blogin=[^\s:]*:)\S+")
_KEY_VALUE = re.compile(r"(?P<head>\b[\w-]*(?:password|passwd|secret)[\w-]*=)\S+", re.I)
_FLAG_ARGUMENT = re.compile(r"(?P<head>(?:^|\s)(?:-w|--password|--bind-password|--passwd)\s+)\S+")
# Squid's LDAP helpers also read -w with its value attached (-wPASSWORD)
_ATTACHED_FLAG = re.compile(r"(?P<head>(?:^|\s)-w)(?=[^\s-])\S+")


def redact(name: str, rest: str) -> str:
    """One directive line (``name`` and its arguments) with its secrets masked."""
    if name == "cachemgr_passwd":
        password, _, actions = rest.partition(" ")
        if password not in ("none", "disable"):
            password = MASK
        return f"{name} {password} {actions}".rstrip()
    rest = _URL_PASSWORD.sub(lambda m: m["head"] + MASK + m["tail"], rest)
    rest = _LOGIN.sub(lambda m: m["head"] + MASK, rest)
    rest = _KEY_VALUE.sub(lambda m: m["head"] + MASK, rest)
    rest = _FLAG_ARGUMENT.sub(lambda m: m["head"] + MASK, rest)
    rest = _ATTACHED_FLAG.sub(lambda m: m["head"] + MASK, rest)
    return f"{name} {rest}".rstrip()


def configuration_text(config: Config) -> str:
    """What mgr:config shows for ``config`` (a squidpy.config.loader.Config)."""
    out = [f"# {config.source}\n"]
    for where, name, rest in config.lines:
        out.append(redact(name, rest) + "\n")
    if config.default_lines:
        out.append("\n# defaults of the directives not set above\n")
        for name, rest in config.default_lines:
            out.append(redact(name, rest) + "\n")
    return "".join(out)
