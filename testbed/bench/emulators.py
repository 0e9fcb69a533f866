"""Emulators (issue 29): our bring-up time, CPU, memory and constellation-update delay on the
setting of arXiv 2604.04498 ("An experimental evaluation of satellite constellation
emulators", 2026), beside what that paper publishes for StarryNet, OpenSN and Celestial.

The scenario is topologies/emulator-eval.yaml (10 adjacent planes of a 53-deg 72x22 shell,
all 220 satellites instantiated, +Grid ISLs, WetLinks' two sites and a gateway, ping at 0.1 s,
15-s iperf3 runs).  Each run is started as a user starts it (`python -m testbed run
emulator-eval`), `SAGIN_BENCH_RUNS` times (default 3), and measured from outside:

* bring-up: command -> time zero (first packet may flow), with the run's own phases
  (plan, namespaces, ns-3 start, tap attach, addresses/routes, health check), and the
  CPU-seconds the run's processes spent before time zero;
* CPU: total CPU-seconds of every process of the run (getrusage of reaped children), and in
  the steady state (time zero + 5 s .. end - 5 s) the CPU of the run's process tree
  (/proc/<pid>/stat of every descendant, reaped children included) and of the whole machine
  (/proc/stat), as % of the machine and in cores;
* memory: drop of MemAvailable 2 s after time zero (kernel included: namespaces, ns-3
  taps) and the PSS of the run's process tree in the steady state;
* constellation-update delay: every 10 Hz mobility tick sends one batch of link changes to
  the link engine, stamped with its due time and sent `LEAD_S` ahead; ns-3 logs, per batch,
  when it received and applied it (logs/link-changes.jsonl).  Lateness = applied - due (what
  the emulated network sees); work per update = the driver's compute time (geometry,
  handovers, the batch) + delivery (send -> received by the engine); changes per update.

Why per core: the paper's machine and ours differ (this one: `nproc` cores).  CPU is put in
hardware-independent units: cores used (utilisation % x cores / 100) and CPU-seconds per
satellite per emulated second; bring-up as seconds and as core-seconds of capacity
(seconds x cores, an upper bound of the work a parallel bring-up could have used).  Latencies
(update delay) are not normalised.  Where the paper gives no value, or gives it only in a
figure we could not read, the cell says so (`PUBLISHED` below, docs/emulator-eval.md).

Beside the emulators' OWN papers (`OWN_PAPERS`, `compare_own_papers`): what StarryNet (NSDI
2023), OpenSN (TPDS 2025 / arXiv 2507.03248) and Celestial (Middleware 2022) report about
themselves, on their own setting and hardware - never arXiv 2604.04498's values.  Normalised
per 100 nodes (value / nodes x 100, linear scaling assumed) and, for bring-up, per core
(seconds x cores / nodes x 100: core-seconds of capacity per 100 nodes); update delay is not
normalised (`OWN_NORMALISATION`).  `--from-json PATH` recomputes it from a saved result.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from testbed.bench.scale import time_zero_of, watch_run
from testbed.mobility.driver import LEAD_S
from testbed.run.results import RESULTS
from testbed.sweep.procs import descendants

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = "emulator-eval"
SATELLITES = 220  # 10 planes x 22, every one a node (include: all)
STEADY_MARGIN_S = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAPER = "arXiv 2604.04498"
NOT_ACCESSIBLE = ("not in the text accessible to us (only the abstract and a third-party "
                  "summary could be retrieved)")


@dataclass(frozen=True)
class Published:
    """One figure of the paper: the value (None where we have none), its unit, and where it
    is (section/table/figure) or why it is missing."""

    value: float | None
    unit: str
    source: str


@dataclass(frozen=True)
class Emulator:
    name: str
    how: str  # what it virtualises and how it sets links (from the emulators' own docs)
    metrics: dict[str, Published] = field(default_factory=dict)


def _missing(unit: str) -> Published:
    return Published(None, unit, f"{PAPER}: {NOT_ACCESSIBLE}")


METRICS = {  # key: (label, unit)
    "bring_up_s": ("bring-up (command -> ready)", "s"),
    "cpu_util_pct": ("CPU utilisation, steady state", "% of machine"),
    "memory_mb": ("memory, steady state", "MB"),
    "update_delay_ms": ("constellation-update delay", "ms"),
}

# The paper's figures per emulator.  None of them could be read (docs/emulator-eval.md: the
# stored copy of the paper holds its opening only); the qualitative finding that *was*
# retrievable - "StarryNet-dev ... achieved the fastest bring-up times and lowest CPU
# utilisation among the three" (third-party summary, arxivlens) - is in the doc, not here.
PUBLISHED: list[Emulator] = [
    Emulator("StarryNet", "Docker containers, links as veth + tc netem",
             {k: _missing(u) for k, (_, u) in METRICS.items()}),
    Emulator("StarryNet-dev", "StarryNet with a custom container runtime and Netlink APIs",
             {k: _missing(u) for k, (_, u) in METRICS.items()}),
    Emulator("OpenSN", "Docker containers, etcd key-value store, eBPF-assisted links",
             {k: _missing(u) for k, (_, u) in METRICS.items()}),
    Emulator("Celestial", "Firecracker microVMs, links by tc/eBPF",
             {k: _missing(u) for k, (_, u) in METRICS.items()}),
]
PAPER_HARDWARE: dict[str, Any] = {"cpu": None, "cores": None, "ram_gb": None,
                                  "source": f"{PAPER}: {NOT_ACCESSIBLE}"}


# ------------------------------------------------------------------ normalisation (pure)


def cores_used(util_pct_of_machine: float, cores: int) -> float:
    """Utilisation of a whole machine (100 % = every core busy) in cores: 50 % of 2 cores
    and 6.25 % of 16 cores are both one core's work."""
    if cores <= 0:
        raise ValueError(f"cores must be positive, got {cores}")
    return util_pct_of_machine / 100.0 * cores


