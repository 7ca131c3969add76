"""Running as root only as long as needed: cache_effective_user / cache_effective_group.

As Squid does, a squidpy started as root binds its ports, then becomes
``cache_effective_user`` (and its group, or ``cache_effective_group``) for
good.  Before that, while still root, it makes the places it writes usable by
that user: directories it has to create are created owned by the user, and its
own log files are handed to the user.  ``CAP_NET_BIND_SERVICE`` is kept across
the change of user (Squid keeps it too), so a reconfigure can still open a port
below 1024; with a ``tproxy`` port ``CAP_NET_ADMIN`` is kept as well (as Squid
keeps it), to connect to origins with the client's address; every other
capability is gone.  A squidpy that is not started as
root ignores both directives, as Squid does (under systemd, ``User=`` has
already done this).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import grp
import os
import pwd
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from squidpy.config.loader import Config


class PrivilegeError(Exception):
    """One line an admin can act on (an unknown user, a failed setuid)."""


@dataclass(frozen=True)
class Identity:
    user: str
    uid: int
    gid: int
    group: str

    def __str__(self) -> str:
        return f"user {self.user} (uid {self.uid}), group {self.group} (gid {self.gid})"


def effective_identity(config: Config, euid: int | None = None) -> Identity | None:
    """Who squidpy should become: None when nothing changes (not root, or no
    cache_effective_user).  Raises PrivilegeError for a user or group that does not exist."""
    euid = os.geteuid() if euid is None else euid
    if euid != 0 or config.cache_effective_user is None:
        return None
    name = config.cache_effective_user
    try:
        entry = pwd.getpwnam(name) if not name.isdigit() else pwd.getpwuid(int(name))
    except KeyError:
        raise PrivilegeError(f"cache_effective_user '{name}' does not exist on this machine") from None
    gid = entry.pw_gid
    if config.cache_effective_group is not None:
        group = config.cache_effective_group
        try:
            gid = (grp.getgrnam(group) if not group.isdigit() else grp.getgrgid(int(group))).gr_gid
        except KeyError:
            raise PrivilegeError(f"cache_effective_group '{group}' does not exist on this machine") from None
    try:
        group_name = grp.getgrgid(gid).gr_name
    except KeyError:
        group_name = str(gid)
    if entry.pw_uid == 0:
        raise PrivilegeError(f"cache_effective_user '{name}' is root: name an unprivileged user")
    return Identity(entry.pw_name, entry.pw_uid, gid, group_name)


def make_usable(identity: Identity, directories: list[str], files: list[str]) -> None:
    """While still root: create each missing directory (and missing parents) owned by the
    user; hand the files squidpy writes (its logs) to the user, creating them if needed.
    Directories that already exist are left as they are: their owner decides."""
    for directory in directories:
        missing = []
        path = os.path.abspath(directory)
        while path and not os.path.exists(path):
            missing.append(path)
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
        for created in reversed(missing):
            os.mkdir(created, 0o750)
            os.chown(created, identity.uid, identity.gid)
    for path in files:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            st = os.fstat(fd)
            if (st.st_uid, st.st_gid) != (identity.uid, identity.gid):
                os.fchown(fd, identity.uid, identity.gid)
        finally:
            os.close(fd)


# ---------------------------------------------------------------- becoming the user

LAZY_DEPENDENCIES = ("sqlite3", "diskcache", "encodings.idna", "twisted.names.client", "twisted.logger")


def preload() -> None:
    """Import now every module squidpy may need later: once it is another user, the Python
    installation may not be readable any more (a Python under /root, a locked-down
    system), and a module imported on first use would fail then, in the middle of a request."""
    import importlib
    import pkgutil

    import squidpy

    for name in LAZY_DEPENDENCIES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    for module in pkgutil.walk_packages(squidpy.__path__, "squidpy."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)


PR_SET_KEEPCAPS = 8
CAP_NET_BIND_SERVICE = 10
CAP_NET_ADMIN = 12
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _keep_only(libc, capabilities: int) -> bool:
    """After setuid with PR_SET_KEEPCAPS: effective and permitted = these capabilities only."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = capabilities
    return libc.capset(ctypes.byref(header), ctypes.byref(data)) == 0


def become(identity: Identity, net_admin: bool = False) -> bool:
    """Give up root for good: groups, gid, then uid (real, effective and saved).
    Returns whether CAP_NET_BIND_SERVICE (and, when ``net_admin``, CAP_NET_ADMIN)
    was kept."""
    preload()
    libc = None
    try:
        libc = _libc()
        keep = libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        keep = False
    try:
        os.setgroups([identity.gid])
        os.setresgid(identity.gid, identity.gid, identity.gid)
        os.setresuid(identity.uid, identity.uid, identity.uid)
    except OSError as e:
        raise PrivilegeError(f"cannot become {identity}: {e.strerror}") from None
    if os.geteuid() == 0 or os.getuid() == 0:
        raise PrivilegeError(f"still root after becoming {identity}")
    wanted = 1 << CAP_NET_BIND_SERVICE | (1 << CAP_NET_ADMIN if net_admin else 0)
    kept = keep and _keep_only(libc, wanted)
    if libc is not None:
        try:
            libc.prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    return kept
