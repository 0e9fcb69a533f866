"""SAGIN-HIL: a hardware-in-the-loop emulation testbed for Space-Air-Ground Integrated Networks.

The data flows one way through the package:

    scenario file --(testbed.scenario)--> validated Scenario
                  --(testbed.net.plan)------> NetworkPlan (names, addresses, routes; pure data)
                  --(testbed.net.network)---> live namespaces, links, switches (on this host)
                  --(testbed.run.runner)----> services, health checks, timeline, captures
                  --(testbed.run.metrics)---> results/<scenario>/<run-id>/

Every resource a run creates is written to a ledger first (testbed.lifecycle.ledger), so that a
normal end, Ctrl-C, a failure and `make clean` after SIGKILL all remove exactly what the
run created and nothing else.

This package is the core and imports no workload: workloads (task offloading, CPN, the edge
LLM, drones, the payload agent, consensus) register with it through entry points
(testbed.workloads; docs/architecture.md has the layers and how to add one).
"""

__version__ = "0.1.0"