def cpu_s_per_sat_per_s(cpu_s: float, satellites: int, seconds: float) -> float:
    """CPU-seconds per emulated satellite per emulated second: the cost of keeping one
    satellite alive, whatever the machine's size."""
    if satellites <= 0 or seconds <= 0:
        raise ValueError("satellites and seconds must be positive")
    return cpu_s / (satellites * seconds)


def per_core(metric: str, value: float | None, cores: int | None) -> float | None:
    """A metric in hardware-independent units: utilisation -> cores used, bring-up ->
    core-seconds of capacity (seconds x cores); memory and latencies are kept as they are."""
    if value is None or cores is None:
        return None
    if metric == "cpu_util_pct":
        return round(cores_used(value, cores), 3)
    if metric == "bring_up_s":
        return round(value * cores, 2)
    return value


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, None where either is missing or theirs is zero."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return round(ours / theirs, 3)


def compare(ours: dict[str, float | None], our_cores: int,
            emulators: list[Emulator] | None = None,
            their_cores: int | None = None) -> dict[str, dict[str, Any]]:
    """Per emulator and metric: their value, ours, the raw ratio and the per-core ratio
    (both sides in the units of `per_core`; None where the paper's hardware is unknown)."""
    their_cores = their_cores if their_cores is not None else PAPER_HARDWARE["cores"]
    out: dict[str, dict[str, Any]] = {}
    for emu in emulators if emulators is not None else PUBLISHED:
        rows: dict[str, Any] = {}
        for key, pub in emu.metrics.items():
            mine = ours.get(key)
            rows[key] = {
                "theirs": pub.value, "unit": pub.unit, "source": pub.source, "ours": mine,
                "ratio_ours_to_theirs": ratio(mine, pub.value),
                "ours_per_core": per_core(key, mine, our_cores),
                "theirs_per_core": per_core(key, pub.value, their_cores),
                "ratio_per_core": ratio(per_core(key, mine, our_cores),
                                        per_core(key, pub.value, their_cores)),
            }
        out[emu.name] = rows
    return out


# ------------------------------------------- beside the emulators' OWN papers (pure)
#
# Not arXiv 2604.04498's values: what each emulator's own paper reports, measured on its own
# setting (constellation size, links) and its own hardware.  Kept apart from `PUBLISHED` so the
# two can never be mixed up; every row carries OWN_LABEL.

OWN_LABEL = ("from the emulator's own paper, on its own setting and hardware "
             "(not arXiv 2604.04498's values)")
NODES = 224  # what emulator-eval instantiates: 220 satellites + 2 user sites, gateway, server
LINKS = 475  # 418 ISLs + 56 GSL candidates + 1 fibre (make check NAME=emulator-eval)
NOT_READ = "no value in the text of the paper we could read"

OWN_METRICS = {  # key: (label, our unit, key in our summary `ours`)
    "bring_up_s": ("bring-up (start -> emulated network ready)", "s", "bring_up_s"),
    "cpu": ("CPU, steady state", "cores used", "run_cores"),
    "memory": ("memory, steady state", "MB (PSS)", "memory_mb"),
    "update_delay_ms": ("constellation/link-state update", "ms", "update_delay_ms"),
}

OWN_NORMALISATION = (
    "Per 100 satellites: value / satellites x 100 (bring-up s, CPU cores, memory MB), "
    "satellites because the papers give constellation sizes in satellites (ours: 220; our 4 "
    "ground nodes are not counted); this assumes the cost grows linearly with the "
    "constellation, which neither side has shown across the other's size.  Per core: bring-up "
    "x cores / satellites x 100 = core-seconds of machine capacity per 100 satellites (a "
    "bring-up on a bigger machine may use more cores; this charges it all of them).  CPU "
    "compares cores used; a percentage whose basis (which machine, how many cores) is not "
    "stated is shown but not compared.  Update delay is a latency: not normalised.  Ratios "
    "are ours / theirs (< 1: ours is smaller).  Satellites, links, core speed, container vs "
    "namespace, and what 'ready' means differ between papers: a ratio is an order of "
    "magnitude, not a ranking.")


