"""The Computing Power Network workload (ABS service mapping, enacted by SDN) as the testbed
sees it.

Registered as the entry point ``cpn`` (pyproject.toml).  What it adds: the os-ken app
``cpn`` (``services: {sdn: {app: cpn}}``: LLDP discovery, proxy ARP, service VIP steering and
a mapping API on a Unix socket), `make bench BENCH=cpn`, `make eval-cpn`, and the headline of
a `cpn-mapping` run from results/<run>/cpn/summary.json.
"""

from __future__ import annotations

from pathlib import Path

from controllers.view_series import ViewData, jsonl_records, number, series
from testbed.workloads import Bench, Eval, ReportPart, SdnApp, Workload, run_output

WORKLOAD = Workload(
    name="cpn",
    about="CPN service mapping: ABS vs baselines, enacted by an os-ken steering app",
    sdn_apps=(SdnApp("cpn", "controllers.cpn.sdn.steering",
                     "LLDP discovery, service VIP steering and a mapping API "
                     "(controllers/cpn/sdn/api.py)", api=True),),
    benches=(Bench("cpn", "controllers.cpn.bench:run",
                   "CPN mapping time per request (ABS and baselines, 3 presets) and, on a real\n"
                   "OVS backbone under os-ken, request -> first packet at the chosen instance\n"
                   "and outage after a trunk cut, both from captures"),),
    evals=(Eval("cpn", "controllers.cpn.evaluate:main",
                "ABS vs baselines on the presets (acceptance, utilisation, fragmentation), "
                "claims, plots",
                {"SEEDS": "--seeds", "INSTANCE": "--instance", "PRESETS": "--presets",
                 "ALGOS": "--algos", "PAPER_LOADS": "--paper-loads"}),),
    headline="controllers.cpn.workload:headline",
    report="controllers.cpn.workload:report",
    view="controllers.cpn.workload:view_series",
)


def headline(run_dir: Path) -> list[str]:
    s = run_output(run_dir, "cpn")
    if s is None:
        return []
    setup = s.get("setup_ms") or {}
    outages = [r["gap_ms"] for r in s.get("reroutes", []) if r.get("gap_ms") is not None]
    lost = sum(1 for r in s.get("reroutes", []) if r.get("recovered") is False)
    line = (f"cpn ({s.get('algorithm')}): accepted {s.get('accepted')} of "
            f"{s.get('arrived')} services ({100 * (s.get('acceptance_live') or 0):.1f} %), "
            f"request -> first packet median {setup.get('request_to_first_packet_median')} ms")
    if outages:
        line += f", reroute outage max {max(outages):.0f} ms ({len(outages)} reroutes)"
    if lost:
        line += f", {lost} services did not recover"
    return [line]


def report(run_dir: Path, t0: float) -> ReportPart | None:
    s = run_output(run_dir, "cpn")
    if s is None:
        return None
    from testbed.analysis import report as html

    rows = [{"algorithm": name, **{k: v for k, v in m.items() if not isinstance(v, dict)}}
            for name, m in (s.get("offline_same_requests") or {}).items()]
    cols = list(rows[0]) if rows else ["algorithm"]
    return ReportPart(
        sections=[("CPN mapping: the same requests offline, every algorithm",
                   html.table_html(rows, cols))],
        numbers={"cpn_acceptance": s.get("acceptance_live")})


VIEW_SERIES = [series("cpn.services_active", "services steered", "services", "cpn"),
               series("cpn.install_ms", "service install (request -> flows confirmed)", "ms",
                      "cpn"),
               series("cpn.rerouted", "services rerouted by a link cut", "services", "cpn"),
               series("cpn.reroute_gap_ms", "reroute outage (longest gap)", "ms", "cpn")]


def view_series(run_dir: Path, t_zero_wall: float) -> ViewData | None:
    """The live view's CPN series, from the steering app's event log (logs/sdn-events.jsonl,
    appended as it acts; the orchestrator's own files are written at the end): services
    steered at each install and removal, each install's request -> flows-confirmed time, and
    at each link cut the services rerouted.  Once the run's summary exists (at the end: the
    outages are measured from the captures), each cut also gets its rerouted services'
    longest packet gap.  None for a run without the CPN app's services."""
    events = jsonl_records(run_dir / "logs" / "sdn-events.jsonl")
    if not any(e.get("event") == "service_installed" for e in events):
        return None
    # (link as the event names it, service) -> its gaps, one per cut in the order of the cuts
    # (the summary lists them so); None where the outage was not measured
    gaps: dict[tuple[str, str], list[float | None]] = {}
    for r in (run_output(run_dir, "cpn") or {}).get("reroutes", []):
        gaps.setdefault((str(r.get("link")), str(r.get("service"))), []).append(
            number(r.get("gap_ms")))
    active: set[str] = set()
    points = []
    for e in sorted(events, key=lambda e: number(e.get("t")) or 0.0):
        t = number(e.get("t"))
        if t is None:
            continue
        values: dict[str, float] = {}
        if e.get("event") == "service_installed":
            active.add(str(e.get("name")))
            values["cpn.services_active"] = float(len(active))
            install = number(e.get("install_ms"))
            if install is not None:
                values["cpn.install_ms"] = install
        elif e.get("reason") == "service_removed":
            active.discard(str(e.get("service")))
            values["cpn.services_active"] = float(len(active))
        elif e.get("reason") == "link_down":
            rerouted = [str(x) for x in e.get("rerouted") or []]
            values["cpn.rerouted"] = float(len(rerouted))
            cut = [g.pop(0) for x in rerouted if (g := gaps.get((str(e.get("link")), x)))]
            if any(g is not None for g in cut):
                values["cpn.reroute_gap_ms"] = max(g for g in cut if g is not None)
        if values:
            points.append((round(t - t_zero_wall, 3), values))
    return VIEW_SERIES, points
