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
"""

__version__ = "0.1.0"