@dataclass(frozen=True)
class OwnFigure:
    """One overhead figure from an emulator's own paper, as reported (value in `unit`).

    `value` None = not found in the text we could read (never estimated).  `comparable`
    False = the number is shown but no ratio is formed (e.g. a CPU % whose machine/cores
    basis is not stated).  `inferred` names what is our reading rather than stated next to the
    number (e.g. which table row a size belongs to).  `relative` = a factor the paper gives
    against another emulator instead of an absolute value (OpenSN: 5-10x faster than
    StarryNet), kept as text and never turned into a number: the baseline ran on the citing
    paper's setting and machine, not on the baseline's own."""

    emulator: str
    metric: str  # key of OWN_METRICS
    value: float | None
    unit: str
    satellites: int | None  # constellation size the value was measured at
    cores: int | None  # physical cores of the machine(s) it was measured on
    citation: str
    note: str = ""
    comparable: bool = True
    inferred: str = ""
    relative: str | None = None


OWN_HARDWARE: dict[str, dict[str, Any]] = {
    "StarryNet": {
        "machine": "8 x Dell R740, each 2 x Intel Xeon 5222 (4 cores, 3.8 GHz) = 8 cores, "
                   "8 x 32 GB DDR4, Ubuntu 20.04-LTS, on one LAN (64 cores in all); 1 to 7 "
                   "of them as workers depending on the constellation (Table 2)",
        "cores_per_server": 8, "servers": 8,
        "sizes": "Table 2: from about 300 satellites (Telesat T1, 27x13) to 4408 (Starlink "
                 "phase I, five shells); also Kuiper full 3236, Telesat full 1671",
        "citation": "Lai et al., StarryNet, USENIX NSDI 2023, §6 and Table 2",
        "read_in": "third-party texts, not the PDF: a transcription of §6 "
                   "(blog.bxhu2004.com/sci/Networks/StarryNet/eva: machine) and public "
                   "reading notes that quote Table 2 (a GitHub markdown, search-index id "
                   "67162333925: times, CPU %, memory %, workers); verify against the PDF",
    },
    "OpenSN": {
        "machine": None,
        "sizes": "five-shell Starlink, 4408 satellites, emulated (abstract)",
        "citation": "Lu et al., OpenSN, IEEE TPDS 36(8):1574-1590, 2025 (arXiv 2507.03248v1); "
                    "APNet 2024 version",
        "read_in": "abstracts only (arXiv 2507.03248, APNet 2024 via research.buaa.edu.cn); "
                   "the body of the stored arXiv HTML was not reachable",
    },
    "Celestial": {
        "machine": None,
        "sizes": None,
        "citation": "Pfandzelter & Bermbach, Celestial, ACM/IFIP Middleware 2022, "
                    "doi:10.1145/3528535.3531517 (arXiv 2204.06282)",
        "read_in": "abstract and project docs only (openfogstack.github.io/celestial); the "
                   "docs' limits (254 shells, 16,384 satellites per shell) are not overhead",
    },
}

_SN = "Lai et al., StarryNet, NSDI 2023, Table 2 (via third-party notes; see read_in)"
_OSN = "Lu et al., OpenSN, IEEE TPDS 2025 / arXiv 2507.03248, abstract"
_CEL = "Pfandzelter & Bermbach, Celestial, Middleware 2022, abstract"
_PCT = ("percentage of a machine whose basis (one worker, all workers, cores or threads) the "
        "notes do not state: not compared")
OWN_PAPERS: list[OwnFigure] = [
    OwnFigure("StarryNet", "bring_up_s", 1272.0, "s", 4408, 56, _SN,
              "21.2 min = 13.3 min nodes + 7.9 min links; Starlink phase I, 5 shells; 7 "
              "workers x 8 cores"),
    OwnFigure("StarryNet", "bring_up_s", 192.0, "s", 351, 8, _SN,
              "3.2 min, the notes' 'small scale'",
              inferred="that it is the Telesat T1 row (27x13 = 351 satellites, the smallest in "
                       "Table 2) on 1 worker is our reading of the notes"),
    OwnFigure("StarryNet", "cpu", 39.6, "%", 4408, None, _SN,
              f"1-s update interval; {_PCT}", comparable=False),
    OwnFigure("StarryNet", "cpu", 7.2, "%", 1584, None, _SN,
              f"Starlink one shell, 1-s update interval; {_PCT}", comparable=False),
    OwnFigure("StarryNet", "memory", 10.4, "%", 4408, None, _SN,
              "1-s update interval; percentage of RAM whose basis is not stated: not "
              "compared", comparable=False),
    OwnFigure("StarryNet", "update_delay_ms", None, "ms", None, None, _SN,
              f"{NOT_READ} (§4.4.2 describes per-satellite event threads, no delay figure in "
              "the notes)"),
    OwnFigure("OpenSN", "bring_up_s", None, "s", None, None, _OSN,
              f"{NOT_READ}: seconds, sizes and machine are in the body/figures",
              relative="constructs mega-constellations 5-10x faster than StarryNet"),
    OwnFigure("OpenSN", "cpu", None, "cores", None, None, _OSN, NOT_READ),
    OwnFigure("OpenSN", "memory", None, "MB", None, None, _OSN, NOT_READ),
    OwnFigure("OpenSN", "update_delay_ms", None, "ms", None, None, _OSN,
              f"{NOT_READ}: ms, sizes and machine are in the body/figures",
              relative="updates link state 2-4x faster than LeoEM (Mininet-based; the APNet "
                       "abstract says 'than Mininet')"),
    *(OwnFigure("Celestial", m, None, u, None, None, _CEL,
                f"{NOT_READ}: the abstract says it emulates 'efficiently ... which we show "
                "empirically'; the numbers are in the body")
      for m, u in (("bring_up_s", "s"), ("cpu", "cores"), ("memory", "MB"),
                   ("update_delay_ms", "ms"))),
]


