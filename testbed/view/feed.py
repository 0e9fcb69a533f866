"""A run folder as the view's data: the static topology, then frames of what changed.

One reader for live and replay: while a run goes, the files it already writes grow line by
line (positions.csv, link-state.csv, handovers.jsonl, events.jsonl, logs/link-load.jsonl,
the probes' and pings' output, the iperf3 servers' interval lines) and `poll()` returns what
was appended since the last call; after the run, the first `poll()` returns everything.  So a
replay shows exactly what the live page showed, and the view never talks to the run itself:
a slow or closed browser cannot stall it.

Times are seconds after the run's time zero (manifest `time_zero_wall`); names, never
addresses: probe and ping lines are mapped back to links and flows through network.json.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from testbed.analysis.names import Names
from testbed.scenario.files import FileProblem, read_json, read_yaml

R_EARTH_KM = 6371.0
Frame = dict[str, Any]
# a workload's series: (run_dir, t_zero_wall) -> (declarations, [(t_s, {key: value})])
SeriesFn = Callable[[Path, float], tuple[list[dict[str, Any]],
                                         list[tuple[float, dict[str, float]]]]]

# [1796572124.882063] 64 bytes from 198.19.255.252: icmp_seq=1 ttl=62 time=14.2 ms
PING_LINE = re.compile(r"^\[(\d+\.\d+)\] .*icmp_seq=(\d+) .*time=([\d.]+) ms")
# [1796572122.56221] 198.18.1.2  : [0], 64 bytes, 6.27 ms (6.27 avg, 0% loss)
FPING_LINE = re.compile(r"^\[(\d+\.\d+)\] (\S+)\s*: \[\d+\], \d+ bytes, ([\d.]+) ms")
# [  5]   0.00-1.00   sec   732 KBytes  5.99 Mbits/sec  [0.052 ms  0/208 (0%)]
IPERF_LINE = re.compile(r"^\[\s*\d+\]\s+([\d.]+)-([\d.]+)\s+sec\s+[\d.]+ \S+\s+([\d.]+) "
                        r"([KMG]?)bits/sec(.*)$")
UNIT = {"": 1e-6, "K": 1e-3, "M": 1.0, "G": 1e3}


class Tail:
    """The complete lines appended to a file since the last call (none while it is absent)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.rest = path, 0, b""

    def lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        self.offset += len(data)
        data = self.rest + data
        cut = data.rfind(b"\n") + 1
        self.rest = data[cut:]
        return data[:cut].decode(errors="replace").splitlines()


class CsvTail(Tail):
    """Rows of a CSV file being appended to, as dicts keyed by its header."""

    header: list[str] | None = None

    def rows(self) -> list[dict[str, str]]:
        lines = self.lines()
        if self.header is None and lines:
            self.header = next(csv.reader([lines.pop(0)]))
        if not lines or self.header is None:
            return []
        return [dict(zip(self.header, r, strict=False))
                for r in csv.reader(io.StringIO("\n".join(lines)))]


