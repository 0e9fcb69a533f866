"""Hardware in the loop: physical boards (Jetson, Raspberry Pi) in place of emulated nodes.

* inventory - the inventory file (boards, SSH, which node each replaces), validated.
* boards - preflight over SSH, deploying the registered board agent (testbed.workloads
  BoardAgent: the payload agent), the tunnel into the replaced node's namespace, detach.
* boardsim - a board stand-in (a namespace running a real sshd) for tests.
"""
