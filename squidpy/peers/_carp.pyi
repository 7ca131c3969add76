"""squidpy/peers/_carp.c: CARP's running hash and the ranking of peers, in C."""

def order(keys: tuple[bytes, ...], scoring: bytes) -> bytes | tuple[int, ...]:
    """The peers' indices by falling score (ties to the earlier; not above 0 or NaN left
    out): peer ``i``'s key (``hashing.pack_scoring``) is added to the running hash before peer ``i`` is scored."""
