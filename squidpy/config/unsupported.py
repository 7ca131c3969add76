"""Squid 5.7 directives squidpy does not implement, each with its status and why.

Registered into the one directive registry (:mod:`squidpy.config.registry`)
next to the implemented ones of :mod:`squidpy.config.directives`, so that
every Squid 5.7 directive has exactly one status; docs/squid-compat.md is
rendered from it.  A test checks the registry against Squid 5.7's list.

Ignored directives only tune what squidpy has no counterpart for (process
internals, packet marking, peers that cannot be configured); a directive whose
absence would change who gets in, what is logged, what is stored or what is
sent is refused until it is implemented.
"""

from __future__ import annotations

from squidpy.config.registry import IGNORED, OBSOLETE, REFUSED, alias, unsupported

# ---------------------------------------------------------------- ignored: no meaning here

unsupported(IGNORED, "cpu_affinity_map", "squidpy does not pin processes to CPUs")
unsupported(IGNORED, "shared_memory_locking memory_pools memory_pools_limit sleep_after_fork",
            "a Squid memory or process tuning knob; squidpy's memory is Python's")
unsupported(IGNORED, "hopeless_kid_revival_delay", "squidpy's master restarts a dead worker at once")
unsupported(IGNORED, "coredump_dir", "squidpy writes no core files")
unsupported(IGNORED, "pinger_enable pinger_program netdb_filename netdb_low netdb_high netdb_ping_period "
            "query_icmp test_reachability",
            "squidpy has no ICMP pinger; it only served peer selection")
unsupported(IGNORED, "diskd_program unlinkd_program logfile_daemon",
            "a helper program of Squid's own; squidpy does this work in-process")
unsupported(IGNORED, "cache_swap_low cache_swap_high store_dir_select_algorithm max_open_disk_fds "
            "cache_swap_state store_objects_per_bucket store_avg_object_size",
            "a tuning knob of Squid's ufs/rock stores; squidpy's cache_dir evicts by its size in MB")
unsupported(IGNORED, "memory_cache_shared shared_transient_entries_limit",
            "squidpy workers do not share a memory cache; each has its own")
unsupported(IGNORED, "read_ahead_gap client_request_buffer_max_size tcp_recv_bufsize",
            "a buffer size; squidpy's flow control keeps its buffers bounded by itself")
unsupported(IGNORED, "debug_options", "squidpy's cache_log level is fixed (squidpy run -d prints it)")
unsupported(IGNORED, "mail_from mail_program", "squidpy does not send mail when it dies")
unsupported(IGNORED, "umask", "squidpy creates files with the umask it was started with")
unsupported(IGNORED, "announce_period announce_host announce_file announce_port",
            "the cache announcement service no longer exists")
unsupported(IGNORED, "buffered_logs", "squidpy always buffers access_log lines and writes them every second")
unsupported(IGNORED, "stats_collection", "squidpy's statistics count every request")
unsupported(IGNORED, "dns_retransmit_interval dns_packet_max ignore_unknown_nameservers",
            "a tuning knob of Squid's DNS client; squidpy's DNS cache keeps answers for their TTL")
unsupported(IGNORED, "incoming_udp_average incoming_tcp_average incoming_dns_average min_udp_poll_cnt "
            "min_dns_poll_cnt min_tcp_poll_cnt accept_filter pipeline_prefetch",
            "a tuning knob of Squid's event loop")
unsupported(IGNORED, "high_response_time_warning high_page_fault_warning high_memory_warning "
            "windows_ipaddrchangemonitor",
            "a Squid self-monitoring or platform knob")
unsupported(IGNORED, "happy_eyeballs_connect_timeout happy_eyeballs_connect_gap happy_eyeballs_connect_limit",
            "squidpy tries an origin's addresses one after the other")
unsupported(IGNORED, "tcp_outgoing_tos clientside_tos tcp_outgoing_mark mark_client_packet "
            "mark_client_connection qos_flows",
            "squidpy does not mark packets (TOS/DSCP, netfilter marks)")
unsupported(IGNORED, "mime_table icon_directory global_internal_static short_icon_urls",
            "icons for FTP listings, which squidpy does not make")
