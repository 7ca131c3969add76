"""An MIT Kerberos KDC for a test realm on a loopback port (krb5-kdc), with a
user principal and an HTTP service keytab for negotiate_kerberos_auth.  Made in
a temporary directory with its own krb5.conf (KRB5_CONFIG), so the machine's
Kerberos settings are never read or changed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

REALM = "EXAMPLE.TEST"
SERVICE_HOST = "proxy.example.test"
USER, USER_PASSWORD = "alice", "alice-kerberos-pw"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
        for _ in range(50):
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            try:
                t.bind(("127.0.0.1", port))
                return port
            except OSError:
                u.close()
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raise RuntimeError("no free port for the KDC")


class Kdc:
    def __init__(self, directory: str):
        self.dir = directory
        self.port = free_port()
        self.conf = os.path.join(directory, "krb5.conf")
        self.keytab = os.path.join(directory, "http.keytab")
        self.ccache = os.path.join(directory, "ccache")
        self.proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        """What a client (kinit, curl) or negotiate_kerberos_auth needs to use this realm."""
        return {"KRB5_CONFIG": self.conf, "KRB5_KDC_PROFILE": os.path.join(self.dir, "kdc.conf"),
                "KRB5CCNAME": f"FILE:{self.ccache}", "KRB5_KTNAME": f"FILE:{self.keytab}",
                "KRB5RCACHETYPE": "none"}

    def start(self) -> "Kdc":
        """Create the realm and start krb5kdc.  A port another process took meanwhile (tests
        run in parallel; krb5kdc then exits at once, saying why in its log) is chosen
        again, a few times."""
        db = os.path.join(self.dir, "principal")
        self._write_configs(db)
        env = {**os.environ, **self.env}
        run = lambda *cmd, **kw: subprocess.run(list(cmd), env=env, check=True, capture_output=True, **kw)
        run("/usr/sbin/kdb5_util", "create", "-s", "-r", REALM, "-P", "master-key-for-tests")
        run("/usr/sbin/kadmin.local", "-r", REALM, "-q", f"addprinc -pw {USER_PASSWORD} {USER}")
        run("/usr/sbin/kadmin.local", "-r", REALM, "-q", f"addprinc -randkey HTTP/{SERVICE_HOST}")
        run("/usr/sbin/kadmin.local", "-r", REALM, "-q", f"ktadd -k {self.keytab} HTTP/{SERVICE_HOST}")
        for attempt in range(5):
            if attempt:
                self.port = free_port()
                self._write_configs(db)
            self.proc = subprocess.Popen(["/usr/sbin/krb5kdc", "-n", "-r", REALM], env=env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                    return self
                except OSError:
                    time.sleep(0.05)
            if self.proc.poll() is None:
                break
        if self.proc.poll() is not None:
            log = os.path.join(self.dir, "kdc.log")
            said = open(log, errors="replace").read()[-2000:] if os.path.exists(log) else ""
            raise RuntimeError(f"krb5kdc exited: {self.proc.stderr.read().decode(errors='replace')[-2000:]}{said}")
        self.stop()
        raise RuntimeError("krb5kdc did not listen within 10 seconds")

    def _write_configs(self, db: str) -> None:
        with open(self.conf, "w") as f:
            f.write(f"[libdefaults]\n default_realm = {REALM}\n dns_lookup_kdc = false\n dns_lookup_realm = false\n"
                    f" rdns = false\n udp_preference_limit = 1\n"
                    f"[realms]\n {REALM} = {{\n  kdc = 127.0.0.1:{self.port}\n }}\n"
                    f"[domain_realm]\n .example.test = {REALM}\n example.test = {REALM}\n")
        with open(os.path.join(self.dir, "kdc.conf"), "w") as f:
            # listening on the loopback address only (by default krb5kdc binds every address, so
            # any test's socket on that port, on any address, made it exit); its log in a file
            f.write(f"[kdcdefaults]\n kdc_listen = 127.0.0.1:{self.port}\n kdc_tcp_listen = 127.0.0.1:{self.port}\n"
                    f"[logging]\n kdc = FILE:{self.dir}/kdc.log\n"
                    f"[realms]\n {REALM} = {{\n  database_name = {db}\n"
                    f"  key_stash_file = {self.dir}/stash\n  acl_file = {self.dir}/kadm5.acl\n }}\n")

    def kinit(self, password: str = USER_PASSWORD) -> subprocess.CompletedProcess:
        return subprocess.run(["kinit", USER], input=password + "\n", text=True, capture_output=True,
                              env={**os.environ, **self.env}, timeout=30)

    def _admin(self, query: str) -> None:
        subprocess.run(["/usr/sbin/kadmin.local", "-r", REALM, "-q", query], env={**os.environ, **self.env},
                       check=True, capture_output=True, timeout=30)

    def service_ticket(self) -> None:
        """Get the HTTP service's ticket into the client's cache now (kvno), as a browser
        holds one from an earlier visit."""
        subprocess.run(["kvno", f"HTTP/{SERVICE_HOST}@{REALM}"], env={**os.environ, **self.env},
                       check=True, capture_output=True, timeout=30)

    def rekey(self, keytab: str) -> None:
        """Give the HTTP service a new random key, written alone to ``keytab`` (the keytab an
        admin regenerated); the shared keytab gets it too, so that tickets issued from now on
        work with either.  Tickets already issued were made with the old key."""
        self._admin(f"cpw -randkey HTTP/{SERVICE_HOST}")
        for path in (keytab, self.keytab):
            self._admin(f"ktadd -norandkey -k {path} HTTP/{SERVICE_HOST}")

    def kdestroy(self) -> None:
        subprocess.run(["kdestroy"], env={**os.environ, **self.env}, capture_output=True, timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
