"""`python -m testbed.view RUN_DIR` (replay; `make view RUN=...`), `--live` (what a run
starts for `--view`: follows the folder while the run writes it), `--synthetic 200x500` (the
frame-rate benchmark's scene)."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

from testbed.view.server import assets_missing, serve


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.view", description=__doc__)
    ap.add_argument("run", nargs="?", help="a run folder (results/<scenario>/<run-id>)")
    ap.add_argument("--live", action="store_true", help="follow a run that is still going")
    ap.add_argument("--synthetic", metavar="NODESxLINKS", help="a synthetic scene, e.g. 200x500")
    ap.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=int(os.environ.get("SAGIN_VIEW_PORT", "0")),
                    help="port (default: SAGIN_VIEW_PORT or any free one)")
    ap.add_argument("--token", default=os.environ.get("SAGIN_VIEW_TOKEN"),
                    help="the URL's token (default: a new random one)")
    ap.add_argument("--announce", type=Path,
                    help="write {url, pid} to this JSON file once listening (for the runner)")
    args = ap.parse_args(argv)
    missing = assets_missing()
    if missing:
        print(f"the view's web assets are not installed ({', '.join(missing)}): run `make "
              "setup` (it runs npm ci in testbed/view/web)", file=sys.stderr)
        return 2
    token = args.token or secrets.token_urlsafe(16)
    if args.synthetic:
        from testbed.view.synthetic import SyntheticFeed

        try:
            n, m = (int(v) for v in args.synthetic.lower().split("x"))
        except ValueError:
            ap.error("--synthetic: NODESxLINKS, e.g. 200x500")
        source = SyntheticFeed(n, m)
    else:
        if not args.run:
            ap.error("give a run folder (results/<scenario>/<run-id>), or --synthetic")
        run = Path(args.run)
        if not (run / "manifest.json").is_file():
            ap.error(f"{run}: not a run folder (no manifest.json); runs are under "
                     "results/<scenario>/, e.g. results/quickstart/latest")
        from testbed.view.feed import RunFeed
        from testbed.view.workloads import series_of_workloads

        source = RunFeed(run.resolve(), live=args.live, workload_series=series_of_workloads)

    def announce(url: str) -> None:
        if args.announce is not None:
            tmp = args.announce.with_suffix(".tmp")
            tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}))
            tmp.chmod(0o600)
            tmp.replace(args.announce)
        print(f"view: {url}", flush=True)

    def on_exit(stats: dict[str, Any]) -> None:
        # a live view's own cost, for the run folder (the view bench reads it)
        if args.live and args.run:
            Path(args.run, "logs", "view-stats.json").write_text(json.dumps(stats))

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # the run's teardown: leave through serve()'s finally

    signal.signal(signal.SIGTERM, stop)
    try:
        serve(source, token, args.host, args.port, announce, on_exit)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"view: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
