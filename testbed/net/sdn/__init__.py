"""The SDN controller: os-ken with one OpenFlow 1.3 app, started by the runner for scenarios
with switches.

* controller - `SdnController`: the service (topology file, launch, readiness, API socket).
* launch - ``python -m testbed.net.sdn.launch``: os-ken on loopback with the app given by module.
* l2_proactive - the core's default app: the whole L2 table installed at connect.

The contract with apps that workloads register (testbed.workloads.SdnApp): the launcher
imports the app's module and, if it defines ``configure(conf, api_socket, event_log)``, calls
it before os-ken starts; an app registered with ``api=True`` gets a Unix socket path for its
API, which the run hands to the timeline's exec commands in ``$SAGIN_SDN_API``.
"""

SOCKET_ENV = "SAGIN_SDN_API"
"""Environment variable that hands an SDN app's API socket to a scenario's `exec` commands."""
