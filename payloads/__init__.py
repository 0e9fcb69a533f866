"""Payloads: the services that run on the emulated network's compute nodes.

Modules, one job each:

* protocol - the wire format (length-prefixed JSON header + binary body) and its limits.
* agent - `PayloadAgent`: executes offloaded tasks on a node, with an emulated CPU (weighted
  processor sharing at the node's clock rate) or a real, calibrated CPU kernel;
  ``python -m payloads.agent`` runs one.
* client - `submit`, `health` and `AgentConnection`, for offloading controllers and benches.

Imports nothing heavy, so that ``python -m payloads.agent`` starts fast inside a namespace.
"""
