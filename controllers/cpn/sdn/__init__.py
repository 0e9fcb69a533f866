"""The CPN workload's SDN side: an os-ken app registered with the testbed as `cpn`.

* steering - the app: LLDP discovery, proxy ARP, service VIP steering with rewrite and
  meters, rerouting on link events (launched by testbed.net.sdn.launch, which calls its
  `configure` hook).
* plan - the rules as data: paths, flow tables, diffs.
* api - the mapping API on a Unix socket (server in the app, `ApiClient` for callers).
* bench - the SDN side of `make bench BENCH=cpn`: setup time, meters, reroute outage.
"""
