"""The proxy's own pages: the cache manager, /metrics, /, /proxy.pac (pure).

``request`` decides what a request for the proxy itself asks for (which
cache manager action, its password, ``cachemgr_passwd``); ``stats`` is what is
counted, once per finished transaction, and kept over time; ``actions`` lists
the cache manager's actions; ``pages`` renders each action from the
processes' reports as Squid 5 lays it out; ``prometheus`` renders /metrics;
``internal`` the other pages (/, /proxy.pac).  Nothing here touches a socket:
the Twisted layer gathers the reports (from every kid under ``workers N``) and
the exchange turns them into a reply.
"""
