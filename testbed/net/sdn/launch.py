"""Start os-ken with one app, listening on loopback.

The app is given by module (``--app testbed.net.sdn.l2_proactive``, or the module of an app a
workload registers, e.g. the CPN steering app); the runner looks the scenario's
`services.sdn.app` up in the registry and passes the module.  If the module defines
``configure(conf, api_socket, event_log)`` it is called before os-ken starts (options, LLDP
discovery, the app's API socket): see testbed/net/sdn/__init__.py for the contract.

os-ken 4.2.2 ships no ``osken-manager`` script, and its own manager would listen on every
address and take its options from the command line and /etc.  This launcher keeps the OpenFlow
port on 127.0.0.1 (management traffic must never leak onto emulated links), reads no config
files, and turns SIGTERM into an orderly exit so the supervisor can stop it like any other
child.

Usage: python -m testbed.net.sdn.launch --topology FILE --port PORT [--ready-file FILE]
       [--log-file FILE] [--app MODULE] [--api-socket PATH] [--event-log FILE]
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from types import ModuleType

# Importing these registers os-ken's command-line options, which oslo.config refuses to accept
# once CONF() has parsed; os-ken's own manager imports them in the same order.
from os_ken import cfg, flags, log  # noqa: F401
from os_ken.base.app_manager import AppManager
from os_ken.controller import controller  # noqa: F401
from os_ken.topology import switches  # noqa: F401  (registers observe-links)

from testbed.net.sdn import l2_proactive

LISTEN_HOST = "127.0.0.1"
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}

logger = logging.getLogger("sagin.sdn.launch")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Our own small CLI, so os-ken's dozens of options cannot be set by accident."""
    p = argparse.ArgumentParser(prog="python -m testbed.net.sdn.launch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topology", required=True, help="topology JSON for the app")
    p.add_argument("--port", required=True, type=int, help="OpenFlow TCP port on 127.0.0.1")
    p.add_argument("--ready-file", default="", help="append one ready line per switch here")
    p.add_argument("--log-file", default=None, help="log here instead of stderr")
    p.add_argument("--app", default=l2_proactive.__name__, help="the app's module")
    p.add_argument("--api-socket", default="", help="Unix socket for the app's API, if any")
    p.add_argument("--event-log", default="", help="JSON lines of the app's events, if any")
    return p.parse_args(argv)


def configure(args: argparse.Namespace, app: ModuleType) -> None:
    """Initialise os-ken's global CONF the way its manager does, minus argv and config files."""
    conf = cfg.CONF
    # Empty args: os-ken must not see our argv.  No config files or dirs: a stray
    # /etc/os_ken/os_ken.conf on the host must not change the listen address.
    conf(args=[], project="os_ken", prog="sagin-sdn", default_config_files=[],
         default_config_dirs=[])
    conf.set_override("ofp_listen_host", LISTEN_HOST)
    conf.set_override("ofp_tcp_listen_port", args.port)
    conf.set_override("sagin_topology", args.topology)
    conf.set_override("sagin_ready_file", args.ready_file)
    hook = getattr(app, "configure", None)
    if hook is not None:
        hook(conf, api_socket=args.api_socket, event_log=args.event_log)
    if args.log_file:
        conf.set_override("log_file", args.log_file)
        conf.set_override("use_stderr", False)
    log.init_log()


def port_is_free(port: int) -> bool:
    """os-ken binds inside a worker thread and only logs a failure, leaving a process that looks
    alive but serves nothing; checking first turns that into an exit status."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LISTEN_HOST, port))
        except OSError:
            return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit status."""
    args = parse_args(argv)
    if not port_is_free(args.port):
        print(f"sagin-sdn: {LISTEN_HOST}:{args.port} is already in use", file=sys.stderr)
        return 2
    try:
        # The app would only fail inside os-ken's thread, as a traceback; say it plainly here.
        l2_proactive.Topology.load(args.topology)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"sagin-sdn: bad topology {args.topology}: {e!r}", file=sys.stderr)
        return 2
    try:
        app = importlib.import_module(args.app)
    except ImportError as e:
        print(f"sagin-sdn: cannot import the app {args.app}: {e}", file=sys.stderr)
        return 2
    configure(args, app)

    # Only this thread may take the stop signals (the mask is inherited by every thread os-ken
    # spawns), so sigtimedwait below sees them instead of a random worker.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            AppManager.run_apps([args.app])
        except BaseException as e:
            failed.append(e)
            logger.exception("sagin: os-ken stopped")

    # os-ken's native hub cannot kill its threads (hub.kill is a no-op) and the OpenFlow
    # server thread blocks in accept() forever, so run_apps never returns and its cleanup
    # would hang.  Running it in a daemon thread makes every thread it spawns a daemon too, so
    # the interpreter can exit once the apps have been closed.
    runner = threading.Thread(target=run, name="os-ken", daemon=True)
    runner.start()
    while runner.is_alive():
        sig = signal.sigtimedwait(STOP_SIGNALS, 0.5)
        if sig is not None:
            logger.info("sagin: %s received, stopping", signal.Signals(sig.si_signo).name)
            break
    else:
        return 1  # run_apps returned or raised on its own: start-up failed

    closer = threading.Thread(target=AppManager.get_instance().close, daemon=True)
    closer.start()
    closer.join(5.0)
    if closer.is_alive():
        logger.warning("sagin: os-ken apps did not close within 5 s; exiting anyway")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
