"""The README's view screenshots: run a scenario with the live view, screenshot the live page
at a given run time, then replay the finished run and screenshot it at another.

    .venv/bin/python scripts/view-screenshots.py quickstart --duration 30 --live-at 20 \\
        --replay-at 25 --out docs/view
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.scenario.files import RESULTS  # noqa: E402
from testbed.view import browser  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--live-at", type=float, default=15)
    ap.add_argument("--replay-at", type=float, default=20)
    ap.add_argument("--select", help="open it in the side panel: node:<name> or link:<name>")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "view")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "testbed", "run", args.scenario, "--view",
                             "--duration", f"{args.duration:g}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        info = browser.announced(RESULTS / args.scenario, started, lambda: proc.poll() is None)
        if info is None:
            raise SystemExit("the run did not announce a view")
        with browser.page(info["url"], 1280, 800) as pg:
            browser.wait_until(pg, f"saginView.latestT >= {args.live_at}", args.duration + 120)
            if args.select:
                kind, _, name = args.select.partition(":")
                pg.evaluate(f"saginView.select({kind!r}, {name!r})")
                time.sleep(1.5)
            pg.screenshot(path=str(args.out / f"{args.scenario}-live.png"))
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
    run = (RESULTS / args.scenario / "latest").resolve()
    with browser.serving([str(run)], Path(f"/tmp/shots-{args.scenario}.json")) as url, \
            browser.page(url, 1280, 800) as pg:
        pg.evaluate(f"saginView.seek({args.replay_at})")
        if args.select:
            kind, _, name = args.select.partition(":")
            pg.evaluate(f"saginView.select({kind!r}, {name!r})")
        time.sleep(1.5)
        pg.screenshot(path=str(args.out / f"{args.scenario}-replay.png"))
    print(f"{args.out}/{args.scenario}-live.png, -replay.png from {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