def ratio_sig(ours: float | None, theirs: float | None, digits: int = 3) -> float | None:
    """ours / theirs to `digits` significant figures (ratios against other papers span orders
    of magnitude; a fixed 3 decimals would round 0.0031 to 0.003), None where either side is
    missing or theirs is zero."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return float(f"{ours / theirs:.{digits}g}")


def per_100_sats(metric: str, value: float | None, satellites: int | None) -> float | None:
    """value / satellites x 100 for the additive costs (bring-up s, CPU cores, memory MB);
    None for the update delay (a latency does not add up per satellite) and where a side is
    unknown.  Assumes linear scaling in the constellation size."""
    if value is None or not satellites or metric == "update_delay_ms":
        return None
    return round(value / satellites * 100.0, 4)


def core_s_per_100_sats(metric: str, value: float | None, satellites: int | None,
                        cores: int | None) -> float | None:
    """Bring-up x cores per 100 satellites: core-seconds of machine capacity per 100
    satellites (a bring-up on a bigger machine may use more cores; this charges it all of
    them).  Only defined for bring-up."""
    if metric != "bring_up_s" or value is None or not satellites or not cores:
        return None
    return round(value * cores / satellites * 100.0, 4)


def compare_own_papers(ours: dict[str, Any], our_cores: int | None = None,
                       our_satellites: int = SATELLITES,
                       figures: list[OwnFigure] | None = None) -> list[dict[str, Any]]:
    """One row per figure of `figures` (default OWN_PAPERS): their value, unit, size and
    cores; ours (from a bench summary: results/bench/emulators.json["ours"]) in our unit; both
    per 100 satellites and, for bring-up, in core-seconds per 100 satellites; the ratios
    ours / theirs raw, per 100 satellites and per core (None where the figure is missing, not
    comparable, or a side's size/cores is unknown).  Normalisation: OWN_NORMALISATION.
    `status`: compared | compared (inferred: ...) | shown, not compared | relative factor
    only | not found."""
    cores = our_cores if our_cores is not None else ours.get("cores")
    rows: list[dict[str, Any]] = []
    for f in figures if figures is not None else OWN_PAPERS:
        if f.metric not in OWN_METRICS:
            raise ValueError(f"OwnFigure {f.emulator}: unknown metric {f.metric!r} "
                             f"(one of {', '.join(OWN_METRICS)})")
        label, our_unit, our_key = OWN_METRICS[f.metric]
        mine = ours.get(our_key)
        mine = mine if isinstance(mine, int | float) else None
        use = f.value is not None and f.comparable
        theirs = f.value if use else None
        o100 = per_100_sats(f.metric, mine, our_satellites)
        t100 = per_100_sats(f.metric, theirs, f.satellites)
        ocore = core_s_per_100_sats(f.metric, mine, our_satellites, cores)
        tcore = core_s_per_100_sats(f.metric, theirs, f.satellites, f.cores)
        if f.value is None:
            status = "relative factor only" if f.relative else "not found"
        elif not f.comparable:
            status = "shown, not compared"
        else:
            status = f"compared (inferred: {f.inferred})" if f.inferred else "compared"
        rows.append({
            "emulator": f.emulator, "metric": f.metric, "label": label,
            "source_kind": OWN_LABEL, "citation": f.citation, "note": f.note,
            "theirs": f.value, "their_unit": f.unit, "their_satellites": f.satellites,
            "their_cores": f.cores, "relative": f.relative, "inferred": f.inferred or None,
            "ours": mine, "our_unit": our_unit, "our_satellites": our_satellites,
            "our_cores": cores,
            "ours_per_100_sats": o100, "theirs_per_100_sats": t100,
            "ours_core_s_per_100_sats": ocore, "theirs_core_s_per_100_sats": tcore,
            "ratio_raw": ratio_sig(mine, theirs) if f.unit == our_unit else None,
            "ratio_per_100_sats": ratio_sig(o100, t100),
            "ratio_per_core": ratio_sig(ocore, tcore),
            "status": status,
        })
    return rows


def own_papers_from_json(path: Path) -> dict[str, Any]:
    """Recompute the own-papers comparison from a saved bench result (no run): reads `ours`
    and `machine.cores` of results/bench/emulators.json (or any file of that shape)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"{path}: cannot read a bench result ({e}); give the JSON written by "
                         "`make bench BENCH=emulators` (results/bench/emulators.json)") from e
    ours = doc.get("ours")
    if not isinstance(ours, dict):
        raise SystemExit(f"{path}: no 'ours' summary in it; give the JSON written by "
                         "`make bench BENCH=emulators`")
    cores = ours.get("cores") or (doc.get("machine") or {}).get("cores")
    return own_papers_doc(ours, cores)


