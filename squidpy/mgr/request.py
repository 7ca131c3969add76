"""What a request for the proxy itself asks for, and whether it may have it (pure).

Squid's cache manager URLs, as ``CacheManager::ParseUrl`` reads them:

* ``cache_object://HOST/ACTION[@PASSWORD][?PARAMS]``: squidclient's form (``mgr:info``);
  an empty action is ``menu``; whatever HOST names, the proxy answers it.
* ``http://PROXY:PORT/squid-internal-mgr/ACTION[?PARAMS]``: Squid 5's form, also in
  origin form (``GET /squid-internal-mgr/info``); an empty action is ``index``.

A password comes after ``@`` in a cache_object URL, or as the password of an
``Authorization: Basic`` field (what ``curl http://user:password@proxy:3128/...``
sends), which wins.  ``cachemgr_passwd`` says which actions need which password
(:func:`protection`, :func:`password_ok`: Squid's ``ActionProtection`` and
``CheckPassword``).  ``/metrics`` (Prometheus) is served to requests for the proxy
itself, and on ``metrics_port``.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from dataclasses import dataclass, field

from squidpy.digests import compare_digest
from squidpy.http.message import Fields
from squidpy.http.url import MANAGER_SCHEME, Target
from squidpy.mgr.actions import ACTIONS

MANAGER_PREFIX = "/squid-internal-mgr/"
METRICS_PATH = "/metrics"
MAX_PARAMS = 32


@dataclass
class CacheMgrPasswd:
    """One ``cachemgr_passwd PASSWORD ACTION ...`` line (``none``: no password
    needed; ``disable``: the actions are refused; ``all`` names every action)."""

    password: str
    actions: tuple[str, ...]
    where: str = ""


@dataclass
class ManagerRequest:
    """A cache manager request: the action asked for and what came with it."""

    action: str
    password: str | None = None
    user: str | None = None
    params: dict[str, str] = field(default_factory=dict)


class ManagerError(ValueError):
    """A manager URL Squid answers 404 ERR_INVALID_URL (unknown, hidden or disabled action)."""


def is_metrics(target: Target) -> bool:
    """``/metrics`` on a request for the proxy itself (``?`` parameters ignored)."""
    return target.kind == "internal" and target.scheme == "http" and \
        target.path.partition("?")[0] == METRICS_PATH


def manager_request(target: Target, request_headers: Fields | None,
                    passwords: list[CacheMgrPasswd]) -> ManagerRequest | None:
    """The manager request ``target`` makes (None: it is not for the cache manager).
    Raises :class:`ManagerError` for an action that does not exist or is hidden or
    disabled by ``cachemgr_passwd``."""
    if target.kind != "internal":
        return None
    path = target.path
    cache_object = target.scheme == MANAGER_SCHEME
    if cache_object:
        rest = path[1:]
        stops = "@?#"
    elif path.startswith(MANAGER_PREFIX):
        rest = path[len(MANAGER_PREFIX):]
        stops = "?#"
    else:
        return None
    end = len(rest)
    for stop in stops:
        at = rest.find(stop)
        if 0 <= at < end:
            end = at
    action = rest[:end] or ("menu" if cache_object else "index")
    rest = rest[end:]
    password = None
    if rest.startswith("@"):
        password, _, rest = rest[1:].partition("?")
        password = password.partition("#")[0]
        rest = "?" + rest if rest else ""
    params: dict[str, str] = {}
    if rest.startswith("?"):
        query = rest[1:].partition("#")[0]
        for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True)[:MAX_PARAMS]:
            params.setdefault(name.lower(), value)
    if action not in ACTIONS:
        raise ManagerError(f"the cache manager has no action '{action}'")
    level = protection(action, passwords)
    if level in ("hidden", "disabled"):
        raise ManagerError(f"the cache manager action '{action}' is {level}")
    request = ManagerRequest(action, password or None, None, params)
    user, basic_password = basic_credentials(request_headers)
    if basic_password is not None:
        request.user, request.password = user, basic_password
    return request


def manager_base(target: Target) -> str:
    """The URL an action's name is appended to, for links between the manager's pages."""
    if target.scheme == MANAGER_SCHEME:
        return f"{MANAGER_SCHEME}://{target.authority}/"
    return f"{target.scheme}://{target.authority}{MANAGER_PREFIX}"


def basic_credentials(request_headers: Fields | None) -> tuple[str | None, str | None]:
    """(user, password) of an ``Authorization: Basic`` field, else (None, None)."""
    for name, value in request_headers or ():
        if name.lower() != b"authorization":
            continue
        scheme, _, token = value.strip().partition(b" ")
        if scheme.lower() != b"basic":
            continue
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("latin-1")
        except (binascii.Error, ValueError):
            return None, None
        user, colon, password = decoded.partition(":")
        if not colon:
            return None, None
        return user, password
    return None, None


def _password_for(action: str, passwords: list[CacheMgrPasswd]) -> str | None:
    for line in passwords:
        for name in line.actions:
            if name == action or name == "all":
                return line.password
    return None


def protection(action: str, passwords: list[CacheMgrPasswd]) -> str:
    """What the menu shows: ``public``, ``protected`` (a password is needed),
    ``hidden`` (needs one and none is configured) or ``disabled``."""
    password = _password_for(action, passwords)
    if password is None:
        return "hidden" if ACTIONS[action].password_required else "public"
    if password == "disable":
        return "disabled"
    if password == "none":
        return "public"
    return "protected"


def password_ok(request: ManagerRequest, passwords: list[CacheMgrPasswd]) -> bool:
    """Whether the request may run its action; False is answered 401."""
    wanted = _password_for(request.action, passwords)
    if wanted is None:
        return not ACTIONS[request.action].password_required
    if wanted == "disable":
        return False
    if wanted == "none":
        return True
    given = request.password
    return given is not None and given != "" and compare_digest(given.encode("utf-8", "surrogateescape"),
                                                                wanted.encode("utf-8", "surrogateescape"))
