"""Squid's certificate helper (``sslcrtd_program``, ``security_file_certgen``), spoken to.

squidpy mints certificates itself (``sslcrtd_program internal``, the default);
an admin who names Squid's ``security_file_certgen`` (or another program that
speaks its protocol) gets it as a helper instead, with ``sslcrtd_children``
processes.  The protocol (src/ssl/crtd_message.cc): squidpy writes
``new_certificate LENGTH BODY``, the body being ``key=value`` lines (``host=``,
``setCommonName=``, ``setValidAfter=on``, ``setValidBefore=on``, ``Sign=``,
``SignHash=``) then the signing certificate and key in PEM, then the
certificate to mimic; the helper answers ``OK LENGTH`` and the new
certificate and key in PEM, ending with a byte 0x01.  Composing and reading
are pure (:func:`compose_request`, :func:`parse_reply`); :class:`CertgenHelper`
runs the processes, each answer bounded in size and time.
"""

from __future__ import annotations

import os
import select
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from squidpy.tls.ca import SigningCa
    from squidpy.tls.certcache import Minted
    from squidpy.tls.mint import CertProperties

END_OF_MESSAGE = b"\x01"
MAX_REPLY = 64 * 1024
INTERNAL = "internal"


class HelperError(RuntimeError):
    pass


def compose_request(props: CertProperties, signer: SigningCa) -> bytes:
    """``new_certificate LENGTH BODY`` for one certificate (Ssl::CrtdMessage::composeRequest)."""
    from cryptography.hazmat.primitives import serialization   # here: sslcrtd_program alone needs it

    lines = [f"host={props.common_name}"]
    if props.set_common_name:
        lines.append(f"setCommonName={props.common_name}")
    if props.set_valid_after:
        lines.append("setValidAfter=on")
    if props.set_valid_before:
        lines.append("setValidBefore=on")
    lines.append(f"Sign={props.sign}")
    lines.append(f"SignHash={props.sign_hash.upper()}")
    certs = signer.cert.public_bytes(serialization.Encoding.PEM) + signer.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    if props.mimic is not None:
        certs += b" " + props.mimic.public_bytes(serialization.Encoding.PEM)
    body = "\n".join(lines).encode("utf-8") + b"\n" + certs
    return b"new_certificate %d " % len(body) + body + b"\n"


def parse_reply(data: bytes) -> tuple[str, bytes]:
    """(code, body) of one helper reply (without its end-of-message byte); raises HelperError."""
    text = data.rstrip(END_OF_MESSAGE)
    code, sep, rest = text.lstrip().partition(b" ")
    if not sep or not code.isalpha():
        raise HelperError(f"the certificate helper answered something unreadable: {text[:60]!r}")
    length_text, sep, body = rest.lstrip().partition(b" ")
    if not length_text.isdigit():
        if code == b"OK":
            raise HelperError("the certificate helper's answer has no length")
        return code.decode("ascii"), rest
    length = int(length_text)
    body = body.lstrip(b" \t\r\n") if length else b""
    if len(body) < length:
        raise HelperError(f"the certificate helper's answer is {len(body)} bytes, it said {length}")
    return code.decode("ascii"), body[:length]


@dataclass(frozen=True)
class HelperCommand:
    """``sslcrtd_program`` as written: the program and its arguments."""

    argv: tuple[str, ...]

    @property
    def internal(self) -> bool:
        return self.argv[0] == INTERNAL

    def option(self, flag: str) -> str | None:
        """The value after ``-s``/``-M`` (Squid's helper arguments), if given."""
        args = self.argv
        for i, arg in enumerate(args):
            if arg == flag and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(flag) and len(arg) > len(flag):
                return arg[len(flag):]
        return None

    @classmethod
    def parse(cls, text: str) -> "HelperCommand":
        argv = tuple(shlex.split(text))
        if not argv:
            raise ValueError("expected a program (or 'internal') and its arguments")
        return cls(argv)


class CertgenHelper:
    """``sslcrtd_children`` processes of ``sslcrtd_program``, started when first
    needed; a busy or dead child is replaced by a new one."""

    def __init__(self, command: HelperCommand, children: int = 32, timeout: float = 30.0):
        self.command = command
        self.children = max(1, children)
        self.timeout = timeout
        self._idle: list[subprocess.Popen] = []
        self._running = 0
        self._lock = threading.Lock()
        self._initialized = False

    def _init_database(self) -> None:
        """security_file_certgen refuses to start on a database it has not made: make it
        (``-c``) when the directory it names does not exist yet."""
        self._initialized = True
        db = self.command.option("-s")
        if db is None or os.path.exists(db):
            return
        argv = [self.command.argv[0], "-c", "-s", db]
        size = self.command.option("-M")
        if size:
            argv += ["-M", size]
        result = subprocess.run(argv, capture_output=True, timeout=self.timeout)
        if result.returncode != 0:
            raise HelperError(f"{shlex.join(argv)} failed: {result.stderr.decode(errors='replace').strip()}")

    def _take(self) -> subprocess.Popen:
        with self._lock:
            if not self._initialized:
                self._init_database()
            while self._idle:
                proc = self._idle.pop()
                if proc.poll() is None:
                    return proc
            if self._running >= self.children:
                raise HelperError(f"all {self.children} sslcrtd_children are busy")
            self._running += 1
        try:
            return subprocess.Popen(list(self.command.argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL)
        except OSError as e:
            with self._lock:
                self._running -= 1
            raise HelperError(f"cannot start {self.command.argv[0]}: {e.strerror}") from None

    def _give_back(self, proc: subprocess.Popen, healthy: bool) -> None:
        with self._lock:
            if healthy and proc.poll() is None:
                self._idle.append(proc)
                return
            self._running -= 1
        _stop(proc)

    def request(self, data: bytes) -> bytes:
        """Send one request to an idle child; its reply, bounded in size and time."""
        proc = self._take()
        healthy = False
        try:
            proc.stdin.write(data)
            proc.stdin.flush()
            reply = _read_until(proc.stdout, END_OF_MESSAGE, self.timeout)
            healthy = True
            return reply
        except (OSError, HelperError) as e:
            raise HelperError(f"{self.command.argv[0]}: {e}") from None
        finally:
            self._give_back(proc, healthy)

    def mint(self, props: CertProperties, signer: SigningCa) -> Minted:
        from squidpy.tls.certcache import Minted    # cryptography: loaded once bumping mints

        code, body = parse_reply(self.request(compose_request(props, signer)))
        if code != "OK":
            raise HelperError(f"the certificate helper refused: {body.decode(errors='replace').strip()}")
        try:
            return Minted.from_pem(body)
        except (ValueError, TypeError):
            raise HelperError("the certificate helper's answer holds no certificate and key") from None

    def stop(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._running -= len(idle)
        for proc in idle:
            _stop(proc)


def _read_until(stream, end: bytes, timeout: float) -> bytes:
    fd = stream.fileno()
    out = bytearray()
    deadline = time.monotonic() + timeout
    while end not in out:
        left = deadline - time.monotonic()
        if left <= 0:
            raise HelperError(f"no answer within {timeout:g} seconds")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            raise HelperError("the helper exited without answering")
        out += chunk
        if len(out) > MAX_REPLY:
            raise HelperError(f"the answer is larger than {MAX_REPLY} bytes")
    return bytes(out[:out.index(end)])


def _stop(proc: subprocess.Popen) -> None:
    try:
        proc.stdin.close()
    except OSError:
        pass
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
