"""Telling systemd how squidpy is doing: the sd_notify protocol, written out by hand.

Under ``Type=notify`` systemd passes a datagram socket in ``$NOTIFY_SOCKET``
(a path, or ``@name`` in the abstract namespace) and waits for ``READY=1``
before it calls the service started.  squidpy sends ``READY=1`` once its
ports listen, ``RELOADING=1`` with ``MONOTONIC_USEC`` (which systemd 253 and
later require to accept it) when a reconfigure begins and ``READY=1`` again
when it is over, ``STOPPING=1`` when it begins to shut down, and every few
seconds a ``STATUS=`` line that ``systemctl status`` shows.  Without
``$NOTIFY_SOCKET`` nothing is sent.

Under ``workers N`` only the master speaks to systemd (the unit's default
``NotifyAccess=main``); each kid reports to the master through a pipe, and
the master says READY when every kid listens and sums their request rates.
"""

from __future__ import annotations

import os
import socket
import time

STATUS_INTERVAL = 2.0      # seconds between STATUS= lines


def ready_message(status: str) -> list[str]:
    return ["READY=1", f"STATUS={status}"]


def reloading_message(monotonic_usec: int) -> list[str]:
    return ["RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}", "STATUS=Reconfiguring"]


def stopping_message() -> list[str]:
    return ["STOPPING=1", "STATUS=Shutting down"]


def status_text(rate: float, clients: int, kids: int | None = None) -> str:
    """What ``systemctl status`` shows: the request rate over the last interval and the
    client connections now."""
    who = f", {kids} kid{'s' if kids != 1 else ''}" if kids else ""
    return f"{rate:.1f} requests/s, {clients} client connection{'s' if clients != 1 else ''}{who}"


def rate(count_now: int, count_then: int, now: float, then: float) -> float:
    """Requests per second between two readings of a counter."""
    elapsed = now - then
    return (count_now - count_then) / elapsed if elapsed > 0 else 0.0


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd compares MONOTONIC_USEC with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def notify(fields: list[str], address: str | None = None) -> bool:
    """Send one notification datagram; False when there is no socket or it cannot be reached
    (a failed notification never stops squidpy)."""
    address = os.environ.get("NOTIFY_SOCKET") if address is None else address
    if not address or not address.startswith(("/", "@")):
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
    except OSError:
        return False
    return True


class Notifier:
    """Where a ProxyService's notifications go: systemd directly, or its master (a kid)."""

    def __init__(self, pipe_fd: int | None = None):
        self.pipe_fd = pipe_fd          # a kid writes to its master instead of to systemd

    def _kid(self, line: str) -> None:
        assert self.pipe_fd is not None, "only a kid (which has a pipe to its master) writes there"
        try:
            os.write(self.pipe_fd, f"{os.getpid()} {line}\n".encode())
        except OSError:
            pass

    def ready(self, status: str) -> None:
        if self.pipe_fd is not None:
            self._kid("ready")
        else:
            notify(ready_message(status))

    def reloading(self) -> None:
        if self.pipe_fd is None:
            notify(reloading_message(monotonic_usec()))

    def stopping(self) -> None:
        if self.pipe_fd is None:
            notify(stopping_message())

    def status(self, rate_now: float, clients: int) -> None:
        if self.pipe_fd is not None:
            self._kid(f"status {rate_now:.3f} {clients}")
        else:
            notify([f"STATUS={status_text(rate_now, clients)}"])

    @property
    def wanted(self) -> bool:
        return self.pipe_fd is not None or bool(os.environ.get("NOTIFY_SOCKET"))