unsupported(IGNORED, "ftp_user ftp_passive ftp_epsv_all ftp_epsv ftp_eprt ftp_sanitycheck ftp_telnet_protocol "
            "ftp_client_idle_timeout",
            "squidpy does not fetch ftp:// URLs itself, so FTP settings have no effect")
unsupported(IGNORED, "minimum_direct_hops minimum_direct_rtt",
            "squidpy makes no ICMP (netdb) measurements, so no site counts as close enough to go direct to")
unsupported(IGNORED, "mcast_groups mcast_miss_addr mcast_miss_ttl mcast_miss_port mcast_miss_encode_key "
            "mcast_icp_query_timeout", "squidpy sends and joins no multicast ICP (multicast peers are refused)")
unsupported(IGNORED, "digest_generation digest_bits_per_entry digest_rebuild_period digest_rewrite_period "
            "digest_swapout_chunk_size digest_rebuild_chunk_percentage",
            "squidpy makes no cache digest for its peers (and asks theirs for none)")
unsupported(IGNORED, "udp_outgoing_address", "squidpy queries its ICP peers from the icp_port socket "
            "(udp_incoming_address)")
unsupported(IGNORED, "htcp_access htcp_clr_access", "squidpy answers no HTCP queries (htcp_port is refused)")
unsupported(IGNORED, "snmp_access snmp_incoming_address snmp_outgoing_address",
            "squidpy has no SNMP agent (snmp_port is refused)")
unsupported(IGNORED, "tproxy_uses_indirect_client",
            "a tproxy connection to an origin is made from the connecting client's own address")
unsupported(IGNORED, "ssl_unclean_shutdown", "squidpy tolerates TLS peers that close without close_notify")
unsupported(IGNORED, "ssl_engine", "squidpy uses no OpenSSL engine (hardware acceleration)")
unsupported(IGNORED, "sslproxy_session_ttl sslproxy_session_cache_size",
            "squidpy's TLS ports keep OpenSSL's own session cache")
unsupported(IGNORED, "sslpassword_program",
            "squidpy reads unencrypted private keys only (keep them 0600; an encrypted one is an error)")
unsupported(IGNORED, "icap_connect_timeout icap_io_timeout icap_service_failure_limit icap_service_revival_delay "
            "icap_preview_enable icap_preview_size icap_206_enable icap_default_options_ttl "
            "icap_persistent_connections adaptation_send_client_ip adaptation_send_username "
            "icap_client_username_header icap_client_username_encode adaptation_service_iteration_limit "
            "adaptation_masterx_shared_names adaptation_meta icap_retry icap_retry_limit icap_log "
            "adaptation_uses_indirect_client",
            "no effect without ICAP or eCAP services, which squidpy refuses")
unsupported(IGNORED, "ident_timeout", "no effect without ident lookups, which squidpy refuses")
unsupported(IGNORED, "allow_underscore", "no effect while check_hostnames is off")
unsupported(IGNORED, "as_whois_server", "no effect without src_as or dst_as ACLs, which squidpy refuses")
unsupported(IGNORED, "eui_lookup", "no effect without arp or eui64 ACLs, which squidpy refuses")
unsupported(IGNORED, "esi_parser", "Debian's Squid is built without ESI, and so is squidpy")
unsupported(IGNORED, "httpd_accel_surrogate_id", "no effect without accel ports, which squidpy refuses")
unsupported(IGNORED, "err_page_stylesheet", "squidpy's built-in error pages carry their own style")

# ---------------------------------------------------------------- refused until implemented

unsupported(REFUSED, "auth_schemes", "choosing the authentication schemes offered")
unsupported(REFUSED, "adapted_http_access", "a second access check after adaptation")
unsupported(REFUSED, "ident_lookup_access", "ident (RFC 931) lookups, which change what is logged")
unsupported(REFUSED, "on_unsupported_protocol", "tunnelling of non-HTTP traffic")
unsupported(REFUSED, "ftp_port", "listening for FTP clients")
unsupported(REFUSED, "sslcrtvalidator_program sslcrtvalidator_children",
            "an external helper validating origin certificates")
unsupported(REFUSED, "sslproxy_foreign_intermediate_certs",
            "intermediate certificates for origins that do not send their whole chain")
