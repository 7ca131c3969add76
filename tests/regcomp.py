"""glibc's regcomp()/regexec() through ctypes: what Squid's regular expressions do.

Squid 5.7 compiles its expressions with ``REG_EXTENDED | REG_NOSUB [| REG_ICASE]``
in the C locale; :func:`glibc_search` does the same in this process (switching
LC_CTYPE to C for the call), so tests can compare squidpy's translator with the
library Squid itself uses.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import locale
from contextlib import contextmanager

REG_EXTENDED, REG_ICASE, REG_NOSUB = 1, 2, 8

try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c"))
    _libc.regcomp, _libc.regexec, _libc.regerror, _libc.regfree  # noqa: B018
    AVAILABLE = True
except (OSError, AttributeError):           # not glibc
    AVAILABLE = False


class _Regex(ctypes.Structure):
    _fields_ = [("opaque", ctypes.c_byte * 256)]     # larger than glibc's regex_t (64 bytes)


@contextmanager
def _c_locale():
    saved = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)


def glibc_search(pattern: str, texts: list[str], icase: bool = False) -> list[bool] | str:
    """Whether ``pattern`` matches each text, or glibc's error message."""
    regex = _Regex()
    flags = REG_EXTENDED | REG_NOSUB | (REG_ICASE if icase else 0)
    with _c_locale():
        rc = _libc.regcomp(ctypes.byref(regex), pattern.encode("latin-1"), flags)
        if rc:
            buf = ctypes.create_string_buffer(256)
            _libc.regerror(rc, ctypes.byref(regex), buf, 256)
            return buf.value.decode()
        try:
            return [_libc.regexec(ctypes.byref(regex), t.encode("latin-1"), 0, None, 0) == 0 for t in texts]
        finally:
            _libc.regfree(ctypes.byref(regex))
