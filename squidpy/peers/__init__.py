"""Other proxies: ``cache_peer`` parents and siblings, as Squid 5.7 uses them (pure).

* :mod:`.peer`: one ``cache_peer`` line read into a :class:`~.peer.CachePeer`.
* :mod:`.hashing`: the CARP, sourcehash and userhash arithmetic, bit for bit as
  Squid computes it, so squidpy and Squid pick the same parent for a request.
* :mod:`.health`: whether a peer is up (connect failures, probes, ICP silence),
  with the clock passed in.
* :mod:`.selection`: Squid's peer selection (direct or hierarchy, in which
  order) and the hierarchy codes the access log shows.
* :mod:`.forwarding`: when a request may be tried on the next candidate.
* :mod:`.icp`: ICP (RFC 2186) messages to and from bytes.

Nothing here touches a socket or reads a clock.
"""
