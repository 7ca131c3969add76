"""The reactor squidpy runs on, and the process-wide tuning that goes with it.

``install()`` puts :class:`squidpy.proxy.seam.EPollReactor` (Twisted's epoll
reactor without a logging context around every I/O event) in place; it must
run before anything imports ``twisted.internet.reactor``.
"""

from __future__ import annotations

import gc

from squidpy.proxy.seam import EPollReactor


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
