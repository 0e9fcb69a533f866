"""Emulated devices: what kind of computer a node stands for, and how it is made that slow.

* profiles - device profiles (Jetson, Raspberry Pi, UAV MEC, edge, cloud) and the CPU quota
  that emulates one on this host.  Standard library only: the payload agent imports it on
  boards too (testbed/hil/boards.py bundles it).
* cgroups - a node's control group (cgroup v1 or v2): CPU quota and memory limit.
"""
