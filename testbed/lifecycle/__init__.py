"""What a run owns, and ending exactly that.

* ledger - every namespace, interface, cgroup, process and folder a run creates, written
  down before it is created (/run/sagin-hil/<run-id>.json).
* supervisor - starts every long-running process, records it, watches the critical ones.
* sh - running commands (in a namespace, `ip -batch`).

The ledger walk that ends a run (and `make clean` after a crash) is testbed.run.cleanup: it
also detaches hardware-in-the-loop boards, which sit above this package.
"""
