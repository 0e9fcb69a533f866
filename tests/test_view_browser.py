"""The live view end to end in headless Chromium: a short LEO run with a link cut watched live
(names on the page, the cut link red within 2 s, a handover moving a terminal's attachment),
then the same run replayed with the slider; screenshots saved in the run folder
(view/live.png, view/replay.png) for a reviewer to look at."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from testbed.scenario.files import RESULTS
from testbed.view import browser

pytestmark = [pytest.mark.emulation, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
WHY = browser.missing()
needs_browser = pytest.mark.skipif(WHY is not None, reason=WHY or "")


def scenario(tmp_path: Path) -> Path:
    """leo-handover, 30 s, with its fiber cut from 8 s to 14 s."""
    sc = yaml.safe_load((ROOT / "topologies" / "leo-handover.yaml").read_text())
    sc["name"] = "leo-view"
    sc["duration_s"] = 30
    for f in sc["traffic"]:
        f["duration_s"] = min(f["duration_s"], 28)
    sc["timeline"] = [{"at_s": 8, "action": "link_down", "link": "fiber"},
                      {"at_s": 14, "action": "link_up", "link": "fiber"}]
    path = tmp_path / "leo-view.yaml"
    path.write_text(yaml.safe_dump(sc))
    return path


def events(run: Path) -> dict[str, dict[str, object]]:
    out = {}
    for line in (run / "events.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out[rec["event"].split(" ")[0] + ":" + str(rec.get("link"))] = rec
    return out


@needs_browser
def test_live_then_replay(tmp_path: Path) -> None:
    # in results/ (not tmp): the screenshots stay for a reviewer, results/leo-view/latest/view
    results = RESULTS
    env = dict(os.environ)
    log = open(tmp_path / "run.log", "w")  # noqa: SIM115 - closed in finally
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "testbed", "run", "--file",
                             str(scenario(tmp_path)), "--view"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    run = results / "leo-view" / "latest"
    try:
        info = browser.announced(results / "leo-view", started,
                                 lambda: proc.poll() is None)
        assert info is not None, (tmp_path / "run.log").read_text()[-3000:]
        with browser.page(info["url"]) as pg:
            assert pg.evaluate("saginView.mode") == "live"
            for name in ("user1", "gw1", "cloud1"):  # names, by the page's own lists
                assert pg.locator(f'#nodes-list li[data-node="{name}"]').count() == 1
            assert pg.locator('#links-list li[data-link="fiber"]').count() == 1
            # one loop watches everything, so each change is timed when the page shows it
            terminals = ("gw1", "user1")
            first = {t: pg.evaluate(f"saginView.attachment('{t}')") for t in terminals}
            seen: dict[str, float] = {}
            deadline = time.time() + 120
            while len(seen) < 3 and time.time() < deadline and proc.poll() is None:
                snap = pg.evaluate("({fiber: saginView.link('fiber') && saginView.link("
                                   "'fiber').state, att: [" + ",".join(
                                       f"saginView.attachment('{t}')" for t in terminals)
                                   + "]})")
                now = time.time()
                if snap["fiber"] == "down":
                    seen.setdefault("down", now)
                if snap["fiber"] == "up" and "down" in seen:
                    seen.setdefault("up", now)
                if any(a != first[t] for t, a in zip(terminals, snap["att"], strict=True)):
                    seen.setdefault("handover", now)
                time.sleep(0.1)
            assert len(seen) == 3, seen
            behind = pg.evaluate("saginView.behind === undefined ? null : saginView.behind")
            (run / "view").mkdir(exist_ok=True)
            pg.screenshot(path=str(run / "view" / "live.png"))
            assert not [e for e in pg.errors if "favicon" not in e], pg.errors
        assert proc.wait(timeout=120) == 0, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)
        log.close()
    ev = events(run)
    down, up = ev["link_down:fiber"], ev["link_up:fiber"]
    lag = {k: round(seen[k] - float(e["wall"]), 3) for k, e in (("down", down), ("up", up))}
    (run / "view" / "live-latency.json").write_text(json.dumps({**lag, "behind_s": behind}))
    assert seen["down"] - float(down["wall"]) <= 2.0  # red within 2 s of the cut
    assert seen["up"] - float(up["wall"]) <= 2.0
    if behind is not None:
        assert behind <= 1.5
    handovers = [json.loads(x) for x in
                 (run / "mobility" / "handovers.jsonl").read_text().splitlines()]
    assert any(h["reason"] != "initial" for h in handovers), "no handover in 30 s"

    # the same run, replayed from its folder
    with browser.serving([str(run.resolve())], tmp_path / "replay.json") as url, \
            browser.page(url) as pg:
        assert pg.evaluate("saginView.mode") == "replay"
        t_down, t_up = float(down["actual_s"]), float(up["actual_s"])
        pg.evaluate(f"saginView.seek({t_down + 1.0})")
        assert pg.evaluate("saginView.link('fiber').state") == "down"
        pg.evaluate(f"saginView.seek({t_up + 1.5})")
        assert pg.evaluate("saginView.link('fiber').state") == "up"
        pg.evaluate("saginView.seek(2.0)")
        assert pg.evaluate("saginView.link('fiber').state") == "up"
        late = handovers[-1]
        pg.evaluate(f"saginView.seek({float(late['t_s']) + 0.5})")
        assert pg.evaluate(f"saginView.attachment('{late['terminal']}')") == late["to"]
        pg.screenshot(path=str(run / "view" / "replay.png"))
        assert not [e for e in pg.errors if "favicon" not in e], pg.errors
    assert (run / "view" / "live.png").stat().st_size > 10_000
