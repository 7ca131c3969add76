"""A real origin server on loopback for end-to-end tests.

It counts what it receives (so a test can assert that something did or did
not reach the origin) and answers from a small set of paths:

    /size/N           N bytes, Content-Length
    /chunked/N        N bytes, chunked
    /close/N          N bytes, no length: the connection close ends the body
    /echo             JSON of the request as received (method, path, headers, body, client address)
    /status/CODE      an empty reply with that status
    /slow/SECONDS     waits, then answers
    /truncate         promises 1000 bytes (cacheable), sends 10, closes
    /reset            closes without answering
    /headers?K=V&...  a reply carrying the given headers
    /ws               WebSocket-style upgrade, then echoes bytes back
    /big/N            N bytes streamed in 64 KB writes
    /sink             reads the request body without keeping it; JSON of its length and SHA-256
    /obj/NAME?...     a programmable object for cache tests: status=, cc= (Cache-Control),
                      etag=, lm= (Last-Modified, seconds ago), expires= (seconds from now,
                      or 'bad'), date= (seconds ago), age=, vary=, ct=, size=, loc=, cloc=,
                      h=Name:Value (repeatable), h304=Name:Value (on a 304 instead of the
                      h= and ct= fields), cond=STATUS (the answer to any conditional request),
                      nodate=1, delay=, empty=1 (no body), aged=N (the first reply for this URL is dated N seconds
                      ago, later ones, 304s too, are current: an object that is stored stale, or
                      N seconds old, and fresh again once refetched or revalidated, without a
                      test waiting for time to pass); the body says how many times
                      the origin served this exact URL; honours If-None-Match and
                      If-Modified-Since (304)
"""

from __future__ import annotations

