"""A stock Debian kernel under qemu, for what this host's kernel lacks.

The testbed's netem, mac80211_hwsim and Open vSwitch kernel-datapath paths need kernel modules
that many build hosts (containers, cloud VMs with trimmed kernels) do not have.  Debian's own
`linux-image-amd64` has them all, so `testbed.vm` boots it with qemu, on the host's root
filesystem shared read-only over 9p, and runs one command there: the project's venv, binaries
and tests run unchanged, the kernel is the one users have.

* image - find the stock kernel and build the small initramfs (busybox + 9p/overlay modules).
* qemu - boot it, run a command, return its exit code and output; `python -m testbed vm`.
* pytest_plugin - the `kernel` mark: tests that need those modules run on the host where the
  kernel has them, otherwise together in one VM, with their results reported on the host.
"""
