"""One scenario emulated on several hosts joined by VXLAN (docs/multi-host.md).

Pure parts: `hosts` (the host list and its checks), `placement` (which host runs which node),
`split` (each host's share from the one global plan).  Live parts: `join` (the VXLAN join of
cross-host link ends) and `standin` (hosts that are namespaces with a real sshd, for tests).
"""
