"""Chromium headless for tests: the flags every test uses, and a profile whose NSS
database trusts the CAs a test gives it.

Chromium on Linux reads trusted CAs from ``$HOME/.pki/nssdb``; a
:class:`ChromiumProfile` makes a temporary HOME with its own database
(``certutil`` from Debian's libnss3-tools) so a test can trust squidpy's
bumping CA, and nothing else on the machine is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CERTUTIL = shutil.which("certutil")
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--force-device-scale-factor=1"]


class ChromiumProfile:
    def __init__(self, directory: Path):
        assert CHROMIUM, "Debian's chromium package is installed by .ci/run"
        assert CERTUTIL, "Debian's libnss3-tools package (certutil) is installed by .ci/run"
        self.home = Path(directory) / "home"
        self.nssdb = self.home / ".pki" / "nssdb"
        self.nssdb.mkdir(parents=True, exist_ok=True)
        self._certutil("-N", "--empty-password")

    def _certutil(self, *args: str) -> str:
        result = subprocess.run([CERTUTIL, "-d", f"sql:{self.nssdb}", *args], capture_output=True, text=True,
                                timeout=30)
        if result.returncode != 0:
            raise RuntimeError(f"certutil {' '.join(args)}: {result.stderr or result.stdout}")
        return result.stdout

    def trust(self, ca_file: Path, name: str = "squidpy") -> None:
        """Trust ``ca_file`` (PEM or DER) to identify web sites, as an admin would."""
        self._certutil("-A", "-n", name, "-t", "C,,", "-i", str(ca_file))

    def trusted(self) -> str:
        return self._certutil("-L")

    def run(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        env = dict(os.environ, HOME=str(self.home))
        return subprocess.run([CHROMIUM, *CHROME_FLAGS, f"--user-data-dir={self.home / 'profile'}", *args],
                              capture_output=True, text=True, timeout=timeout, env=env)

    def dump_dom(self, url: str, *args: str) -> str:
        return self.run("--virtual-time-budget=5000", *args, "--dump-dom", url).stdout
