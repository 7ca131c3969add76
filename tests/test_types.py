"""The type check: mypy over squidpy/ with the [mypy] settings of setup.cfg (all of it
in mypy's default mode, the pure modules listed there strictly; docs/architecture.md,
"Types").  Part of the README's test command, so CI runs it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _cache_dir() -> str:
    """mypy's cache, outside the tree (as the suite's compiled files are: conftest.py), one
    per checkout so that two checkouts' runs never share one."""
    base = os.environ.get("XDG_CACHE_HOME") or tempfile.gettempdir()
    checkout = hashlib.sha1(str(ROOT).encode()).hexdigest()[:12]
    return os.path.join(base, f"squidpy-mypy-{os.getuid()}-{checkout}")


@pytest.mark.slow
def test_squidpy_type_checks():
    """About 6 s of CPU without its cache, 1 s with it (slow: its module starts first)."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "setup.cfg"), "--cache-dir", _cache_dir()],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"mypy found errors:\n{result.stdout}{result.stderr}"