import hashlib
import json
import socket
import socketserver
import threading
import time
import urllib.parse
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class OriginHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # a reply is written as its head, then its body: with Nagle's algorithm the body waits
    # for the client's (delayed, 40 ms) ACK of the head on every reused connection
    disable_nagle_algorithm = True
    server_version = "origin/1"

    def log_message(self, *args):
        pass

    def _record(self, body: bytes) -> None:
        self.server.record(self.command, self.path, list(self.headers.items()), body)

    def _read_body(self) -> bytes:
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            out = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                out.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(out)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers=(), length: bool = True) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ConnectionError, socket.timeout, ValueError):
            self.close_connection = True

    def _dispatch(self):
        if self.path.startswith("/sink"):
            return self.route_sink()
        body = self._read_body()
        self._record(body)
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        route, arg = parts[0], (parts[1] if len(parts) > 1 else "")
        handler = getattr(self, "route_" + route, None)
        if handler is None:
            return self._send(404, b"no such route\n", [("Content-Type", "text/plain")])
        handler(arg, url, body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = do_TRACE = _dispatch

    # routes
    def route_size(self, arg, url, body):
        n = int(arg)
        self._send(200, b"x" * n, [("Content-Type", "application/octet-stream"), ("Cache-Control", "no-store")])

    def route_chunked(self, arg, url, body):
        n = int(arg)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if self.command == "HEAD":
            return
        data = b"c" * n
        for i in range(0, n, 1000):
            piece = data[i:i + 1000]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def route_close(self, arg, url, body):
        n = int(arg)
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n" + b"z" * n)
        self.close_connection = True

    def route_echo(self, arg, url, body):
        doc = {
            "method": self.command, "path": self.path, "version": self.request_version,
            "headers": list(self.headers.items()), "body": body.decode("latin-1"),
            "client": self.client_address[0],
            "peer": self.client_address[0],
        }
        self._send(200, json.dumps(doc).encode(), [("Content-Type", "application/json")])

    def route_status(self, arg, url, body):
        self._send(int(arg), b"", [("Content-Type", "text/plain")], length=int(arg) not in (204, 304))

    def route_slow(self, arg, url, body):
        time.sleep(float(arg))
        self._send(200, b"slow\n", [("Content-Type", "text/plain")])

    def route_truncate(self, arg, url, body):
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nCache-Control: max-age=600\r\n\r\n"
                         + b"t" * 10)
        self.wfile.flush()
        self.close_connection = True

    def route_reset(self, arg, url, body):
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.close_connection = True

    def route_headers(self, arg, url, body):
        headers = urllib.parse.parse_qsl(url.query)
        self._send(200, b"headers\n", headers)

    def route_ws(self, arg, url, body):
        if self.headers.get("Upgrade", "").lower() != "websocket":
            return self._send(426, b"upgrade required\n")
        self.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        self.wfile.flush()
        conn = self.connection
        conn.settimeout(10)
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)
        except OSError:
            pass
        self.close_connection = True

    def route_obj(self, arg, url, body):
        q = urllib.parse.parse_qs(url.query)
        one = lambda k, default=None: q.get(k, [default])[0]  # noqa: E731
        served = self.server.count(self.path)
        if one("delay"):
            time.sleep(float(one("delay")))
        now = time.time()
        headers = []
        if one("cc"):
            headers.append(("Cache-Control", one("cc")))
        etag = one("etag")
        if etag:
            headers.append(("ETag", etag))
        lm = one("lm")
        if lm is not None:
            headers.append(("Last-Modified", formatdate(now - float(lm), usegmt=True)))
        if one("expires") is not None:
            e = one("expires")
            headers.append(("Expires", "never" if e == "bad" else formatdate(now + float(e), usegmt=True)))
        if one("age") is not None:
            headers.append(("Age", one("age")))
        if one("vary"):
            headers.append(("Vary", one("vary")))
        if one("loc"):
            headers.append(("Location", one("loc")))
        if one("cloc"):
            headers.append(("Content-Location", one("cloc")))
        inm = self.headers.get("If-None-Match")
        ims = self.headers.get("If-Modified-Since")
        not_modified = (inm is not None and etag is not None and etag in [t.strip() for t in inm.split(",")]) or (
            inm is None and ims is not None and lm is not None and float(lm) >= 0)
        status = 304 if not_modified else int(one("status", "200"))
        if one("cond") and (inm or ims):
            status = int(one("cond"))
        if status == 304 and "h304" in q:
            extra = q["h304"]
        else:
            extra = q.get("h", [])
            headers.append(("Content-Type", one("ct", "text/plain")))
        for h in extra:
            k, _, v = h.partition(":")
            headers.append((k, v))
        size = int(one("size", "0"))
        text = f"{arg} served {served}\n".encode()
        payload = (text * (size // len(text) + 1))[:size] if size else text
        if one("empty"):
            payload = b""
        self.send_response_only(status)        # no automatic Date: the query decides
        if one("aged") is not None and served == 1:
            headers.append(("Date", formatdate(now - float(one("aged")), usegmt=True)))
        elif one("date") is not None:
            headers.append(("Date", formatdate(now - float(one("date")), usegmt=True)))
        elif not one("nodate"):
            headers.append(("Date", formatdate(now, usegmt=True)))
        for k, v in headers:
            self.send_header(k, v)
        if status in (204, 304):
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        if any(h.lower() == "connection:close" for h in q.get("h", [])):
            self.close_connection = True

    def route_sink(self):
        digest, total = hashlib.sha256(), 0
        length = int(self.headers.get("Content-Length") or 0)
        while total < length:
            piece = self.rfile.read(min(1 << 20, length - total))
            if not piece:
                break
            digest.update(piece)
            total += len(piece)
        self._record(b"")
        out = json.dumps({"length": total, "sha256": digest.hexdigest()}).encode()
        self._send(200, out, [("Content-Type", "application/json")])

    def route_big(self, arg, url, body):
        n = int(arg)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(n))
        self.end_headers()
        block = bytes(range(256)) * 256
        sent = 0
        while sent < n:
            piece = block[: min(len(block), n - sent)]
            self.wfile.write(piece)
            sent += len(piece)


class Origin(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), OriginHandler)
        self.requests: list[tuple[str, str, list, bytes]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def server_bind(self):
        """Bind without HTTPServer's reverse lookup of the address (getfqdn), which inside a
        test network namespace would wait for a name server it cannot reach."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str) -> str:
        host = self.server_address[0]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}{path}"

    def record(self, method, path, headers, body) -> None:
        with self._lock:
            self.requests.append((method, path, headers, body))

    def count(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if path is None or r[1] == path)

    def start(self) -> "Origin":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class RawOrigin:
    """A bare TCP origin on loopback for faults a real server would not commit:
    each accepted connection is handed to ``serve(conn)`` in its own thread.
    Counts connections; ``stop()`` ends the accept loop."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn) -> None:
        conn.settimeout(10)
        with conn:
            try:
                self.serve(conn)
            except OSError:
                pass

    def serve(self, conn) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()


class OriginRequest:
    """One request as a strict HTTP/1.1 origin reads it off the wire."""

    __slots__ = ("connection", "number", "method", "target", "version", "headers", "body", "raw")

    def __init__(self, connection, number, method, target, version, headers, body, raw):
        self.connection = connection    # index of the connection it came on
        self.number = number            # its position on that connection (0 first)
        self.method, self.target, self.version = method, target, version
        self.headers = headers          # [(name, value)] as received, str
        self.body = body                # bytes, de-chunked
        self.raw = raw                  # every byte of it as received

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def __repr__(self) -> str:
        return f"<{self.method} {self.target} conn={self.connection} #{self.number} body={len(self.body)}>"


class BadRequestBytes(Exception):
    pass


def read_request(buf: bytes):
    """Split one request off the front of ``buf`` as a strict origin frames it
    (Content-Length, or chunked when Transfer-Encoding ends in chunked, else no body):
    ``(method, target, version, headers, body, raw_length)``, or None when incomplete.
    Raises BadRequestBytes for what no server would take.  Line ends before the
    request line are skipped, as llhttp does (RFC 9112 section 2.2)."""
    start = 0
    while start < len(buf) and buf[start] in b"\r\n":
        start += 1
    end = buf.find(b"\r\n\r\n", start)
    if end < 0:
        return None
    lines = buf[start:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise BadRequestBytes(lines[0])
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise BadRequestBytes(line)
        headers.append((name, value.strip()))
    pos = end + 4
    te = [v for k, v in headers if k.lower() == "transfer-encoding"]
    lengths = [v for k, v in headers if k.lower() == "content-length"]
    if te and te[-1].split(",")[-1].strip().lower() == "chunked":
        body = bytearray()
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(buf[pos:eol].split(b";")[0], 16)
            pos = eol + 2
            if size == 0:
                while True:             # trailers, then the empty line
                    eol = buf.find(b"\r\n", pos)
                    if eol < 0:
                        return None
                    line, pos = buf[pos:eol], eol + 2
                    if not line:
                        break
                break
            if len(buf) < pos + size + 2:
                return None
            body += buf[pos:pos + size]
            pos += size + 2
        body = bytes(body)
    elif lengths:
        n = int(lengths[0])
        if len(buf) < pos + n:
            return None
        body, pos = buf[pos:pos + n], pos + n
    else:
        body = b""
    return parts[0], parts[1], parts[2], headers, body, pos


def marker_reply(req: OriginRequest) -> bytes:
    """The recording origin's default answer: 200, a body naming the request, keep-alive."""
    body = f"reply to {req.method} {req.target}\n".encode("latin-1")
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: no-store\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


class RecordingOrigin(RawOrigin):
    """An origin that records exactly the bytes it receives, for tests of what can
    reach an origin through the proxy (request smuggling, framing).

    ``received[i]`` is every byte connection i carried; ``requests`` is what a strict
    HTTP/1.1 server makes of them (:class:`OriginRequest`, in arrival order).  Each
    request is answered with ``answer(request)`` (default :func:`marker_reply`, whose body
    names the request, so a client can tell whose reply it got); ``answer`` may return
    any bytes, including a malformed reply or several, a list of pieces to send in
    separate writes 10 ms apart, or either in ``(reply, True)`` to close the connection
    after it.  A target containing ``slow`` is answered after half a second.
    Bytes it cannot read as a request are answered 400 and noted in ``errors``."""

    def __init__(self, answer=None):
        self.answer = answer or marker_reply
        self.received: list[bytearray] = []
        self.requests: list[OriginRequest] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        super().__init__()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, conn) -> None:
        with self._lock:
            index = len(self.received)
            record = bytearray()
            self.received.append(record)
        pending, number = b"", 0
        while True:
            data = conn.recv(65536)
            if not data:
                return
            with self._lock:
                record += data
            pending += data
            while pending:
                try:
                    parsed = read_request(pending)
                except (BadRequestBytes, ValueError) as e:
                    with self._lock:
                        self.errors.append(f"connection {index}: {e!r}")
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                if parsed is None:
                    break
                method, target, version, headers, body, used = parsed
                req = OriginRequest(index, number, method, target, version, headers, body, pending[:used])
                pending = pending[used:]
                number += 1
                with self._lock:
                    self.requests.append(req)
                if "slow" in target:
                    time.sleep(0.5)
                reply = self.answer(req)
                close = isinstance(reply, tuple)        # (reply, True): close after sending it
                if close:
                    reply = reply[0]
                for i, piece in enumerate(reply if isinstance(reply, list) else [reply]):
                    if i:
                        time.sleep(0.01)                # a separate read for the proxy, most likely
                    conn.sendall(piece)
                if close:
                    return

    def seen(self) -> list[OriginRequest]:
        with self._lock:
            return list(self.requests)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[OriginRequest]:
        """The requests received, once there are at least ``count`` (or at the deadline)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.seen()) < count:
            time.sleep(0.02)
        return self.seen()