def own_papers_doc(ours: dict[str, Any], cores: int | None) -> dict[str, Any]:
    return {"label": OWN_LABEL, "normalisation": OWN_NORMALISATION,
            "our_satellites": SATELLITES, "our_nodes": NODES, "our_links": LINKS,
            "our_cores": cores,
            "hardware": OWN_HARDWARE,
            "rows": compare_own_papers(ours, cores)}


def percentile(xs: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 1]) of xs, None when empty."""
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def lead_s(rate_hz: float) -> float:
    """How far ahead of its due time the driver sends a tick's batch (driver._loop)."""
    return min(LEAD_S, 0.4 / rate_hz)


def update_delays(records: list[dict[str, Any]], rate_hz: float = 10.0) -> dict[str, Any]:
    """Per-batch timing from the engine's link-changes log.  Batches without a due time
    (`at`) are the bring-up's initial state, counted apart.  Lateness = applied - due;
    delivery = received - (due - lead), the time from the driver's send to the engine."""
    lead = lead_s(rate_hz)
    late, delivery, changes, initial = [], [], [], []
    for r in records:
        op = r.get("op", {})
        n = len(op.get("ops", [])) if op.get("op") == "batch" else 1
        at = op.get("at")
        if at is None:
            initial.append(n)
            continue
        late.append((r["wall"] - at) * 1e3)
        delivery.append((r["received"] - (at - lead)) * 1e3)
        changes.append(n)

    def r3(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    return {
        "batches": len(late), "initial_batches": len(initial),
        "initial_changes": sum(initial),
        "lateness_ms_p50": r3(percentile(late, 0.5)), "lateness_ms_p99": r3(percentile(late, 0.99)),
        "lateness_ms_max": r3(max(late)) if late else None,
        "late_over_20ms": sum(1 for x in late if x > 20.0),
        "delivery_ms_p50": r3(percentile(delivery, 0.5)),
        "delivery_ms_p99": r3(percentile(delivery, 0.99)),
        "changes_per_update_mean": r3(statistics.fmean(changes)) if changes else None,
        "changes_per_update_p50": percentile(changes, 0.5),
        "changes_per_update_max": max(changes) if changes else None,
        "changes_total": sum(changes),
    }


# ------------------------------------------------------------------ measuring one run


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    total = sum(vals[:8])
    return total - idle, total


def _tree_cpu_s(pids: list[int]) -> float:
    """utime + stime of live processes + cutime + cstime (their reaped children)."""
    ticks = 0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return ticks / CLK_TCK


def _tree_pss_mb(pids: list[int]) -> float:
    kb = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    kb += int(line.split()[1])
                    break
        except OSError:
            continue
    return kb / 1024


class Sampler(threading.Thread):
    """Every 0.25 s: (wall, CPU-seconds of the run's process tree, machine busy/total
    jiffies); PSS of the tree once, in the middle of the run."""

    def __init__(self, pid: int, mid_wall: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.mid_wall = pid, mid_wall
        self.samples: list[tuple[float, float, int, int]] = []
        self.pss_mb: float | None = None
        self.stop_event = threading.Event()

    def watch(self, proc: subprocess.Popen[str]) -> Callable[[], None]:
        """Sample `proc`'s tree from now on; returns what stops it (watch_run's on_start)."""
        self.pid = proc.pid
        self.start()
        return self.stop

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)

    def run(self) -> None:
        while not self.stop_event.is_set():
            pids = [self.pid, *descendants(self.pid)]
            busy, total = _machine_jiffies()
            self.samples.append((time.time(), _tree_cpu_s(pids), busy, total))
            if self.pss_mb is None and time.time() >= self.mid_wall:
                self.pss_mb = round(_tree_pss_mb(pids), 1)
            self.stop_event.wait(0.25)


def _at(samples: list[tuple[float, float, int, int]], t: float) -> tuple[float, float, int, int]:
    """The last sample at or before wall time t (the first one if none is)."""
    best = samples[0]
    for s in samples:
        if s[0] <= t:
            best = s
    return best


def window_cpu(samples: list[tuple[float, float, int, int]], t0: float, t1: float,
               cores: int) -> dict[str, float | None]:
    """CPU of the run's tree and of the machine between wall times t0 and t1."""
    if not samples or t1 <= t0:
        return {"run_cores": None, "run_util_pct": None, "machine_util_pct": None}
    a, b = _at(samples, t0), _at(samples, t1)
    dt = b[0] - a[0]
    if dt <= 0:
        return {"run_cores": None, "run_util_pct": None, "machine_util_pct": None}
    run_cores = (b[1] - a[1]) / dt
    busy, total = b[2] - a[2], b[3] - a[3]
    return {"window_s": round(dt, 2), "run_cpu_s": round(b[1] - a[1], 2),
            "run_cores": round(run_cores, 3),
            "run_util_pct": round(100.0 * run_cores / cores, 2),
            "machine_util_pct": round(100.0 * busy / total, 2) if total else None}


def measure(duration_s: float | None = None, timeout_s: float = 900.0) -> dict[str, Any]:
    """One run of the scenario as a user starts it, measured from outside (module doc)."""
    from testbed.scenario import load, resolve

    sc = load(resolve(SCENARIO))
    dur = float(duration_s or sc.duration_s)
    cores = os.cpu_count() or 1
    argv = [sys.executable, "-m", "testbed", "run", SCENARIO]
    if duration_s:
        argv += ["--duration", str(duration_s)]
    before = _run_dirs()
    sampler = Sampler(0, mid_wall=math.inf)  # PSS in the middle of the run, once it is known

    def heard_time_zero(tz: float) -> None:
        sampler.mid_wall = tz + dur / 2

    w = watch_run(argv, lambda _t0: time_zero_of(_new_run_dir(before)), timeout_s, poll_s=0.25,
                  on_start=sampler.watch, on_time_zero=heard_time_zero)
    t0, tail, tz = w.t0, w.tail, w.time_zero
    out: dict[str, Any] = {"cpu_s_total": w.cpu_s, "wall_s_total": w.wall_s, **w.mem}
    run_dir = _new_run_dir(before)
    if run_dir is None or not (run_dir / "metrics.json").exists():
        return {**out, "status": "failed", "error": tail}
    man = json.loads((run_dir / "manifest.json").read_text())
    m = json.loads((run_dir / "metrics.json").read_text())
    tz = man.get("time_zero_wall") or tz
    out.update(status=m.get("status"), error=man.get("error"), run_dir=str(run_dir),
               timings_s=m.get("timings_s", {}))
    samples = sampler.samples
    if tz:
        out["command_to_time_zero_s"] = round(tz - t0, 3)
        out["bring_up_cpu_s"] = round(_at(samples, tz)[1], 2) if samples else None
        steady = window_cpu(samples, tz + STEADY_MARGIN_S, tz + dur - STEADY_MARGIN_S, cores)
        out["steady"] = steady
        if steady.get("run_cpu_s") is not None:
            out["steady"]["cpu_s_per_sat_per_s"] = round(cpu_s_per_sat_per_s(
                steady["run_cpu_s"], SATELLITES, steady["window_s"]), 6)
    out["pss_mb_steady"] = sampler.pss_mb
    mob = m.get("mobility") or {}
    out["mobility"] = {k: mob.get(k) for k in (
        "rate_hz", "dynamic_links", "ticks", "late_ticks_over_20ms", "lateness_ms_p50",
        "lateness_ms_p99", "compute_ms_p50", "compute_ms_p99", "changes_sent", "cpu_s",
        "handovers", "route_install_ms_median", "route_convergence_ms_median")}
    changes = run_dir / "logs" / "link-changes.jsonl"
    if changes.exists():
        recs = [json.loads(x) for x in changes.read_text().splitlines() if x.strip()]
        out["updates"] = update_delays(recs, float(mob.get("rate_hz") or 10.0))
    out["ns3_max_lag_ms"] = (m.get("ns3_realtime") or {}).get("max_lag_ms")
    out["flows"] = _flows(m.get("flows") or {})
    return out


def _run_dirs() -> set[str]:
    base = RESULTS / SCENARIO
    return {d.name for d in base.iterdir() if d.is_dir() and not d.is_symlink()} \
        if base.is_dir() else set()


def _new_run_dir(before: set[str]) -> Path | None:
    """The run folder this measurement's run made: the one not there before it started (a
    previous run's folder, still `latest` when the next starts, must not be read)."""
    new = sorted(_run_dirs() - before)
    return RESULTS / SCENARIO / new[-1] if new else None


def _flows(flows: dict[str, Any]) -> dict[str, Any]:
    """The traffic's own result (scalars only), to show the network carried it."""
    return {name: {k: v for k, v in f.items() if not isinstance(v, list | dict)
                   and k not in ("src", "dst")} for name, f in flows.items()}


# ------------------------------------------------------------------ the bench


def summarise(runs: list[dict[str, Any]], cores: int) -> dict[str, Any]:
    """Medians over the successful runs, in the metric keys of `METRICS` plus detail."""
    ok = [r for r in runs if r.get("status") == "done"]

    def med(section: str | None, key: str, digits: int = 3) -> float | None:
        recs = [r if section is None else (r.get(section) or {}) for r in ok]
        vals = [v for v in (rec.get(key) for rec in recs) if isinstance(v, int | float)]
        return round(statistics.median(vals), digits) if vals else None

    # summary key -> (section of a run's record, or None for top level; key in it)
    fields: dict[str, tuple[str | None, str]] = {
        "bring_up_s": (None, "command_to_time_zero_s"),
        "bring_up_cpu_s": (None, "bring_up_cpu_s"),
        "cpu_util_pct": ("steady", "run_util_pct"),
        "run_cores": ("steady", "run_cores"),
        "machine_util_pct": ("steady", "machine_util_pct"),
        "cpu_s_total": (None, "cpu_s_total"),
        "memory_mb": (None, "pss_mb_steady"),
        "mem_available_drop_mb": (None, "mem_available_drop_mb"),
        "update_lateness_ms_p50": ("updates", "lateness_ms_p50"),
        "update_lateness_ms_p99": ("updates", "lateness_ms_p99"),
        "update_compute_ms_p50": ("mobility", "compute_ms_p50"),
        "update_delivery_ms_p50": ("updates", "delivery_ms_p50"),
        "changes_per_update_mean": ("updates", "changes_per_update_mean"),
        "changes_per_update_max": ("updates", "changes_per_update_max"),
        "teardown_s": ("timings_s", "teardown_s"),
    }
    s: dict[str, Any] = {"runs_ok": len(ok), "runs": len(runs)}
    s.update({name: med(*where) for name, where in fields.items()})
    s["cpu_s_per_sat_per_s"] = med("steady", "cpu_s_per_sat_per_s", 6)
    for ph in ("plan_s", "namespaces_and_veths_s", "ns3_ready_s", "ns3_tap_attach_s",
               "configure_s", "build_s", "health_s"):
        s[f"phase_{ph}"] = med("timings_s", ph)
    # the update delay comparable to an emulator's "time to apply a topology update": the
    # work of one update (compute + delivery) plus how late it landed (medians)
    parts = [s["update_compute_ms_p50"], s["update_delivery_ms_p50"],
             s["update_lateness_ms_p50"]]
    s["update_delay_ms"] = round(sum(max(0.0, p) for p in parts if p is not None), 3) \
        if any(p is not None for p in parts) else None
    s["cores"] = cores
    return s


def machine() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(),
            "ram_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def run(console: Console, runs: int | None = None,
        duration_s: float | None = None) -> dict[str, Any]:
    n = runs or int(os.environ.get("SAGIN_BENCH_RUNS", "3"))
    host = machine()
    doc: dict[str, Any] = {"scenario": SCENARIO, "paper": PAPER, "machine": host,
                           "paper_machine": PAPER_HARDWARE, "runs": []}
    for i in range(n):
        console.print(f"[bold]{SCENARIO}[/] run {i + 1}/{n} ...")
        doc["runs"].append(measure(duration_s))
        r = doc["runs"][-1]
        console.print(f"  status {r.get('status')}, command -> time zero "
                      f"{r.get('command_to_time_zero_s')} s, steady "
                      f"{(r.get('steady') or {}).get('run_cores')} cores")
    cores = host["cores"] or 1
    doc["ours"] = summarise(doc["runs"], cores)
    doc["comparison"] = compare(doc["ours"], cores)
    doc["own_papers"] = own_papers_doc(doc["ours"], cores)
    doc["normalisation"] = (
        "CPU: utilisation % of the machine x cores / 100 = cores used, and CPU-seconds per "
        "satellite per emulated second (run's process tree, steady state); bring-up: seconds "
        "and seconds x cores (core-seconds of capacity); memory and update delay as measured. "
        "Per-core ratios need the paper's core count, which was not accessible: "
        "they are null.")
    out_dir = RESULTS / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    _print(console, doc)
    return doc


