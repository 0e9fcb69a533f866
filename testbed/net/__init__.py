"""The emulated network: from a scenario to live namespaces, links, switches and routes.

* plan - the NetworkPlan: names, /24 subnets, addresses, switch ports, routes (pure data, no
  host assumptions: what a later multi-host placement will split).
* network - `Network`: builds the plan on this host (namespaces, veths, link engines, OVS,
  the SDN controller, cgroups), applies runtime link changes, reroutes; `preflight`.
* switching - Open vSwitch (userspace datapath), one private instance per run.
* routing - route installation through one persistent `ip -batch` per namespace, by diff.
* health - services alive, switches programmed, every node reaches every other.
* calibration - the emulator's own per-hop delay, measured before time zero.
* sdn/ - the SDN controller: os-ken with the core's l2-proactive app or one a workload
  registers (the CPN steering app), launched on the switch namespace's loopback.
"""
