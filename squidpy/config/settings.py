"""The type of every implemented directive's value, as the loader leaves it on a Config.

The registry (squidpy/config/registry.py and the directive modules) stays the one
source of truth for names, parsing, defaults and documentation; this class only
declares, for the type checker, what each directive's parser returns (a ``list`` of it
for directives whose lines accumulate; ``| None`` when the directive has no default).
tests/test_config_types.py checks that these declarations and the registry agree
exactly: the same names, in the registry's order, and each type written as its
parser's return annotation.  Directives whose parser stores what it reads elsewhere
(``acl`` into ``acls``, ``request_header_replace`` into ``request_header_access``,
``cache_peer_access`` into ``cache_peer``) have no value of their own and are not here.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from squidpy.acl.access import AccessList
    from squidpy.acl.outgoing import OutgoingAddress
    from squidpy.auth.schemes import AuthConfig
    from squidpy.cache.refresh import RefreshPattern
    from squidpy.config.directives import AccessLogSpec, CacheDir, DenyInfo, SizeRule
    from squidpy.config.helper_directives import HelperTimeout
    from squidpy.config.tls_directives import CertRule, CrtdProgram
    from squidpy.config.values import ListenAddress
    from squidpy.delay import Rate
    from squidpy.helpers.external import ExternalAclType
    from squidpy.helpers.protocol import ChildConfig
    from squidpy.http.rules import HeaderRules
    from squidpy.http.upgrade import UpgradeRules
    from squidpy.log.logformat import LogFormat
    from squidpy.mgr.request import CacheMgrPasswd
    from squidpy.peers.peer import CachePeer
    from squidpy.tls.bump import SslBumpRules
    from squidpy.tls.options import TlsOptions

PacDirect = ipaddress.IPv4Network | ipaddress.IPv6Network | str
"""One pac_direct value: a network, or a domain (.example.lan) or host name."""


class Settings:
    """One attribute per implemented directive, named after it (docs/reference.md says
    what each means)."""

    # Network
    http_port: list[ListenAddress]
    visible_hostname: str
    workers: int
    configuration_includes_quoted_values: bool
    cache_effective_user: str | None
    cache_effective_group: str | None
    tcp_outgoing_address: list[OutgoingAddress]
    client_persistent_connections: bool
    server_persistent_connections: bool
    persistent_connection_after_error: bool
    half_closed_clients: bool
    hostname_aliases: list[list[str]]

    # Access control
    http_access: AccessList
    http_reply_access: AccessList
    proxy_protocol_access: AccessList
    miss_access: AccessList

    # Interception
    host_verify_strict: bool
    client_dst_passthru: bool
    spoof_client_ip: AccessList

    # Access control
    http_upgrade_request_protocols: UpgradeRules
    deny_info: dict[str, DenyInfo]

    # Logging
    logformat: dict[str, LogFormat]
    access_log: list[AccessLogSpec]
    syslog_socket: str
    cache_log: str
    pid_filename: str | None
    logfile_rotate: int

    # Headers
    via: bool
    forwarded_for: str
    request_header_access: HeaderRules
    reply_header_access: HeaderRules
    httpd_suppress_version_string: bool

    # Access control
    follow_x_forwarded_for: AccessList
    acl_uses_indirect_client: bool
    log_uses_indirect_client: bool
    delay_pool_uses_indirect_client: bool

    # Timeouts (seconds)
    connect_timeout: float
    read_timeout: float
    request_timeout: float
    request_start_timeout: float
    client_lifetime: float
    pconn_lifetime: float
    write_timeout: float
    client_idle_pconn_timeout: float
    server_idle_pconn_timeout: float
    shutdown_lifetime: float

    # Limits (bytes)
    request_header_max_size: int
    reply_header_max_size: int
    request_body_max_size: int
    reply_body_max_size: list[SizeRule]
    client_ip_max_connections: int
    max_client_connections: int
    max_filedescriptors: int

    # Error pages
    error_directory: str | None
    error_default_language: str | None
    error_log_languages: bool
    email_err_data: bool
    err_html_text: str | None
    cache_mgr: str

    # Cache manager
    cachemgr_passwd: list[CacheMgrPasswd]
    metrics_port: list[ListenAddress]

    # Delay pools: pool number -> (class, FILE:LINE), (rates, FILE:LINE), rules
    delay_pools: int
    delay_class: dict[int, tuple[int, str]]
    delay_parameters: dict[int, tuple[tuple[Rate | None, ...], str]]
    delay_access: dict[int, AccessList]
    delay_initial_bucket_level: int
    client_delay_pools: int
    client_delay_parameters: dict[int, tuple[int, int, str]]
    client_delay_access: dict[int, AccessList]
    client_delay_initial_bucket_level: int

    # Proxy auto-configuration
    pac_proxy: list[str] | None
    pac_direct: list[list[PacDirect]]
    pac_plain_hosts_direct: bool
    pac_fallback: str

    # DNS
    dns_nameservers: list[tuple[str, int]] | None
    append_domain: str | None
    hosts_file: str | None
    dns_timeout: float
    positive_dns_ttl: float
    negative_dns_ttl: float
    ipcache_size: int
    ipcache_low: int
    ipcache_high: int
    fqdncache_size: int

    # Cache
    cache_dir: CacheDir | None
    cache_replacement_policy: str
    memory_replacement_policy: str
    cache_mem: int
    maximum_object_size: int
    minimum_object_size: int
    maximum_object_size_in_memory: int
    cache: AccessList
    refresh_pattern: list[RefreshPattern]
    max_stale: float
    minimum_expiry_time: float
    reload_into_ims: bool
    refresh_all_ims: bool
    quick_abort_min: int
    quick_abort_max: int
    quick_abort_pct: int
    cache_miss_revalidate: bool
    offline_mode: bool
    range_offset_limit: list[SizeRule]
    collapsed_forwarding: bool

    # Peers
    cache_peer: list[CachePeer]
    always_direct: AccessList
    never_direct: AccessList
    prefer_direct: bool
    nonhierarchical_direct: bool
    forward_max_tries: int
    connect_retries: int
    retry_on_error: bool
    dead_peer_timeout: float
    peer_connect_timeout: float

    # ICP (query timeouts in milliseconds)
    icp_port: int
    udp_incoming_address: str
    icp_access: AccessList
    icp_query_timeout: int
    maximum_icp_query_timeout: int
    minimum_icp_query_timeout: int
    background_ping_rate: float
    icp_hit_stale: bool
    log_icp_queries: bool

    # Authentication
    auth_param: AuthConfig
    authenticate_ttl: float
    authenticate_ip_ttl: float
    authenticate_cache_garbage_interval: float

    # External ACL helpers
    external_acl_type: dict[str, ExternalAclType]

    # URL rewriting and store IDs
    url_rewrite_program: list[str] | None
    url_rewrite_children: ChildConfig
    url_rewrite_access: AccessList
    url_rewrite_bypass: bool
    url_rewrite_extras: str
    url_rewrite_timeout: HelperTimeout | None
    url_rewrite_host_header: bool
    store_id_program: list[str] | None
    store_id_children: ChildConfig
    store_id_access: AccessList
    store_id_bypass: bool
    store_id_extras: str

    # TLS and SslBump
    ssl_bump: SslBumpRules
    bump_denied_connect: bool
    sslproxy_cert_error: AccessList
    sslproxy_cert_sign: list[CertRule]
    sslproxy_cert_adapt: list[CertRule]
    sslproxy_cert_sign_hash: str | None
    tls_outgoing_options: TlsOptions
    https_port: list[ListenAddress]
    sslcrtd_program: CrtdProgram
    sslcrtd_children: ChildConfig