def _fmt(x: Any) -> str:
    return "-" if x is None else str(x)


def _print(console: Console, doc: dict[str, Any]) -> None:
    o = doc["ours"]
    t = Table(title=f"{SCENARIO}: ours (median of {o['runs_ok']}/{o['runs']} runs, "
                    f"{doc['machine']['cores']} cores, {doc['machine']['cpu']})")
    t.add_column("measure")
    t.add_column("value", justify="right")
    rows = [
        ("command -> time zero (s)", o["bring_up_s"]),
        ("  plan / netns+veths / ns-3 ready (s)",
         f"{_fmt(o['phase_plan_s'])} / {_fmt(o['phase_namespaces_and_veths_s'])} / "
         f"{_fmt(o['phase_ns3_ready_s'])}"),
        ("  tap attach / configure / health (s)",
         f"{_fmt(o['phase_ns3_tap_attach_s'])} / {_fmt(o['phase_configure_s'])} / "
         f"{_fmt(o['phase_health_s'])}"),
        ("bring-up CPU (CPU-s)", o["bring_up_cpu_s"]),
        ("bring-up x cores (core-s)", per_core("bring_up_s", o["bring_up_s"], o["cores"])),
        ("steady CPU of the run (% of machine)", o["cpu_util_pct"]),
        ("steady CPU of the run (cores)", o["run_cores"]),
        ("steady CPU of the machine, all users (%)", o["machine_util_pct"]),
        ("CPU-s per satellite per emulated s", o["cpu_s_per_sat_per_s"]),
        ("total CPU of the run (CPU-s)", o["cpu_s_total"]),
        ("PSS of the run's processes (MB)", o["memory_mb"]),
        ("MemAvailable drop at time zero (MB)", o["mem_available_drop_mb"]),
        ("update: compute p50 (ms)", o["update_compute_ms_p50"]),
        ("update: delivery to ns-3 p50 (ms)", o["update_delivery_ms_p50"]),
        ("update: lateness vs due p50 / p99 (ms)",
         f"{_fmt(o['update_lateness_ms_p50'])} / {_fmt(o['update_lateness_ms_p99'])}"),
        ("update delay (compute+delivery+lateness, ms)", o["update_delay_ms"]),
        ("link changes per update mean / max",
         f"{_fmt(o['changes_per_update_mean'])} / {_fmt(o['changes_per_update_max'])}"),
        ("teardown (s)", o["teardown_s"]),
    ]
    for k, v in rows:
        t.add_row(k, _fmt(v))
    console.print(t)
    c = Table(title=f"beside {PAPER}: their value (ours / theirs)")
    c.add_column("metric")
    c.add_column("ours", justify="right")
    c.add_column("ours per core", justify="right")
    for emu in PUBLISHED:
        c.add_column(emu.name, justify="right")
    for key, (label, unit) in METRICS.items():
        row = [f"{label} ({unit})", _fmt(o.get(key)), _fmt(per_core(key, o.get(key),
                                                                    o["cores"]))]
        for emu in PUBLISHED:
            cell = doc["comparison"][emu.name][key]
            row.append("n/a" if cell["theirs"] is None else
                       f"{cell['theirs']} ({_fmt(cell['ratio_ours_to_theirs'])}x)")
        c.add_row(*row)
    console.print(c)
    console.print("per core: utilisation -> cores used (% x cores / 100), bring-up -> "
                  "core-seconds (s x cores); memory and delay as measured")
    console.print(f"n/a: {NOT_ACCESSIBLE}; docs/emulator-eval.md")
    if "own_papers" in doc:
        _print_own(console, doc["own_papers"])


