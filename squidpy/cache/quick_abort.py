"""Squid's quick_abort: does a fetch go on when its client goes away? (src/store_client.cc,
CheckQuickAbortIsReasonable), as a pure function of what the exchange knows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from squidpy.config.loader import Config


@dataclass(frozen=True)
class QuickAbort:
    """quick_abort_min, quick_abort_max (bytes; min -1: always finish a cacheable fetch)
    and quick_abort_pct."""

    minimum: int = 16 * 1024
    maximum: int = 16 * 1024
    percent: int = 95

    @classmethod
    def from_config(cls, config: Config) -> "QuickAbort":
        return cls(config.quick_abort_min, config.quick_abort_max, config.quick_abort_pct)


def keeps_fetching(settings: QuickAbort, storing: bool, head_size: int, content_length: int | None,
                   received: int, waiters: int = 0, whole_for_range: bool = False) -> bool:
    """Whether the fetch of a reply whose client left goes on to the end, to be stored.

    ``storing``: its copy is being kept (Squid: a cacheable, public entry); ``head_size``,
    ``content_length``, ``received``: the reply head's bytes, the body's announced and
    received bytes; ``waiters``: exchanges collapsed onto this fetch; ``whole_for_range``:
    the whole object is fetched for a Range request (range_offset_limit none).
    """
    if waiters > 0:
        return True                             # others wait for this reply
    if not storing or head_size <= 0:
        return False
    if settings.minimum < 0:
        return True                             # quick_abort_min -1: always finish
    if whole_for_range:
        return True
    if content_length is None:
        return False                            # no limit can be applied
    expected = head_size + content_length
    current = head_size + received
    if current > expected:
        return False                            # more than announced
    if expected - current < settings.minimum:
        return True                             # only a little left
    if expected - current > settings.maximum:
        return False                            # too much left
    if expected < 100:
        return True
    return current // (expected // 100) > settings.percent     # past the point of no return
