"""What a configuration asks for that the proxy does not carry out yet.

Such lines are read and checked in full (``squidpy parse``, ``squidpy check``
and ``squidpy ca export`` use them), but ``squidpy run`` and a reconfigure
refuse them rather than let requests through unauthenticated, unfiltered or
unrewritten.  Each entry goes once its feature becomes part of the request
exchange (issue 11).
"""

from __future__ import annotations


def not_yet_served(config) -> list[str]:
    """One sentence per feature group the proxy would not apply."""
    from squidpy.config.helper_directives import not_yet_served as helpers
    return helpers(config)
