"""Payloads: the services that run on the emulated network's compute nodes.

Modules, one job each:

* protocol - the wire format (length-prefixed JSON header + binary body) and its limits.
* agent - `PayloadAgent`: executes offloaded tasks on a node, with an emulated CPU (weighted
  processor sharing at the node's clock rate) or a real, calibrated CPU kernel;
  ``python -m payloads.agent`` runs one.
* client - `submit`, `health` and `AgentConnection`, for offloading controllers and benches.
* inference - the image-inference task (a seeded CNN, torch), imported on first use only.
* sensors - temperatures and GPU load for resource reports (tegrastats, vcgencmd, thermal).
* profiles - device profiles (Jetson, Raspberry Pi, UAV MEC, edge, cloud) whose CPU quota and
  memory limit the testbed gives an emulated node.

Imports nothing heavy, so that ``python -m payloads.agent`` starts fast inside a namespace.
"""
