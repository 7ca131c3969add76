"""Whether a request may be tried again elsewhere: Squid 5.7's FwdState rules (pure).

A request is tried on the candidates peer selection found (each address of each
counts), at most ``forward_max_tries`` times in all.  The next candidate is tried
when:

* the connection could not be made (nothing was sent: always safe), or
* it was made but failed before any reply byte reached the client, and the
  request can be sent again: a safe or idempotent method whose body (if any)
  was not sent, or
* the reply head is a 502 or 504 (and, with ``retry_on_error on``, a 403, 500,
  501 or 503), nothing of it has reached the client yet and no request body
  was sent.

When selection found no candidate at all (``never_direct`` with every parent
dead), Squid 5.7 answers 502 with ERR_READ_ERROR and logs HIER_NONE (measured:
tests/test_forwarding_rules.py records it); after candidates that all failed,
the last failure's page is the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

SAFE_OR_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
ALWAYS_REFORWARDED = frozenset({502, 504})
REFORWARDED_ON_ERROR = frozenset({403, 500, 501, 503})

NO_CANDIDATE = ("ERR_READ_ERROR", 502)      # what Squid 5.7 answers when selection found nothing
REOPEN_PAUSE = 0.05         # Squid's ConnOpener waits this long before opening again


def reopens(connect_retries: int, failures: int, errno: int | None, time_left: float) -> bool:
    """connect_retries, as Squid 5.7's ConnOpener counts: after the ``failures``-th
    failed connect() to one address (``errno``: its error; a timeout has none and is
    not repeated), open it again while fewer than ``connect_retries`` tries failed and
    connect_timeout leaves ``time_left`` seconds beyond the pause.  So 0 and 1 both
    mean one try; these tries are not forward_max_tries' attempts."""
    return errno is not None and failures < connect_retries and time_left > REOPEN_PAUSE


def reforwardable_status(status: int, retry_on_error: bool) -> bool:
    """Squid's reforwardableStatus: a reply worth trying the next candidate for."""
    return status in ALWAYS_REFORWARDED or (retry_on_error and status in REFORWARDED_ON_ERROR)


@dataclass
class Forwarding:
    """The attempts made for one request."""

    max_tries: int
    tries: int = 0

    def attempt(self) -> None:
        """A connection attempt begins (or a retry on a reused connection)."""
        self.tries += 1

    @property
    def exhausted(self) -> bool:
        return self.tries >= self.max_tries

    def may_retry(self, method: str, connected: bool, body_sent: bool, reply_sent: bool) -> bool:
        """Squid's checkRetry: ``connected``: the failed attempt had a connection;
        ``body_sent``: some of the request body went out; ``reply_sent``: some of a
        reply reached the client."""
        if reply_sent or self.exhausted or body_sent:
            return False
        if not connected:
            return True
        return method in SAFE_OR_IDEMPOTENT

    def may_reforward(self, status: int, retry_on_error: bool, body_sent: bool) -> bool:
        """Squid's reforward(): a reply head the next candidate may do better than, while
        nothing of it reached the client and no request body was sent (Squid does not
        look at the method here)."""
        if self.exhausted or body_sent:
            return False
        return reforwardable_status(status, retry_on_error)
