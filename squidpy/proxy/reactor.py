"""The reactor squidpy runs on, and the process-wide tuning that goes with it.

``install()`` puts :class:`squidpy.proxy.seam.EPollReactor` (Twisted's epoll
reactor without a logging context around every I/O event) in place; it must
run before anything imports ``twisted.internet.reactor``.
:func:`import_twisted_without_tls`, for ``squidpy run`` only, must run before
anything imports Twisted at all, so this module imports none of it at load.
"""

from __future__ import annotations

import gc
import importlib
import sys

#: the Twisted modules squidpy uses that look for pyOpenSSL when first imported
#: (tcp's startTLS through _newtls, posixbase's listenSSL, endpoints' TLS endpoints)
#: and take their plain-TCP path when it is missing
TWISTED_TLS_PROBES = ("twisted.internet.tcp", "twisted.internet.posixbase", "twisted.internet.endpoints")
#: what import_twisted_without_tls hides while they load
HIDDEN_WHILE_TWISTED_LOADS = ("OpenSSL", "ssl", "_hashlib")
#: modules Twisted imports that leave out their HTTPS parts when ssl is missing: forgotten
#: afterwards, so that whoever imports them later (prometheus_client) gets them whole
WITHOUT_HTTPS_IF_LOADED_MEANWHILE = ("http.client", "urllib.request")


def import_twisted_without_tls() -> None:
    """Import Twisted as if pyOpenSSL and Python's OpenSSL modules were not installed,
    for the proxy process only: squidpy never uses Twisted's TLS (its own sessions are
    in squidpy.tls).  pyOpenSSL with cryptography is a third of a started proxy's
    memory (33 MB) and of its start-up CPU.  The ssl module comes in through asyncio
    (which Twisted's defer imports), hashlib's OpenSSL through http.cookiejar (which
    twisted.python.compat imports); both take them only if they are there, and
    without them nothing maps libssl or libcrypto (4.5 MB).  hashlib then gives
    CPython's own hashes, which squidpy uses anyway (squidpy.digests).  They are
    hidden only while those modules load: a configuration that bumps or speaks TLS
    imports pyOpenSSL and ssl afterwards as usual; asyncio, which squidpy does not run,
    stays without TLS.  A process that already imported Twisted (tests, in-process
    benchmarks) keeps Twisted as it is."""
    hidden = {name: module for name, module in sys.modules.items()
              if name in HIDDEN_WHILE_TWISTED_LOADS or name.startswith("OpenSSL.")}
    names = {*HIDDEN_WHILE_TWISTED_LOADS, *hidden}
    loaded = set(sys.modules)
    # None in sys.modules makes the import fail (typeshed only knows modules there)
    sys.modules.update(dict.fromkeys(names, None))  # type: ignore[arg-type]
    try:
        for name in TWISTED_TLS_PROBES:
            importlib.import_module(name)
    finally:
        for name in names:
            del sys.modules[name]
        sys.modules.update(hidden)
        for name in WITHOUT_HTTPS_IF_LOADED_MEANWHILE:
            if name not in loaded:
                sys.modules.pop(name, None)


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
    64 KB gives large buffers back to the kernel as soon as they are freed.
    Called once started: the pages the start-up freed (imports, the
    configuration's parse) go back to the kernel too (malloc_trim: 4.7 MB of 45)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")         # glibc's own name: find_library("c") would run ldconfig
        libc.mallopt(M_MMAP_THRESHOLD, 64 * 1024)
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass                                    # not glibc: nothing to tune


def install():
    """Install this reactor (falls back to Twisted's default where epoll is missing)."""
    from squidpy.proxy.seam import EPollReactor     # seam imports Twisted: after import_twisted_without_tls

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
