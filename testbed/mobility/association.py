"""Which candidate each access terminal is attached to, tick after tick.

One class used twice: live by the mobility driver, and offline by `predict` (what
`make check` prints), so the handover schedule shown before a run is the one the run
follows (up to the driver's real tick times).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from testbed.channels.access import Slot, StarlinkScheduler, cell_id
from testbed.mobility.handover import choose_scored
from testbed.mobility.world import Snapshot, World


@dataclass(frozen=True)
class Decision:
    group: str
    terminal: str
    old: str | None
    new: str | None
    old_link: str | None
    new_link: str | None
    old_still_eligible: bool


class Associator:
    def __init__(self, world: World) -> None:
        self.world = world
        self.attached: dict[tuple[str, str], str | None] = {}
        self._layout: dict[tuple[str, str], tuple[list[str], list[str], np.ndarray]] = {}
        # access groups with a scheduler (testbed.channels.access): re-assigned only at slot
        # boundaries; the current slot's parameters are computed once, at its boundary
        self.schedulers = {g.spec.name: StarlinkScheduler(g.spec.scheduler, world.epoch_unix,
                                                          world.sc.seed)
                           for g in world.groups if g.spec.scheduler is not None}
        self.slots: dict[str, Slot] = {}
        self.cells: dict[str, dict[str, str]] = {}  # group -> terminal -> ground cell
        for g in world.groups:
            if g.spec.scheduler is None:
                continue
            cells = self.cells.setdefault(g.spec.name, {})
            for term in g.links:
                loc = world.sc.nodes[term].location if term in world.sc.nodes else None
                if loc is not None:
                    cells[term] = cell_id(loc.lat_deg, loc.lon_deg, g.spec.scheduler.cell_km)

    def decide(self, snap: Snapshot) -> list[Decision]:
        """Run every access group's policy on this snapshot; return the changes.  Each
        terminal's candidates are read as columns of the snapshot's link table."""
        out = []
        tab, ok_all = snap.table, snap.eligible_ok
        for g in self.world.groups:
            policy = g.spec.policy
            sched = self.schedulers.get(g.spec.name)
            k_slot = sched.slot_index(snap.t) if sched is not None else None
            boundary = sched is not None and (g.spec.name not in self.slots or
                                              self.slots[g.spec.name].index != k_slot)
            for term, cands in g.links.items():
                key = (g.spec.name, term)
                current = self.attached.get(key)
                names, links, rows = self._rows(g.spec.name, term, cands, tab.index)
                if sched is not None and not boundary and current is not None and \
                        bool(ok_all[rows][names.index(current)]):
                    continue  # held until the next boundary while it stays eligible
                ok = ok_all[rows]
                if policy == "highest-elevation":
                    scores = tab.elevation_deg[rows]
                elif policy == "nearest":
                    scores = -tab.range_km[rows]
                elif policy == "strongest-signal":
                    scores = tab.snr_db[rows]
                elif policy == "longest-visibility":
                    scores = np.array([self.world.remaining_visibility(link, snap.t) if o
                                       else 0.0 for link, o in zip(links, ok, strict=True)])
                else:
                    raise ValueError(f"unknown handover policy {policy!r}")
                if sched is not None:  # the global controller: a fresh choice, no hysteresis
                    new = choose_scored(policy, names, ok, scores, None, 0.0)
                else:
                    new = choose_scored(policy, names, ok, scores, current, g.spec.hysteresis)
                if new == current:
                    continue
                self.attached[key] = new
                old_link = cands[current] if current else None
                out.append(Decision(g.spec.name, term, current, new, old_link,
                                    cands[new] if new else None,
                                    bool(old_link) and snap.eligible.get(old_link or "", False)))
            if sched is not None and k_slot is not None:
                assignment = {term: self.attached.get((g.spec.name, term)) for term in g.links}
                slot = self.slots.get(g.spec.name)
                if boundary or slot is None or any(
                        slot.terminals[t].satellite != s for t, s in assignment.items()):
                    self.slots[g.spec.name] = sched.slot(k_slot, assignment,
                                                         self.cells.get(g.spec.name))
        return out

    def overrides(self, snap: Snapshot) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                  np.ndarray, np.ndarray] | None:
        """What the access schedulers change on the chosen links at this snapshot: (rows,
        extra one-way delay ms, uplink rate cap, downlink rate cap (Mbit/s), loss floor %).
        An access link's endpoints are [terminal, candidate], so the uplink is its forward
        direction (rate_mbps) and the downlink its back direction (rate_back_mbps).  None
        without schedulers.  A few scalar reads per terminal: the slot's draws were made at
        its boundary."""
        if not self.schedulers:
            return None
        rows, delay, up, down, loss = [], [], [], [], []
        tab = snap.table
        for g in self.world.groups:
            sched, slot = self.schedulers.get(g.spec.name), self.slots.get(g.spec.name)
            if sched is None or slot is None:
                continue
            spike, burst = sched.boundary_effects(snap.t, slot)
            for term, cands in g.links.items():
                p = slot.terminals.get(term)
                if p is None or p.satellite is None:
                    continue
                k = tab.index[cands[p.satellite]]
                rows.append(k)
                delay.append(p.extra_delay_ms + spike)
                rain = sched.rain_factor(snap.t, float(tab.elevation_deg[k]))
                up.append(p.uplink_rate_mbps * rain)
                down.append(p.rate_mbps * rain)
                loss.append(burst)
        return (np.array(rows, dtype=int), np.array(delay), np.array(up), np.array(down),
                np.array(loss))

    def _rows(self, group: str, term: str, cands: dict[str, str], index: dict[str, int]
              ) -> tuple[list[str], list[str], np.ndarray]:
        """A terminal's candidates, their links and the links' rows (computed once)."""
        key = (group, term)
        if key not in self._layout:
            links = list(cands.values())
            self._layout[key] = (list(cands), links,
                                 np.array([index[link] for link in links], dtype=int))
        return self._layout[key]

    def chosen_links(self) -> set[str]:
        links = {g.spec.name: g.links for g in self.world.groups}
        return {links[group][term][cand] for (group, term), cand in self.attached.items()
                if cand is not None}


def reason(d: Decision, initial: bool) -> str:
    if initial:
        return "initial"
    if d.old is None:
        return "acquired"
    if d.new is None:
        return "lost (no candidate)"
    return "policy" if d.old_still_eligible else "not eligible"


def predict(world: World, step_s: float | None = None) -> list[dict[str, object]]:
    """The handover schedule over the whole run, in real seconds after time zero."""
    span = world.sc.duration_s * world.time_scale
    step = step_s or world.time_scale / world.sc.mobility.rate_hz
    assoc = Associator(world)
    out: list[dict[str, object]] = []
    for i, t in enumerate(np.arange(0.0, span + 1e-9, step)):
        for d in assoc.decide(world.snapshot(float(t))):
            out.append({"t_s": round(float(t) / world.time_scale, 2), "group": d.group,
                        "terminal": d.terminal, "from": d.old, "to": d.new,
                        "reason": reason(d, i == 0)})
    return out
