"""A fast enough origin for benchmarks when nginx is not installed.

    python benchmarks/origin.py PORT WWW_DIR

Serves files under WWW_DIR: /n/* with Cache-Control: no-store, /c/* and
/scale/* (any name: the 1 KB file) with max-age=86400.  Keep-alive, GET and
HEAD only; files are read once and kept in memory (big sparse files are
streamed from disk).
"""

from __future__ import annotations

import os
import sys

import httptools
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.basic import FileSender

CACHE = {}


class OriginProtocol(Protocol):
    def connectionMade(self):
        self.parser = httptools.HttpRequestParser(self)
        self.transport.setTcpNoDelay(True)

    def dataReceived(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.loseConnection()

    def on_url(self, url):
        self.url = url.decode()

    def on_message_complete(self):
        path = self.url.split("?", 1)[0]
        if path.startswith("/scale/"):
            path, control = "/c/1k.bin", "max-age=86400"
        elif path.startswith("/c/"):
            control = "max-age=86400"
        else:
            control = "no-store"
        full = os.path.join(self.factory.root, path.lstrip("/"))
        if ".." in path or not os.path.isfile(full):
            self.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            return
        size = os.path.getsize(full)
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {size}\r\nCache-Control: {control}\r\n\r\n").encode()
        if size <= 1 << 20:
            body = CACHE.get(full)
            if body is None:
                with open(full, "rb") as f:
                    body = CACHE[full] = f.read()
            self.transport.write(head + body)
        else:
            self.transport.write(head)
            self.transport.pauseProducing()
            f = open(full, "rb")
            d = FileSender().beginFileTransfer(f, self.transport)
            d.addBoth(lambda _: (f.close(), self.transport.resumeProducing()))


class OriginFactory(Factory):
    protocol = OriginProtocol

    def __init__(self, root):
        self.root = root


if __name__ == "__main__":
    reactor.listenTCP(int(sys.argv[1]), OriginFactory(sys.argv[2]), interface="127.0.0.1", backlog=4096)
    reactor.run()