def _print_own(console: Console, own: dict[str, Any]) -> None:
    """The comparison with the emulators' own papers, one row per figure."""
    t = Table(title=f"beside the emulators' own papers - {own['label']}")
    for col in ("emulator", "metric", "theirs (sats, cores)", "ours", "ours /100 sats",
                "theirs /100 sats", "ours / theirs: raw, /100 sats, per core", "status"):
        t.add_column(col)
    for r in own["rows"]:
        theirs = (r["relative"] if r["theirs"] is None and r["relative"] else
                  "-" if r["theirs"] is None else
                  f"{r['theirs']} {r['their_unit']} ({_fmt(r['their_satellites'])}, "
                  f"{_fmt(r['their_cores'])})")
        t.add_row(r["emulator"], r["label"], theirs, f"{_fmt(r['ours'])} {r['our_unit']}",
                  _fmt(r["ours_per_100_sats"]), _fmt(r["theirs_per_100_sats"]),
                  f"{_fmt(r['ratio_raw'])} / {_fmt(r['ratio_per_100_sats'])} / "
                  f"{_fmt(r['ratio_per_core'])}", r["status"])
    console.print(t)
    console.print(f"ours: {own['our_satellites']} satellites ({own['our_nodes']} nodes, "
                  f"{own['our_links']} links), {own['our_cores']} cores.  "
                  f"{own['normalisation']}")
    for emu, hw in own["hardware"].items():
        console.print(f"{emu}: machine {hw.get('machine') or 'not found'}; sizes "
                      f"{hw.get('sizes') or 'not found'}; {hw['citation']}; read in: "
                      f"{hw['read_in']}")


def main(argv: list[str] | None = None) -> int:
    """`python -m testbed.bench.emulators [--runs 1] [--duration 30]`: a quick look.
    `--from-json results/bench/emulators.json [--json]`: no run; recompute the comparison with
    the emulators' own papers from a saved result and print it (as JSON with --json)."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--from-json", type=Path, default=None, metavar="PATH",
                    help="recompute the own-papers comparison from a saved bench JSON")
    ap.add_argument("--json", action="store_true", help="with --from-json: print JSON")
    args = ap.parse_args(argv)
    if args.from_json is not None:
        own = own_papers_from_json(args.from_json)
        if args.json:
            print(json.dumps(own, indent=1, ensure_ascii=False))
        else:
            _print_own(Console(width=200), own)
        return 0
    doc = run(Console(), runs=args.runs, duration_s=args.duration)
    print(json.dumps(doc["ours"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