unsupported(REFUSED, "neighbor_type_domain", "a cache_peer of another type for some domains")
unsupported(REFUSED, "memory_cache_mode", "choosing which objects the memory cache keeps", accepts=("always",))
unsupported(REFUSED, "cache_store_log", "the store.log", accepts=("none",))
unsupported(REFUSED, "log_mime_hdrs", "logging request and reply headers", accepts=("off",))
unsupported(REFUSED, "client_netmask", "masking client addresses in logs")
unsupported(REFUSED, "strip_query_terms", "removing query terms from logged URLs (squidpy logs them whole)",
            accepts=("off",))
unsupported(REFUSED, "send_hit store_miss collapsed_forwarding_access", "access lists on cache hits and stores")
unsupported(REFUSED, "vary_ignore_expire negative_ttl", "this cache policy setting")
unsupported(REFUSED, "broken_posts request_entities force_request_body_continuation",
            "this handling of request bodies")
unsupported(REFUSED, "note", "transaction annotations")
unsupported(REFUSED, "relaxed_header_parser uri_whitespace", "Squid's leniency rules for malformed requests")
unsupported(REFUSED, "forward_timeout", "this timeout")
unsupported(REFUSED, "detect_broken_pconn server_pconn_for_nonretriable", "this connection persistence rule")
unsupported(REFUSED, "unique_hostname", "another name for forwarding-loop detection")
unsupported(REFUSED, "http_accel_surrogate_remote", "Surrogate-Control processing")
unsupported(REFUSED, "response_delay_pool response_delay_pool_access",
            "bandwidth limits per reply shared by the kids (delay_pools are implemented)")
unsupported(REFUSED, "wccp_router wccp2_router wccp_version wccp2_rebuild_wait wccp2_forwarding_method "
            "wccp2_return_method wccp2_assignment_method wccp2_service wccp2_service_info wccp2_weight "
            "wccp_address wccp2_address", "WCCP traffic redirection")
unsupported(REFUSED, "snmp_port", "the SNMP agent", accepts=("0",))
unsupported(REFUSED, "htcp_port", "HTCP", accepts=("0",))
unsupported(REFUSED, "icap_enable", "ICAP", accepts=("off",))
unsupported(REFUSED, "ecap_enable", "eCAP", accepts=("off",))
unsupported(REFUSED, "icap_service icap_class icap_access ecap_service loadable_modules adaptation_service_set "
            "adaptation_service_chain adaptation_access", "content adaptation (ICAP, eCAP)")
unsupported(REFUSED, "check_hostnames", "host name validation", accepts=("off",))
unsupported(REFUSED, "dns_defnames dns_multicast_local", "this DNS name rule")
unsupported(REFUSED, "chroot", "running in a chroot")
unsupported(REFUSED, "client_db", "turning off the per-client counts maxconn ACLs read",
            accepts=("on",))

# ---------------------------------------------------------------- obsolete in Squid 5.7

unsupported(OBSOLETE, "broken_vary_encoding cache_vary error_map external_refresh_check location_rewrite_program "
            "location_rewrite_access location_rewrite_children location_rewrite_concurrency refresh_stale_hit",
            "a Squid-2 option Squid 3 and later do not support; remove it")
unsupported(OBSOLETE, "dns_v4_first", "remove it: Squid 5 no longer prefers IPv4 DNS answers")
unsupported(OBSOLETE, "cache_peer_domain cache_host_domain", "use dstdomain ACLs with cache_peer_access instead")
unsupported(OBSOLETE, "ie_refresh", "remove it: browsers no longer need it")
unsupported(OBSOLETE, "sslproxy_cafile sslproxy_capath sslproxy_cipher sslproxy_client_certificate "
            "sslproxy_client_key sslproxy_flags sslproxy_options sslproxy_version",
            "Squid 5 turns it into a tls_outgoing_options setting: write that instead", refuse=True)
unsupported(OBSOLETE, "hierarchy_stoplist",
            "remove it: always_direct or cache_peer_access ACLs keep requests away from peers")
unsupported(OBSOLETE, "log_access", "use ACLs on access_log lines instead (Squid refuses this line too)",
            refuse=True)