def _json_lines(lines: Iterable[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _load(path: Path) -> Any:
    try:
        return read_yaml(path) if path.suffix == ".yaml" else read_json(path)
    except (OSError, FileProblem):
        return None


def footprint_km(alt_km: float, min_elevation_deg: float) -> float:
    """Ground radius of the area that sees a satellite at `alt_km` above the elevation mask."""
    e = math.radians(min_elevation_deg)
    return R_EARTH_KM * (math.acos(R_EARTH_KM * math.cos(e) / (R_EARTH_KM + alt_km)) - e)


class RunFeed:
    """Topology and frames of one run folder.  `live`: the run may still be writing."""

    def __init__(self, run_dir: Path, live: bool = False,
                 workload_series: SeriesFn | None = None) -> None:
        self.dir, self.live = run_dir, live
        self.workload_series = workload_series
        self.sc: dict[str, Any] = _load(run_dir / "scenario.resolved.yaml") or {}
        self.net: dict[str, Any] = _load(run_dir / "network.json") or {}
        self.world: dict[str, Any] = _load(run_dir / "world.json") or {}
        self.t_zero: float | None = None
        self._tails: dict[str, Tail] = {}
        # interface address -> link: the probes' answers by link name (the analysis's map)
        self._link_of = Names.from_network(self.net).links
        self.links = self._plan_links()  # the run's links, as the page draws them
        self._flow_start: dict[str, float] = {}
        self._ping_seen: dict[str, tuple[int, int]] = {}  # flow -> (received, highest seq)
        self._sent: set[tuple[float, str]] = set()
        self._series_at = 0.0
        self.series: list[dict[str, Any]] = []
        self._headline: list[str] | None = None
        self._headline_at = 0.0
        self._geo = bool(self.world.get("satellites")) or any(
            isinstance(n, dict) and n.get("location") for n in self.nodes_spec().values())
        origin = (self.sc.get("mobility") or {}).get("origin") or {}
        self.origin = (float(origin.get("lat_deg", 47.3977)), float(origin.get("lon_deg", 8.5456)),
                       float(origin.get("alt_m", 0.0)) / 1000.0)

    # ---- static -------------------------------------------------------------------------------
    def nodes_spec(self) -> dict[str, Any]:
        nodes = self.sc.get("nodes")
        return nodes if isinstance(nodes, dict) else {}

    def manifest(self) -> dict[str, Any]:
        return _load(self.dir / "manifest.json") or {}

    def _plan_links(self) -> list[dict[str, Any]]:
        spec = {lk["name"]: lk for lk in self.sc.get("links", []) if isinstance(lk, dict)}
        dynamic = self.world.get("links") or {}  # name -> {"ends", "role"} (world.describe)
        out = []
        for seg in self.net.get("segments", []):
            ends_of: dict[str, list[str]] = {}
            for m in seg.get("members", []):
                ends_of.setdefault(m["link"], []).append(m["node"])
            switches = seg.get("switches") or []
            for link in seg.get("links", []):
                s = spec.get(link, {})
                ends = list(s.get("endpoints") or dynamic.get(link, {}).get("ends")
                            or ends_of.get(link, []) + switches[:1])
                out.append({
                    "name": link, "medium": seg.get("medium"),
                    "role": dynamic.get(link, {}).get("role", "static"),
                    "ends": ends,
                    "configured": {k: s.get(k) for k in ("delay_ms", "rate_mbps", "loss_pct")},
                    "dynamic": link in dynamic})
        return out

    def _kinds(self) -> dict[str, str]:
        kinds = {n: str(v.get("kind", "")) for n, v in self.nodes_spec().items()
                 if isinstance(v, dict)}
        for sat in self.world.get("satellites") or []:
            kinds.setdefault(sat, "satellite")
        for n in self.net.get("namespaces") or {}:
            kinds.setdefault(n, "ground_user")
        return kinds

    def _to_local(self, lat: float, lon: float, alt_km: float) -> list[float]:
        """Small-area east/north/up metres from the origin (the view's local map)."""
        lat0, lon0, alt0 = self.origin
        north = math.radians(lat - lat0) * R_EARTH_KM * 1000
        east = math.radians(lon - lon0) * R_EARTH_KM * 1000 * math.cos(math.radians(lat0))
        return [round(east, 2), round(north, 2), round((alt_km - alt0) * 1000, 2)]

    def _from_local(self, xyz: list[float]) -> list[float]:
        lat0, lon0, alt0 = self.origin
        lat = lat0 + math.degrees(xyz[1] / (R_EARTH_KM * 1000))
        lon = lon0 + math.degrees(xyz[0] / (R_EARTH_KM * 1000 * math.cos(math.radians(lat0))))
        return [round(lat, 6), round(lon, 6), round(alt0 + xyz[2] / 1000, 4)]

    def _pos(self, spec: dict[str, Any]) -> list[float] | None:
        if spec.get("location"):
            loc = spec["location"]
            p = [float(loc["lat_deg"]), float(loc["lon_deg"]), float(loc.get("alt_m", 0)) / 1000]
            return p if self._geo else self._to_local(*p)
        if spec.get("position"):
            xyz = [float(v) for v in spec["position"]]
            return self._from_local(xyz) if self._geo else xyz
        return None

    def _first_positions(self) -> dict[str, list[float]]:
        """Positions in the first second of positions.csv (satellites, moving nodes)."""
        out: dict[str, list[float]] = {}
        path = self.dir / "mobility" / "positions.csv"
        if not path.is_file():
            return out
        with open(path, newline="") as f:
            first_t = None
            for row in csv.DictReader(f):
                if first_t is None:
                    first_t = row["t_s"]
                if row["t_s"] != first_t:
                    break
                out[row["node"]] = self._geo_row(row)
        return out

    def _geo_row(self, row: dict[str, str]) -> list[float]:
        p = [float(row["lat_deg"]), float(row["lon_deg"]), float(row["alt_km"])]
        return p if self._geo else self._to_local(*p)

    def _place_rest(self, pos: dict[str, list[float] | None], links: list[dict[str, Any]]
                    ) -> None:
        """Nodes with no place (switches, servers): beside their first placed neighbour, so
        the map shows them where the network has them, not at the origin."""
        nbrs: dict[str, list[str]] = {}
        for lk in links:
            for a in lk["ends"]:
                nbrs.setdefault(a, []).extend(b for b in lk["ends"] if b != a)
        step = 0.25 if self._geo else 40.0
        placed_near: dict[str, int] = {}
        for _ in range(len(pos) + 1):
            todo = [n for n, p in pos.items() if p is None]
            if not todo:
                return
            progress = False
            for n in todo:
                anchor = next((b for b in nbrs.get(n, []) if pos.get(b) is not None), None)
                if anchor is None:
                    continue
                k = placed_near.get(anchor, 0)
                placed_near[anchor] = k + 1
                ax = pos[anchor]
                assert ax is not None
                angle = -math.pi / 2 + k * 0.9  # first one straight below, then round
                dy, dx = step * math.sin(angle), step * math.cos(angle)
                pos[n] = ([ax[0] + dy, ax[1] + dx, 0.0] if self._geo
                          else [ax[0] + dx, ax[1] + dy, 0.0])
                progress = True
            if not progress:  # nothing placed at all: a circle
                for i, n in enumerate(todo):
                    a = 2 * math.pi * i / len(todo)
                    r = 2.0 if self._geo else 200.0
                    base = [self.origin[0], self.origin[1]] if self._geo else [0.0, 0.0]
                    pos[n] = [base[0] + r * math.sin(a), base[1] + r * math.cos(a), 0.0]
                return

    def topology(self) -> dict[str, Any]:
        links = self.links
        kinds = self._kinds()
        first = self._first_positions()
        specs = self.nodes_spec()
        names = list(dict.fromkeys([*specs, *(self.net.get("namespaces") or {}),
                                    *(self.world.get("satellites") or [])]))
        pos: dict[str, list[float] | None] = {
            n: first.get(n) or self._pos(specs.get(n) or {}) for n in names}
        self._place_rest(pos, links)
        moving = set(self.world.get("moving_nodes") or []) | set(self.world.get("satellites")
                                                                   or [])
        ips = self.net.get("primary_ip") or {}
        nodes = [{"name": n, "kind": kinds.get(n, ""), "pos": pos[n], "moving": n in moving,
                  "ip": ips.get(n)} for n in names]
        flows = [{k: f.get(k) for k in ("name", "kind", "src", "dst", "start_s", "duration_s",
                                        "rate_mbps")}
                 for f in self.sc.get("traffic", []) if isinstance(f, dict)]
        const = self.sc.get("constellation") or {}
        groups = self.sc.get("access") or []
        mask = next((g.get("min_elevation_deg") for g in groups
                     if isinstance(g, dict) and g.get("min_elevation_deg") is not None),
                    const.get("include_min_elevation_deg", 25.0) if const else None)
        self._refresh_series(force=True)
        return {
            "run": self.run_info(),
            "frame": "geo" if self._geo else "local",
            "origin": list(self.origin[:2]),
            "nodes": nodes, "links": links, "flows": flows, "series": self.series,
            "footprint_min_elevation_deg": mask if self.world.get("satellites") else None,
        }

    def run_info(self) -> dict[str, Any]:
        man = self.manifest()
        mob = self.sc.get("mobility") or {}
        return {"scenario": self.sc.get("name") or man.get("scenario"),
                "run_id": man.get("run_id") or self.dir.name, "live": self.live,
                "status": man.get("status"), "phase": man.get("phase"),
                "duration_s": self.sc.get("duration_s"),
                "time_scale": self.world.get("time_scale", mob.get("time_scale", 1.0)),
                "epoch_unix": self.world.get("epoch_unix"), "headline": self.headline()}

    def headline(self) -> list[str]:
        """What the run was for, in a few lines: each flow's result and every workload's
        headline (the console summary's last lines).  Recomputed at most every 5 s while a
        run goes (workloads read their files), once for a replay."""
        now = time.monotonic()
        if self._headline is not None and (not self.live or now - self._headline_at < 5.0):
            return self._headline
        from testbed.run.summary import core_headline, headlines

        lines: list[str] = []
        metrics = _load(self.dir / "metrics.json") or {}
        for name, f in (metrics.get("flows") or {}).items():
            if f.get("rtt_ms_median") is not None:
                lines.append(f"{name}: RTT median {f['rtt_ms_median']} ms, "
                             f"loss {f.get('loss_pct', 0)} %")
            elif f.get("goodput_mbps") is not None:
                lines.append(f"{name}: goodput {f['goodput_mbps']} Mbit/s")
        lines += core_headline(metrics)
        lines += headlines(self.dir)
        self._headline, self._headline_at = lines, now
        return lines

    # ---- frames -------------------------------------------------------------------------------
    def _tail(self, rel: str, kind: type[Tail] = Tail) -> Any:
        if rel not in self._tails:
            self._tails[rel] = kind(self.dir / rel)
        return self._tails[rel]

    def _rel(self, wall: float) -> float:
        assert self.t_zero is not None
        return round(max(0.0, wall - self.t_zero), 3)

    def now(self) -> float | None:
        """The run's current time (live), or None before time zero / after the run."""
        if self.t_zero is None or not self.live:
            return None
        return round(time.time() - self.t_zero, 3)

    def ended(self) -> bool:
        man = self.manifest()
        return not self.live or man.get("status") not in (None, "starting", "running")

    def poll(self) -> list[Frame]:
        """Frames of everything appended since the last call, in time order."""
        if self.t_zero is None:
            zero = self.manifest().get("time_zero_wall")
            if zero is None:
                return []
            self.t_zero = float(zero)
        out: dict[float, Frame] = {}

        def at(t: float) -> Frame:
            t = round(t, 1)
            return out.setdefault(t, {"t": t})

        for row in self._tail("mobility/positions.csv", CsvTail).rows():
            try:
                at(float(row["t_s"])).setdefault("pos", {})[row["node"]] = self._geo_row(row)
            except (KeyError, ValueError):
                continue
        for row in self._tail("mobility/link-state.csv", CsvTail).rows():
            try:
                up, routed = row["up"] == "1", row["routed"] == "1"
                at(float(row["t_s"])).setdefault("links", {})[row["link"]] = {
                    "up": up, "routed": routed, "delay_ms": float(row["delay_ms"]),
                    "rate_mbps": float(row["rate_mbps"]), "loss_pct": float(row["loss_pct"]),
                    "state": "up" if up and routed else "unusable"}
            except (KeyError, ValueError):
                continue
        for rec in _json_lines(self._tail("mobility/handovers.jsonl").lines()):
            if rec.get("reason") == "initial":
                continue
            f = at(float(rec.get("t_s", 0.0)))
            f.setdefault("handovers", []).append(
                {k: rec.get(k) for k in ("group", "terminal", "from", "to")})
            links = f.setdefault("links", {})
            for sat in (rec.get("from"), rec.get("to")):
                name = self._access_link(rec.get("group"), rec.get("terminal"), sat)
                if name:
                    links.setdefault(name, {})["state"] = "handover"
        for rec in _json_lines(self._tail("events.jsonl").lines()):
            self._event(rec, at)
        for rec in _json_lines(self._tail("logs/link-load.jsonl").lines()):
            if rec.get("t") is None:
                continue
            f = at(float(rec["t"]))
            f.setdefault("load", {}).update(rec.get("links") or {})
            cpu = rec.get("nodes") or {}
            if cpu:
                nodes = f.setdefault("nodes", {})
                for n, v in cpu.items():
                    nodes.setdefault(n, {})["cpu_pct"] = v
        for rec in _json_lines(self._tail("logs/node-status.jsonl").lines()):
            # what a workload knows of a node (a vehicle's battery, mode): {"wall", "node", ...}
            node, wall = rec.pop("node", None), rec.pop("wall", None)
            if isinstance(node, str) and isinstance(wall, (int, float)):
                at(self._rel(float(wall))).setdefault("nodes", {}).setdefault(node, {}).update(
                    {k: v for k, v in rec.items() if isinstance(v, (int, float, str, bool))})
        self._probes(at)
        self._pings(at)
        self._iperf(at)
        self._metrics(at)
        return [out[t] for t in sorted(out)]

    def _access_link(self, group: Any, terminal: Any, sat: Any) -> str | None:
        access = self.world.get("access") or {}
        try:
            return access[group][terminal][sat]
        except (KeyError, TypeError):
            return None

    def _event(self, rec: dict[str, Any], at: Callable[[float], Frame]) -> None:
        t = float(rec.get("actual_s", rec.get("planned_s", 0.0)))
        text = str(rec.get("event", ""))
        action = rec.get("action") or text.split(" ", 1)[0]
        ev = {"text": text, "action": action, "ok": bool(rec.get("ok"))}
        for k in ("link", "node", "flow", "error"):
            if rec.get(k) is not None:
                ev[k] = rec[k]
        f = at(t)
        f.setdefault("events", []).append(ev)
        if action == "start_flow" and rec.get("flow"):
            self._flow_start[rec["flow"]] = t
        elif action == "start_flow":  # runs before events carried fields: "start_flow name"
            self._flow_start[text.split(" ", 1)[-1]] = t
        if not ev["ok"]:
            return
        link = rec.get("link")
        if action in ("link_down", "link_up") and link and not rec.get("node"):
            f.setdefault("links", {}).setdefault(link, {}).update(
                up=action == "link_up", state="up" if action == "link_up" else "down")
        elif action == "set_link" and link:
            f.setdefault("links", {}).setdefault(link, {}).update(
                {k: rec[k] for k in ("delay_ms", "rate_mbps", "loss_pct")
                 if rec.get(k) is not None})
        elif action in ("node_crash", "node_restart") and rec.get("node"):
            up = action == "node_restart"
            for lk in self.links:
                if rec["node"] in lk["ends"] and len(lk["ends"]) == 2:
                    f.setdefault("links", {}).setdefault(lk["name"], {}).update(
                        up=up, state="up" if up else "down")

    def _probes(self, at: Callable[[float], Frame]) -> None:
        folder = self.dir / "probes"
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*.txt")):
            for line in self._tail(f"probes/{path.name}").lines():
                m = FPING_LINE.match(line)
                link = self._link_of.get(m.group(2)) if m else None
                if m is None or link is None:
                    continue
                at(self._rel(float(m.group(1)))).setdefault("rtt", {})[link] = float(m.group(3))

    def _pings(self, at: Callable[[float], Frame]) -> None:
        folder = self.dir / "flows"
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*.ping.txt")):
            flow = path.name[:-len(".ping.txt")]
            for line in self._tail(f"flows/{path.name}").lines():
                m = PING_LINE.match(line)
                if m is None:
                    continue
                got, top = self._ping_seen.get(flow, (0, 0))
                got, top = got + 1, max(top, int(m.group(2)))
                self._ping_seen[flow] = (got, top)
                at(self._rel(float(m.group(1)))).setdefault("flows", {})[flow] = {
                    "rtt_ms": float(m.group(3)),
                    "loss_pct": round(100.0 * max(0, top - got) / top, 2)}

    def _iperf(self, at: Callable[[float], Frame]) -> None:
        """Goodput per second from the iperf3 servers' interval lines (written as they go:
        the clients' JSON appears only when a flow ends)."""
        for f in self.sc.get("traffic", []):
            if not isinstance(f, dict) or f.get("kind") not in ("tcp", "udp"):
                continue
            name = f.get("name")
            tail = self._tail(f"logs/{f.get('dst')}/iperf3-server-{name}.log")
            for line in tail.lines():
                m = IPERF_LINE.match(line)
                start = self._flow_start.get(str(name))
                if m is None or start is None:
                    continue
                t0, t1 = float(m.group(1)), float(m.group(2))
                if t1 - t0 > 1.5 or "sender" in line or "receiver" in line:
                    continue  # the end-of-test summary
                point: dict[str, float] = {
                    "goodput_mbps": round(float(m.group(3)) * UNIT[m.group(4)], 3)}
                loss = re.search(r"\(([\d.]+)%\)", m.group(5))
                if loss:
                    point["loss_pct"] = float(loss.group(1))
                at(start + t1).setdefault("flows", {})[str(name)] = point

    def _refresh_series(self, force: bool = False) -> list[tuple[float, dict[str, float]]]:
        if self.workload_series is None or (self.t_zero is None and not force):
            return []
        now = time.monotonic()
        if not force and now - self._series_at < 1.0:
            return []
        self._series_at = now
        try:
            series, points = self.workload_series(self.dir, self.t_zero or 0.0)
        except Exception:  # noqa: BLE001 - a workload's view numbers never break the view
            return []
        self.series = series
        return points

    def _metrics(self, at: Callable[[float], Frame]) -> None:
        """The workloads' points not sent yet - also late ones with an earlier time (a task
        whose result came back after a later task's), placed at their own time."""
        for t, values in self._refresh_series():
            for key, v in values.items():
                if (t, key) not in self._sent:
                    self._sent.add((t, key))
                    at(t).setdefault("metrics", {})[key] = v
