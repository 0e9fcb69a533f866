"""Which device runs which layers: Halda (prima.cpp's piped-ring assignment), solved exactly, and
the baselines it is compared with.  The cost model is `controllers.llm.latency`.

Formulation (one mixed-integer program per number of rounds k, solved with HiGHS through
`scipy.optimize.milp`):

* The ring order is fixed: the given device order rotated so the master is first, positions
  0..n-1.  A device with no layers is skipped; its neighbours talk over their direct link.
* k must divide L, and every device runs the same window w_i in every round (prima.cpp's
  layout), so sum_i w_i = L / k and device i holds k * w_i layers.
* Variables: integer w_i in [0, L/k]; binary y_i (device i is in the ring), y_master = 1 and
  w_master >= 1 (the master embeds, runs the head, and runs the first window of every round);
  continuous o_i >= 0 (overflow layers, offloading devices only); continuous z_ij in [0, 1] for
  every ordered ring pair i before j (including j = the master again, closing the ring).
* Constraints: y_i <= w_i <= (L/k) y_i; memory: k * w_i <= cap_i on a hard-limit device, and on
  an offloading device w_i <= cap_i (its window stays resident) and o_i >= k * w_i - cap_i;
  z_ij >= y_i + y_j - 1 - sum_{i<l<j} y_l (i and j are consecutive used devices); a pair with no
  link gets z_ij <= 0, so it can never be consecutive.
* Objective: k * sum_i w_i layer_ms_i + sum_i disk_ms_i o_i + k * sum_ij z_ij hop_ij
  + head_ms_master, hop_ij = latency_ij + hidden_bytes / bandwidth_ij.

Why it is exact: every cost is non-negative and minimised, so at an optimum o_i = max(0, k w_i -
cap_i) and z_ij = 1 exactly for the consecutive used pairs (the right-hand side is 1 for those
and <= 0 for all others); the objective is therefore the cost model's latency of the layout,
which `pipeline_breakdown` recomputes from the returned windows (and we check it agrees).  HiGHS
runs with mip_rel_gap = 0, and the best k is kept over all divisors of L (<= max_rounds).  The
tests compare it against brute-force enumeration of every k, window vector and device subset.
One program per k has n integer, n binary and O(n^2) continuous variables: instant for the
handful of devices of an edge ring (5 devices, 30 layers: 8 programs, see the docs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from controllers.llm.latency import (
    Assignment,
    Device,
    Links,
    ModelShape,
    index_devices,
    layer_capacity,
    layout_breakdown,
    layout_windows,
)


class AssignmentError(ValueError):
    """No assignment satisfies memory (or the solver failed); the message says which device."""


def _ring(devices: Sequence[Device], master: str | None,
          order: Sequence[str] | None) -> tuple[dict[str, Device], list[str]]:
    """Devices by name and the ring order rotated so the master comes first.  `order` may name
    a subset of the devices: the others are left out of the ring."""
    by_name = index_devices(devices)
    ring = list(by_name) if order is None else list(order)
    if len(set(ring)) != len(ring):
        raise ValueError(f"order repeats a device: {ring}")
    unknown = [d for d in ring if d not in by_name]
    if unknown:
        raise ValueError(f"order names devices not in devices: {unknown}")
    master = next(iter(by_name)) if master is None else master
    if master not in ring:
        raise ValueError(f"master {master!r} is not in the ring {ring}")
    i = ring.index(master)
    return by_name, ring[i:] + ring[:i]


def ring_order(devices: Sequence[Device], links: Links, master: str | None = None) -> list[str]:
    """A cheap ring order when the user gives none: nearest neighbour by link latency from the
    master (ties: higher bandwidth, then input order).  Pairs without a link count as infinitely
    far.  Halda itself keeps whatever order it is given; this only proposes one."""
    by_name = index_devices(devices)
    names = list(by_name)
    master = names[0] if master is None else master
    if master not in by_name:
        raise ValueError(f"master {master!r} is not in devices")
    out, left = [master], [n for n in names if n != master]
    while left:
        cur = out[-1]

        def key(n: str, cur: str = cur) -> tuple[float, float, int]:
            link = links.get(cur, {}).get(n)
            if link is None:
                return (math.inf, 0.0, names.index(n))
            return (link.latency_ms, -link.bandwidth_mbps, names.index(n))

        nxt = min(left, key=key)
        out.append(nxt)
        left.remove(nxt)
    return out


def memory_use(assignment: Assignment, devices: Sequence[Device],
               model: ModelShape) -> dict[str, int]:
    """Resident bytes each ring device needs: reserve + (master) embedding and head + layers.
    A hard-limit device keeps all its layers; an offloading one keeps min(layers, capacity) but
    never less than one window."""
    by_name = index_devices(devices)
    out = {}
    for d in assignment.order:
        dev = by_name[d]
        is_master = d == assignment.master
        layers = assignment.layers_on(d)
        if dev.disk_ms_per_layer is not None:
            cap = max(0, layer_capacity(dev, model, master=is_master))
            layers = max(assignment.widths[d], min(layers, cap))
        out[d] = (dev.os_reserved_bytes + (model.master_bytes if is_master else 0)
                  + layers * model.layer_bytes)
    return out


def memory_violations(assignment: Assignment, devices: Sequence[Device],
                      model: ModelShape) -> list[str]:
    """One message per device whose resident bytes exceed its memory (empty = fits)."""
    by_name = index_devices(devices)
    out = []
    for d, used in memory_use(assignment, devices, model).items():
        dev = by_name[d]
        if used > dev.mem_bytes:
            fixed = model.master_bytes if d == assignment.master else 0
            layers = (used - dev.os_reserved_bytes - fixed) // model.layer_bytes
            out.append(f"device {d!r} needs {used:,} B ({layers} layers x "
                       f"{model.layer_bytes:,} B + embedding/head {fixed:,} B + reserved "
                       f"{dev.os_reserved_bytes:,} B) but has {dev.mem_bytes:,} B")
    return out


def build_assignment(method: str, order: Sequence[str], widths: Mapping[str, int], rounds: int,
                     devices: Sequence[Device], model: ModelShape, links: Links, *,
                     reason: str = "") -> Assignment:
    """An `Assignment` for a given layout, with its predicted latency and memory verdict.
    Devices with width 0 are dropped from the ring (the master must keep >= 1)."""
    ring = [d for d in order if widths.get(d, 0) > 0]
    if not ring or ring[0] != order[0]:
        raise ValueError(f"the master {order[0]!r} must hold at least one layer per round")
    w = {d: int(widths[d]) for d in ring}
    breakdown = layout_breakdown(ring, w, rounds, devices, model, links)
    windows = layout_windows(ring, w, rounds)
    plan = Assignment(method, tuple(ring), rounds, {d: tuple(ws) for d, ws in windows.items()},
                      breakdown["total_ms"], breakdown)
    problems = memory_violations(plan, devices, model)
    if problems:
        reason = "; ".join([reason, *problems] if reason else problems)
    return replace(plan, feasible=not problems, reason=reason)


def _capacity_report(by_name: Mapping[str, Device], ring: Sequence[str],
                     model: ModelShape) -> str:
    parts = []
    for i, d in enumerate(ring):
        dev = by_name[d]
        fixed = model.master_bytes if i == 0 else 0
        free = dev.mem_bytes - dev.os_reserved_bytes - fixed
        cap = layer_capacity(dev, model, master=i == 0)
        what = "offloads to storage" if dev.disk_ms_per_layer is not None else "hard limit"
        parts.append(f"{d!r} {dev.mem_bytes:,} B, {free:,} B free after reserve"
                     f"{' and embedding/head' if i == 0 else ''} = {max(cap, 0)} layers "
                     f"({what})")
    return "; ".join(parts)


def _check_master_fits(by_name: Mapping[str, Device], master: str, model: ModelShape) -> None:
    dev = by_name[master]
    if layer_capacity(dev, model, master=True) < 1:
        need = dev.os_reserved_bytes + model.master_bytes + model.layer_bytes
        raise AssignmentError(
            f"master {master!r} cannot hold the embedding/head plus one layer: needs {need:,} B "
            f"(embedding+head {model.master_bytes:,} B + one layer {model.layer_bytes:,} B + "
            f"reserved {dev.os_reserved_bytes:,} B) but has {dev.mem_bytes:,} B")


def _solve_rounds(k: int, by_name: Mapping[str, Device], ring: Sequence[str],
                  model: ModelShape, links: Links) -> Assignment | None:
    """The MILP of the module doc for one k; None when no layout with k rounds fits."""
    n, big = len(ring), model.n_layers // k
    devs = [by_name[d] for d in ring]
    caps = [layer_capacity(dev, model, master=i == 0) for i, dev in enumerate(devs)]
    disk = [i for i, dev in enumerate(devs) if dev.disk_ms_per_layer is not None]
    # Arcs (i, j): i before j in the ring, j == n standing for the master closing the ring.
    arcs = [(i, j) for i in range(n) for j in range(i + 1, n + 1) if (i, j) != (0, n)]
    hop_payload = model.hidden_bytes_per_token
    arc_cost, arc_ub = [], []
    for i, j in arcs:
        link = links.get(ring[i], {}).get(ring[j % n])
        arc_cost.append(0.0 if link is None else link.transfer_ms(hop_payload))
        arc_ub.append(0.0 if link is None else 1.0)
    w0, y0, o0, z0 = 0, n, 2 * n, 2 * n + len(disk)
    nvar = z0 + len(arcs)
    c = np.zeros(nvar)
    lb, ub = np.zeros(nvar), np.ones(nvar)
    integrality = np.zeros(nvar)
    for i, dev in enumerate(devs):
        c[w0 + i] = k * dev.layer_ms
        hard = dev.disk_ms_per_layer is None
        ub[w0 + i] = max(0, min(big, caps[i] // k if hard else caps[i]))
        integrality[w0 + i] = integrality[y0 + i] = 1
        if ub[w0 + i] < 1:
            ub[y0 + i] = 0
    if ub[w0] < 1:
        return None
    lb[w0] = lb[y0] = 1
    for m, i in enumerate(disk):
        c[o0 + m] = devs[i].disk_ms_per_layer
        ub[o0 + m] = np.inf
    for a, (cost, cap) in enumerate(zip(arc_cost, arc_ub, strict=True)):
        c[z0 + a] = k * cost
        ub[z0 + a] = cap
    rows, rlb, rub = [], [], []

    def row(coefs: Mapping[int, float], lo: float, hi: float) -> None:
        r = np.zeros(nvar)
        for idx, v in coefs.items():
            r[idx] += v
        rows.append(r)
        rlb.append(lo)
        rub.append(hi)

    row({w0 + i: 1.0 for i in range(n)}, big, big)
    for i in range(n):
        row({w0 + i: 1.0, y0 + i: -float(big)}, -np.inf, 0.0)
        row({y0 + i: 1.0, w0 + i: -1.0}, -np.inf, 0.0)
    for m, i in enumerate(disk):
        row({o0 + m: 1.0, w0 + i: -float(k)}, -float(caps[i]), np.inf)
    for a, (i, j) in enumerate(arcs):
        coefs = {z0 + a: 1.0, y0 + i: -1.0}
        coefs[y0 + j % n] = coefs.get(y0 + j % n, 0.0) - 1.0
        for lidx in range(i + 1, j):
            coefs[y0 + lidx] = 1.0
        row(coefs, -1.0, np.inf)
    # Presolve off: on these tiny programs it saves nothing, and HiGHS's presolve sometimes
    # prints a debug line to stdout, which would corrupt a caller's JSON output.
    res = milp(c, integrality=integrality, bounds=Bounds(lb, ub),
               constraints=LinearConstraint(np.array(rows), rlb, rub),
               options={"mip_rel_gap": 0.0, "presolve": False})
    if res.status == 2:
        return None
    if res.status != 0 or res.x is None:
        raise AssignmentError(f"HiGHS did not solve the k={k} program: {res.message}")
    widths = {d: round(res.x[w0 + i]) for i, d in enumerate(ring)}
    plan = build_assignment("halda", ring, widths, k, list(by_name.values()), model, links)
    expected = res.fun + by_name[ring[0]].head_ms
    if not math.isclose(plan.predicted_ms_per_token, expected, rel_tol=1e-6, abs_tol=1e-6):
        raise AssignmentError(f"internal: MILP objective {expected} != latency model "
                              f"{plan.predicted_ms_per_token} for k={k}, widths {widths}")
    return plan


def _round_options(n_layers: int, max_rounds: int | None) -> list[int]:
    if max_rounds is not None and (not isinstance(max_rounds, int) or max_rounds < 1):
        raise ValueError(f"max_rounds must be an int >= 1 or None, got {max_rounds!r}")
    top = n_layers if max_rounds is None else min(max_rounds, n_layers)
    return [k for k in range(1, top + 1) if n_layers % k == 0]


def halda_by_rounds(devices: Sequence[Device], model: ModelShape, links: Links,
                    master: str | None = None, max_rounds: int | None = None,
                    order: Sequence[str] | None = None) -> dict[int, Assignment]:
    """The optimal assignment for every feasible number of rounds k (k | L, k <= max_rounds),
    for plotting latency against k.  Arguments as `halda`."""
    by_name, ring = _ring(devices, master, order)
    _check_master_fits(by_name, ring[0], model)
    out = {}
    for k in _round_options(model.n_layers, max_rounds):
        plan = _solve_rounds(k, by_name, ring, model, links)
        if plan is not None:
            out[k] = plan
    return out


def halda(devices: Sequence[Device], model: ModelShape, links: Links,
          master: str | None = None, max_rounds: int | None = None,
          order: Sequence[str] | None = None) -> Assignment:
    """The latency-optimal piped-ring assignment (module doc).  The ring is `order` (default:
    the order of `devices`) rotated to start at `master` (default: the first device).  Raises
    `AssignmentError` naming devices and bytes when nothing fits memory.  Ties go to fewer
    rounds."""
    plans = halda_by_rounds(devices, model, links, master, max_rounds, order)
    if not plans:
        by_name, ring = _ring(devices, master, order)
        ks = _round_options(model.n_layers, max_rounds)
        raise AssignmentError(
            f"no assignment fits memory for rounds k in {ks}: the model needs "
            f"{model.n_layers} layers x {model.layer_bytes:,} B = "
            f"{model.n_layers * model.layer_bytes:,} B plus embedding/head "
            f"{model.master_bytes:,} B on the master; devices: "
            f"{_capacity_report(by_name, ring, model)}")
    best = min(plans.values(), key=lambda p: p.predicted_ms_per_token)
    return min((p for p in plans.values()
                if p.predicted_ms_per_token <= best.predicted_ms_per_token + 1e-9),
               key=lambda p: p.rounds)


def even_split(devices: Sequence[Device], model: ModelShape, links: Links,
               master: str | None = None, order: Sequence[str] | None = None) -> Assignment:
    """Every ring device gets L // n layers, the first L % n (master first) one more; k = 1.
    Memory is not repaired: a plan that does not fit comes back with feasible=False and the
    reason."""
    by_name, ring = _ring(devices, master, order)
    base, extra = divmod(model.n_layers, len(ring))
    widths = {d: base + (1 if i < extra else 0) for i, d in enumerate(ring)}
    return build_assignment("even_split", ring, widths, 1, list(by_name.values()), model, links)


def proportional_split(devices: Sequence[Device], model: ModelShape, links: Links,
                       master: str | None = None,
                       order: Sequence[str] | None = None) -> Assignment:
    """Layers proportional to speed 1 / layer_ms (largest remainder, ties in ring order), the
    master at least one; k = 1.  Then memory caps: a device over its capacity passes the excess
    to the next device in the ring until everything fits.  When the devices cannot hold the
    model at all, the uncapped split comes back with feasible=False."""
    by_name, ring = _ring(devices, master, order)
    n, total = len(ring), model.n_layers
    speed = [1.0 / by_name[d].layer_ms for d in ring]
    quota = [total * s / sum(speed) for s in speed]
    counts = [math.floor(q) for q in quota]
    by_remainder = sorted(range(n), key=lambda i: (-(quota[i] - counts[i]), i))
    for i in by_remainder[:total - sum(counts)]:
        counts[i] += 1
    if counts[0] == 0:
        donor = max(range(n), key=lambda i: (counts[i], i))
        counts[donor] -= 1
        counts[0] = 1
    caps = [max(0, layer_capacity(by_name[d], model, master=i == 0)) for i, d in enumerate(ring)]
    if sum(caps) >= total and caps[0] >= 1:
        for _ in range(n + 1):
            moved = False
            for i in range(n):
                excess = counts[i] - caps[i]
                if excess > 0:
                    counts[i] -= excess
                    counts[(i + 1) % n] += excess
                    moved = True
            if not moved:
                break
    widths = dict(zip(ring, counts, strict=True))
    return build_assignment("proportional_split", ring, widths, 1, list(by_name.values()),
                            model, links)


def single_device(devices: Sequence[Device], model: ModelShape, links: Links,
                  master: str | None = None) -> Assignment:
    """The whole model on one device: the master if it fits, else the fitting device with the
    lowest latency, which then becomes the master (the prompt and the tokens are relayed from
    the original master: `pipeline_ttft_ms(..., origin=master)` charges that, ms/token does
    not - decoding continues on the device by itself).  Such a relocated plan is outside
    Halda's search space, whose master is fixed.  An offloading device fits when one layer
    does; it then streams the rest with the smallest k whose window fits.  If no device fits,
    the master gets everything and feasible=False."""
    by_name, ring = _ring(devices, master, None)
    total = model.n_layers

    def rounds_for(dev: Device) -> int | None:
        cap = layer_capacity(dev, model, master=True)
        if cap >= total:
            return 1
        if dev.disk_ms_per_layer is None or cap < 1:
            return None
        return min(k for k in range(1, total + 1) if total % k == 0 and total // k <= cap)

    def plan(name: str, rounds: int, reason: str = "") -> Assignment:
        return build_assignment("single_device", [name], {name: total // rounds}, rounds,
                                list(by_name.values()), model, links, reason=reason)

    home = ring[0]
    k = rounds_for(by_name[home])
    if k is not None:
        return plan(home, k)
    options = [plan(d, kd) for d in ring[1:] if (kd := rounds_for(by_name[d])) is not None]
    if not options:
        return plan(home, 1, reason="no device can hold the whole model")
    best = min(options, key=lambda p: p.predicted_ms_per_token)
    return replace(best, reason=f"master {home!r} cannot hold the model; it runs on "
                                f"{best.master!r}, which becomes the master")
