"""The Computing Power Network workload (ABS service mapping, enacted by SDN) as the testbed
sees it.

Registered as the entry point ``cpn`` (pyproject.toml).  What it adds: the os-ken app
``cpn`` (``services: {sdn: {app: cpn}}``: LLDP discovery, proxy ARP, service VIP steering and
a mapping API on a Unix socket), `make bench BENCH=cpn`, `make eval-cpn`, and the headline of
a `cpn-mapping` run from results/<run>/cpn/summary.json.
"""

from __future__ import annotations

from pathlib import Path

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
