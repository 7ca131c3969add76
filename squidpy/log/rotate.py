"""Squid's log rotation: ``access.log`` becomes ``access.log.0``, older copies shift up."""

from __future__ import annotations

import os


def rotate_numbered(path: str, keep: int) -> None:
    """Keep ``keep`` numbered copies (``.0`` newest); with 0 nothing is renamed."""
    if keep <= 0:
        return
    for i in range(keep - 1, 0, -1):
        older = f"{path}.{i - 1}"
        if os.path.exists(older):
            os.replace(older, f"{path}.{i}")
    if os.path.exists(path):
        os.replace(path, f"{path}.0")
