"""The pid file, locked: a running squidpy holds an exclusive ``flock`` on it.

Checking whether the pid written in the file is alive and then writing ours
is a race (two squidpys started together both win) and is fooled by a stale
file whose pid now belongs to another process.  A lock is neither: the
kernel gives it to one process and takes it back when that process dies,
however it dies.  ``squidpy signal`` asks the lock, too, before it sends a
signal to the pid in the file.
"""

from __future__ import annotations

import fcntl
import os


class AlreadyRunning(Exception):
    pass


class PidFile:
    """Our lock on ``path``; kept open for as long as squidpy runs (kids inherit it)."""

    def __init__(self, path: str, fd: int):
        self.path = path
        self.fd = fd

    @classmethod
    def acquire(cls, path: str, owner: tuple[int, int] | None = None) -> "PidFile":
        """Lock ``path`` and write our pid in it; AlreadyRunning names the process holding it.
        ``owner``: (uid, gid) the file is given to (cache_effective_user, as Squid writes it)."""
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        for _ in range(10):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = _read(fd)
                os.close(fd)
                who = f"process {other}" if other else "another process"
                raise AlreadyRunning(f"squidpy is already running as {who} (it holds the lock on "
                                     f"pid_filename {path})") from None
            except OSError:
                os.close(fd)
                raise
            # the holder may have removed the file between our open and our lock: then we
            # locked a file nobody can see, and must lock the one at ``path`` instead
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                if owner is not None:
                    os.fchown(fd, *owner)
                pidfile = cls(path, fd)
                pidfile.write(os.getpid())
                return pidfile
            os.close(fd)
        raise AlreadyRunning(f"pid_filename {path} keeps changing under us: another squidpy is starting")

    def write(self, pid: int) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{pid}\n".encode(), 0)

    def release(self) -> None:
        """Remove the file (when the directory allows it) and drop the lock.  A file that
        cannot be removed is emptied, so nothing points at a pid that is gone."""
        if self.fd < 0:
            return
        try:
            os.unlink(self.path)
        except OSError:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
        os.close(self.fd)
        self.fd = -1


def _read(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 64, 0).decode().strip())
    except (OSError, ValueError):
        return None


def running_pid(path: str) -> tuple[int | None, str]:
    """(pid, "") of the squidpy holding ``path``; (None, why) when none does."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, f"{path} is missing"
    except OSError as e:
        return None, f"cannot read {path}: {e.strerror}"
    try:
        pid = _read(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            if pid is None:
                return None, f"{path} is locked but holds no process id yet"
            return pid, ""
        fcntl.flock(fd, fcntl.LOCK_UN)
        if pid is None:
            return None, f"{path} is empty"
        return None, f"{path} names process {pid}, but no squidpy holds it (a stale file)"
    finally:
        os.close(fd)
