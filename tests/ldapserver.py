"""OpenLDAP slapd on a loopback port with a directory the test seeds (users and
groups under dc=example,dc=test), for the LDAP helpers' tests.  Started in a
temporary directory and stopped by the fixture; nothing else is touched."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

SUFFIX = "dc=example,dc=test"
ADMIN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "admin-secret"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
USERS = {"alice": "alice pw", "bob": "b0b!", "carol": "c@rol"}
MEMBERS = {"staff": ["alice", "bob"], "admins": ["alice"]}

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA = "/etc/ldap/schema"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hash(password: str) -> str:
    out = subprocess.run(["/usr/sbin/slappasswd", "-s", password], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def seed_ldif() -> str:
    parts = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n",
             f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
             f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n"]
    for user, password in USERS.items():
        parts.append(f"dn: uid={user},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {user}\ncn: {user}\n"
                     f"sn: {user}\nuserPassword: {_hash(password)}\n")
    for group, members in MEMBERS.items():
        lines = "".join(f"member: uid={m},{PEOPLE}\n" for m in members)
        parts.append(f"dn: cn={group},{GROUPS}\nobjectClass: groupOfNames\ncn: {group}\n{lines}")
    return "\n".join(parts)


class LdapServer:
    def __init__(self, directory: str):
        self.dir = directory
        self.port = free_port()
        self.uri = f"ldap://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "LdapServer":
        data = os.path.join(self.dir, "data")
        os.makedirs(data, exist_ok=True)
        conf = os.path.join(self.dir, "slapd.conf")
        with open(conf, "w") as f:
            f.write("".join(f"include {SCHEMA}/{s}.schema\n" for s in ("core", "cosine", "inetorgperson", "nis")))
            f.write(f"pidfile {self.dir}/slapd.pid\nmoduleload back_mdb\n"
                    f"database mdb\nsuffix \"{SUFFIX}\"\nrootdn \"{ADMIN}\"\nrootpw {ADMIN_PASSWORD}\n"
                    f"directory {data}\nmaxsize 10485760\n"
                    "access to attrs=userPassword by anonymous auth by self read by * none\n"
                    "access to * by * read\n")
        ldif = os.path.join(self.dir, "seed.ldif")
        with open(ldif, "w") as f:
            f.write(seed_ldif())
        subprocess.run([SLAPADD, "-f", conf, "-l", ldif], check=True, capture_output=True)
        self.proc = subprocess.Popen([SLAPD, "-f", conf, "-h", f"{self.uri}/", "-d", "0"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"slapd exited: {self.proc.stderr.read().decode(errors='replace')[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("slapd did not start listening within 10 seconds")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None


def available() -> bool:
    return all(os.path.exists(p) for p in (SLAPD, SLAPADD)) and shutil.which("slappasswd") is not None
