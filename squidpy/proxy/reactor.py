"""The reactor squidpy runs on: Twisted's epoll reactor, minus one cost.

Twisted wraps every I/O event in a logging context (``callWithLogger``) so
that a traceback names the connection it came from.  For a proxy that
handles a few events per request this is several per cent of the CPU a
request costs, and our own errors already say which transaction they belong
to.  ``install()`` must run before anything imports ``twisted.internet.reactor``.
"""

from __future__ import annotations

import errno
import gc

from twisted.internet import epollreactor


class EPollReactor(epollreactor.EPollReactor):
    def doPoll(self, timeout):
        try:
            events = self._poller.poll(-1 if timeout is None else timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        handle = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is not None:
                handle(selectable, fd, event)

    doIteration = doPoll


def tune_gc() -> None:
    """Cheaper garbage collections: everything loaded so far lives for the whole
    run (frozen out of collection); young collections wait for a few more objects
    than Python's default (a collection of 2000 objects stays well under a
    millisecond, 20000 would cost the slowest requests ten), and full collections,
    which walk every cached object, are rarer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(2000, 20, 100)


M_MMAP_THRESHOLD = -3


def tune_malloc() -> None:
    """Keep the proxy's memory flat over days: glibc raises its mmap threshold
    each time a large block is freed, after which every body buffer of a
    few hundred KB comes from the heap, which fragments and never shrinks
    (measured: +10 MB a minute under the soak test).  A fixed threshold of
    64 KB gives large buffers back to the kernel as soon as they are freed."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 64 * 1024)
    except (OSError, AttributeError):
        pass                                    # not glibc: nothing to tune


def install():
    """Install this reactor (falls back to Twisted's default where epoll is missing)."""
    import sys

    if "twisted.internet.reactor" in sys.modules:
        from twisted.internet import reactor
        return reactor
    try:
        r = EPollReactor()
    except (AttributeError, OSError):
        from twisted.internet import default
        default.install()
    else:
        from twisted.internet.main import installReactor
        installReactor(r)
    from twisted.internet import reactor
    return reactor
