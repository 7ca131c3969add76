"""squidpy-basic-htpasswd: a Basic authentication helper for htpasswd files.

    auth_param basic program /usr/bin/squidpy-basic-htpasswd /etc/squidpy/passwd

Reads ``user:hash`` lines as Apache's htpasswd writes them: bcrypt
(``$2y$``, ``htpasswd -B``), apr1 MD5 (``$apr1$``, the default), SHA-1
(``{SHA}``, ``-s``), crypt(3) MD5/SHA-256/SHA-512 (``$1$ $5$ $6$``) and DES
(``-d``).  Hashes are checked by the bcrypt and passlib libraries.  The file is
read again whenever it changes, so adding a user needs no restart.
"""

from __future__ import annotations

import argparse
import os
import sys

from squidpy.helpers.program import answer, serve


def verify(password: str, stored: str) -> bool:
    secret = password.encode("utf-8", "surrogateescape")
    if stored.startswith(("$2y$", "$2b$", "$2a$")):
        import bcrypt
        try:
            return bcrypt.checkpw(secret[:72], stored.encode("ascii"))
        except ValueError:
            return False
    from passlib.hash import apr_md5_crypt, des_crypt, ldap_sha1, md5_crypt, sha256_crypt, sha512_crypt
    for handler in (apr_md5_crypt, ldap_sha1, md5_crypt, sha256_crypt, sha512_crypt, des_crypt):
        if handler.identify(stored):
            try:
                return bool(handler.verify(password, stored))
            except (ValueError, TypeError):
                return False
    return False


class PasswordFile:
    """``user:hash`` lines, read again when the file's identity, size or time changes."""

    def __init__(self, path: str):
        self.path = path
        self.stamp: tuple[int, int, int] | None = None
        self.users: dict[str, str] = {}

    def refresh(self) -> None:
        st = os.stat(self.path)
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self.stamp:
            return
        users = {}
        with open(self.path, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                line = line.rstrip("\r\n")
                if not line or line.startswith("#") or ":" not in line:
                    continue
                user, _, hashed = line.partition(":")
                users[user] = hashed.split(":", 1)[0]
        self.users, self.stamp = users, stamp

    def check(self, user: str, password: str) -> str:
        try:
            self.refresh()
        except OSError as e:
            return answer("BH", message=f"cannot read the password file: {e.strerror}")
        stored = self.users.get(user)
        if stored is None:
            return answer("ERR", message="No such user")
        if not password:
            return answer("ERR", message="Empty password")
        if verify(password, stored):
            return answer("OK")
        return answer("ERR", message="Wrong password")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="squidpy-basic-htpasswd", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="the htpasswd file")
    parser.add_argument("--concurrency", action="store_true",
                        help="lines start with a channel ID (children ... concurrency=N above 0)")
    args = parser.parse_args(argv)
    passwords = PasswordFile(args.file)

    def handle(words: list[str]) -> str:
        if len(words) < 2:
            return answer("ERR", message="expected: user password")
        return passwords.check(words[0], words[1])
    return serve(handle, args.concurrency)


if __name__ == "__main__":
    sys.exit(main())