unsupported(OBSOLETE, "log_icap", "use ACLs on icap_log lines instead (Squid refuses this line too)", refuse=True)
unsupported(OBSOLETE, "ignore_ims_on_miss", "the feature is now cache_miss_revalidate, with the opposite value",
            accepts=("off",))
unsupported(OBSOLETE, "balance_on_multiple_ip dns_v4_fallback",
            "remove it: origins' addresses are tried in turn (Happy Eyeballs in Squid)")
unsupported(OBSOLETE, "chunked_request_body_max_size", "remove it: chunked requests are HTTP/1.1")
unsupported(OBSOLETE, "emulate_httpd_log", "use an access_log line with the common or combined logformat")
unsupported(OBSOLETE, "forward_log", "use an access_log line with ACLs that select the misses")
unsupported(OBSOLETE, "ftp_list_width", "remove it: FTP listings are styled by CSS")
unsupported(OBSOLETE, "ignore_expect_100 server_http11 upgrade_http0.9",
            "remove it: the HTTP feature is supported by default")
unsupported(OBSOLETE, "log_fqdn", "remove it: log client names with %>A in a logformat")
unsupported(OBSOLETE, "log_ip_on_direct", "remove it: log origin names or addresses with %<A or %<a")
unsupported(OBSOLETE, "maximum_single_addr_tries", "replaced by connect_retries, which works differently")
unsupported(OBSOLETE, "referer_log referrer_log", "use an access_log line with the referrer logformat")
unsupported(OBSOLETE, "useragent_log", "use an access_log line with the useragent logformat")
unsupported(OBSOLETE, "update_headers", "remove it: stores update headers where they can")
unsupported(OBSOLETE, "url_rewrite_concurrency",
            "use the concurrency= option of url_rewrite_children")
unsupported(OBSOLETE, "dns_testnames", "remove it: DNS is not tested at start")
unsupported(OBSOLETE, "extension_methods", "remove it: every valid HTTP method is accepted")
unsupported(OBSOLETE, "zero_buffers incoming_rate", "remove it")
unsupported(OBSOLETE, "zph_local zph_mode zph_option zph_parent zph_sibling", "use qos_flows instead")
unsupported(OBSOLETE, "header_access", "use request_header_access or reply_header_access instead")
unsupported(OBSOLETE, "httpd_accel_no_pmtu_disc", "use the disable-pmtu-discovery option of http_port")
unsupported(OBSOLETE, "wais_relay_host wais_relay_port", "use a cache_peer instead")

# ---------------------------------------------------------------- Squid's other names

for _name, _canonical in {
    "ascii_port": "http_port", "http_access2": "adapted_http_access", "tcp_outgoing_ds": "tcp_outgoing_tos",
    "tcp_outgoing_dscp": "tcp_outgoing_tos", "clientside_mark": "mark_client_packet",
    "cache_access_log": "access_log", "cache_swap_log": "cache_swap_state",
    "redirect_program": "url_rewrite_program", "redirect_children": "url_rewrite_children",
    "redirect_rewrites_host_header": "url_rewrite_host_header", "redirector_access": "url_rewrite_access",
    "redirector_bypass": "url_rewrite_bypass", "storeurl_rewrite_program": "store_id_program",
    "storeurl_rewrite_children": "store_id_children", "storeurl_rewrite_access": "store_id_access",
    "storeurl_rewrite_bypass": "store_id_bypass", "no_cache": "cache",
    "icap_uses_indirect_client": "adaptation_uses_indirect_client", "header_replace": "request_header_replace",
    "collapsed_forwarding_shared_entries_limit": "shared_transient_entries_limit",
    "persistent_request_timeout": "client_idle_pconn_timeout", "pconn_timeout": "server_idle_pconn_timeout",
    "udp_port": "icp_port", "incoming_icp_average": "incoming_udp_average",
    "incoming_http_average": "incoming_tcp_average", "min_icp_poll_cnt": "min_udp_poll_cnt",
    "min_http_poll_cnt": "min_tcp_poll_cnt", "icap_send_client_ip": "adaptation_send_client_ip",
    "icap_send_client_username": "adaptation_send_username", "max_filedesc": "max_filedescriptors",
}.items():
    alias(_name, _canonical)
