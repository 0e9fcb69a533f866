"""The service mapping problem: infrastructure, service requests, mappings and the residual state.

Units everywhere: CPU in cores (any consistent compute unit works), memory in GiB, bandwidth in
Mbit/s, latency in ms, time in s.

Latency rule (what "a mapping honours the bound" means): every virtual link whose two components
sit on different nodes is carried by one simple path, and the sum of the link latencies on that
path must be <= the request's `latency_bound`; when the request names an `entry` component and
an `ingress` node, the path ingress -> node hosting the entry must meet the same bound and carry
`entry_bandwidth`.  Components on the same node talk for free (0 ms, no bandwidth); processing
delay is not modelled.  The bound is per path, not summed along chains: CPN papers state the
bound per traffic flow, and a per-path bound keeps every constraint local to one virtual link,
which is what lets the mappers check candidates incrementally.

The infrastructure is kept as flat arrays plus adjacency lists rather than a networkx graph:
mapping time per request is benchmarked, and every mapper routes hundreds of candidate paths
per decision, so the routing hot path must stay in plain Python lists.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import networkx as nx

FloatArray = npt.NDArray[np.float64]
EPS = 1e-9  # slack on capacity comparisons, so that summing floats never rejects an exact fit

Path = tuple[int, ...]  # infrastructure link indices, in order from the first node to the last


def dijkstra(adj: Sequence[Sequence[tuple[int, int, float]]], src: int,
             limit: float = math.inf, target: int = -1,
             skip: frozenset[int] | set[int] = frozenset()) -> tuple[list[float], list[int]]:
    """Latency-shortest paths from `src` over adjacency lists of (neighbour, link, latency).

    Returns (dist, pred_link) per node; pred_link -1 for the source and unreached nodes.  Nodes
    farther than `limit` stay unreached (inf) - a latency bound prunes most of a large network -
    and the search stops once `target` is settled.  Bandwidth constraints are applied by the
    caller: adjacency lists without the links that lack bandwidth, plus `skip` (link indices).
    """
    dist = [math.inf] * len(adj)
    pred = [-1] * len(adj)
    dist[src] = 0.0
    heap = [(0.0, src)]
    limit += EPS
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        d, u = pop(heap)
        if d > dist[u]:
            continue
        if u == target:
            break
        for v, link, lat in adj[u]:
            nd = d + lat
            if nd < dist[v] and nd <= limit and link not in skip:
                dist[v] = nd
                pred[v] = link
                push(heap, (nd, v))
    return dist, pred


class Infrastructure:
    """The physical network: nodes with CPU/memory (0 for pure forwarders), undirected links with
    bandwidth and latency.  Static shortest paths are cached per source, lazily: a decision only
    ever touches a few sources, and a 1000-node network should not pay for all pairs up front."""

    def __init__(self, names: Sequence[str], cpu: Iterable[float], mem: Iterable[float],
                 links: Sequence[tuple[int, int, float, float]]) -> None:
        self.names = list(names)
        self.index = {name: i for i, name in enumerate(self.names)}
        if len(self.index) != len(self.names):
            raise ValueError("infrastructure node names must be unique")
        self.cpu = np.asarray(list(cpu), dtype=float)
        self.mem = np.asarray(list(mem), dtype=float)
        n = len(self.names)
        if self.cpu.shape != (n,) or self.mem.shape != (n,):
            raise ValueError("cpu and mem need one value per node")
        self.link_a = np.array([a for a, _, _, _ in links], dtype=np.int64)
        self.link_b = np.array([b for _, b, _, _ in links], dtype=np.int64)
        self.bandwidth = np.array([bw for _, _, bw, _ in links], dtype=float)
        self.latency = np.array([lat for _, _, _, lat in links], dtype=float)
        self.adj: list[list[tuple[int, int, float]]] = [[] for _ in range(n)]
        for i, (a, b, _, lat) in enumerate(links):
            if not (0 <= a < n and 0 <= b < n) or a == b:
                raise ValueError(f"link {i}: endpoints {a}, {b} invalid")
            self.adj[a].append((b, i, float(lat)))
            self.adj[b].append((a, i, float(lat)))
        self.compute = [i for i in range(n) if self.cpu[i] > 0]
        self._lat = self.latency.tolist()
        self._ends = list(zip(self.link_a.tolist(), self.link_b.tolist(), strict=True))
        self._trees: dict[int, tuple[list[float], list[int]]] = {}
        self._paths: dict[tuple[int, int], tuple[Path, float] | None] = {}
        self._near: dict[tuple[int, int], list[int]] = {}
        self._kpaths: dict[tuple[int, int, int], list[tuple[Path, float]]] = {}
        self._kpaths_graph: dict[str, nx.Graph] = {}

    @property
    def n(self) -> int:
        return len(self.names)

    @property
    def m(self) -> int:
        return len(self._ends)

    def other_end(self, link: int, node: int) -> int:
        a, b = self._ends[link]
        return b if node == a else a

    def ends(self, link: int) -> tuple[int, int]:
        return self._ends[link]

    def path_latency(self, path: Path) -> float:
        lat = self._lat
        return sum(lat[link] for link in path)

    def static_tree(self, src: int) -> tuple[list[float], list[int]]:
        tree = self._trees.get(src)
        if tree is None:
            tree = self._trees[src] = dijkstra(self.adj, src)
        return tree

    def static_dist(self, u: int, v: int) -> float:
        """Least latency u -> v ignoring bandwidth: a lower bound any routed path must meet."""
        return self.static_tree(u)[0][v]

    def static_path(self, u: int, v: int) -> tuple[Path, float] | None:
        """Latency-shortest path u -> v on the bare topology (None if disconnected)."""
        key = (u, v) if u < v else (v, u)
        if key not in self._paths:
            dist, pred = self.static_tree(key[0])
            self._paths[key] = (None if math.isinf(dist[key[1]])
                                else (self.walk_back(pred, key[0], key[1]), dist[key[1]]))
        found = self._paths[key]
        if found is None or u == key[0]:
            return found
        return found[0][::-1], found[1]

    def walk_back(self, pred: Sequence[int], src: int, dst: int) -> Path:
        """The link sequence src -> dst from a predecessor array rooted at src."""
        out = []
        node = dst
        while node != src:
            link = pred[node]
            out.append(link)
            node = self.other_end(link, node)
        return tuple(reversed(out))

    def nearest_compute(self, u: int, k: int) -> list[int]:
        """The k compute nodes closest to u in latency (u itself excluded)."""
        key = (u, k)
        if key not in self._near:
            dist = self.static_tree(u)[0]
            ranked = sorted((c for c in self.compute if c != u and not math.isinf(dist[c])),
                            key=lambda c: (dist[c], c))
            self._near[key] = ranked[:k]
        return self._near[key]

    def graph(self) -> nx.Graph:
        """networkx view (nodes 0..n-1, edge attrs latency, bandwidth, link); parallel links
        collapse to the fastest one."""
        if "graph" not in self._kpaths_graph:
            import networkx as nx

            g = nx.Graph()
            for i, name in enumerate(self.names):
                g.add_node(i, name=name, cpu=float(self.cpu[i]), mem=float(self.mem[i]))
            for i, (a, b) in enumerate(self._ends):
                if not g.has_edge(a, b) or g[a][b]["latency"] > self._lat[i]:
                    g.add_edge(a, b, latency=self._lat[i], bandwidth=float(self.bandwidth[i]),
                               link=i)
            self._kpaths_graph["graph"] = g
        return self._kpaths_graph["graph"]

    def k_shortest(self, u: int, v: int, k: int) -> list[tuple[Path, float]]:
        """Up to k loop-free latency-shortest paths u -> v on the bare topology (Yen, via
        networkx), with their latencies; parallel links collapse to the fastest one."""
        key = (u, v, k)
        if key not in self._kpaths:
            import itertools

            import networkx as nx

            g = self.graph()
            out: list[tuple[Path, float]] = []
            if u != v and nx.has_path(g, u, v):
                for nodes in itertools.islice(nx.shortest_simple_paths(g, u, v, "latency"), k):
                    path = tuple(g[a][b]["link"] for a, b in itertools.pairwise(nodes))
                    out.append((path, self.path_latency(path)))
            self._kpaths[key] = out
        return self._kpaths[key]

    def walk(self, start: int, path: Path) -> list[int] | None:
        """Nodes visited following `path` from `start`; None if the links do not chain."""
        nodes = [start]
        for link in path:
            if not 0 <= link < self.m:
                return None
            a, b = self._ends[link]
            if nodes[-1] == a:
                nodes.append(b)
            elif nodes[-1] == b:
                nodes.append(a)
            else:
                return None
        return nodes

    def total_cpu(self) -> float:
        return float(self.cpu.sum())

    def __getstate__(self) -> dict:
        # caches rebuild lazily; shipping them to swarm workers would cost more than they save
        state = self.__dict__.copy()
        for cache in ("_trees", "_paths", "_near", "_kpaths", "_kpaths_graph"):
            state[cache] = {}
        return state


@dataclass(frozen=True)
class VirtualLink:
    a: int
    b: int
    bandwidth: float  # Mbit/s


@dataclass(frozen=True)
class ServiceRequest:
    """A service: components (cpu, mem), virtual links between them, one latency bound.

    Tuples rather than arrays so that requests (and the mappings holding them) compare and hash
    by value - determinism tests compare whole mappings.
    """

    id: int
    cpu: tuple[float, ...]
    mem: tuple[float, ...]
    links: tuple[VirtualLink, ...]
    latency_bound: float  # ms, per path (module docstring)
    arrival: float  # s
    duration: float  # s
    entry: int | None = None
    ingress: int | None = None  # infrastructure node where the users attach
    entry_bandwidth: float = 0.0  # Mbit/s ingress <-> entry
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        c = len(self.cpu)
        if c == 0 or len(self.mem) != c:
            raise ValueError(f"request {self.id}: cpu and mem need one value per component")
        for vl in self.links:
            if not (0 <= vl.a < c and 0 <= vl.b < c) or vl.a == vl.b:
                raise ValueError(f"request {self.id}: virtual link {vl} has bad endpoints")
        if (self.entry is None) != (self.ingress is None):
            raise ValueError(f"request {self.id}: entry and ingress go together")
        if self.entry is not None and not 0 <= self.entry < c:
            raise ValueError(f"request {self.id}: entry {self.entry} is not a component")

    @property
    def size(self) -> int:
        return len(self.cpu)

    @property
    def departure(self) -> float:
        return self.arrival + self.duration

    def total_cpu(self) -> float:
        return float(sum(self.cpu))

    def component_name(self, i: int) -> str:
        return self.names[i] if self.names else f"c{i}"


@dataclass(frozen=True)
class Mapping:
    """Component -> node and virtual link -> path for one request.

    `paths[k]` carries `request.links[k]` from the node of its `a` component to that of its `b`
    (empty when both sit on one node); `ingress_path` runs ingress -> entry node.
    """

    request: ServiceRequest
    nodes: tuple[int, ...]
    paths: tuple[Path, ...]
    ingress_path: Path = ()

    def demands(self) -> tuple[dict[int, float], dict[int, float], dict[int, float]]:
        """Aggregate cpu and mem per node and bandwidth per link this mapping claims."""
        req = self.request
        cpu: dict[int, float] = {}
        mem: dict[int, float] = {}
        bw: dict[int, float] = {}
        for i, node in enumerate(self.nodes):
            cpu[node] = cpu.get(node, 0.0) + req.cpu[i]
            mem[node] = mem.get(node, 0.0) + req.mem[i]
        for vl, path in zip(req.links, self.paths, strict=False):
            for link in path:
                bw[link] = bw.get(link, 0.0) + vl.bandwidth
        for link in self.ingress_path:
            bw[link] = bw.get(link, 0.0) + req.entry_bandwidth
        return cpu, mem, bw


@dataclass
class State:
    """Residual capacities plus what is currently deployed.

    `typical` is the median component (cpu, mem) and virtual link bandwidth among the requests
    observed so far: the fragmentation metric needs a notion of "a typical future component", and
    learning it from arrivals (never from the future) keeps every mapper honest.
    """

    infra: Infrastructure
    cpu: FloatArray = field(init=False)
    mem: FloatArray = field(init=False)
    bw: FloatArray = field(init=False)
    active: dict[int, Mapping] = field(default_factory=dict)
    _seen_cpu: list[float] = field(default_factory=list)
    _seen_mem: list[float] = field(default_factory=list)
    _seen_bw: list[float] = field(default_factory=list)
    typical: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        self.cpu = self.infra.cpu.copy()
        self.mem = self.infra.mem.copy()
        self.bw = self.infra.bandwidth.copy()

    def observe(self, request: ServiceRequest) -> None:
        self._seen_cpu.extend(request.cpu)
        self._seen_mem.extend(request.mem)
        self._seen_bw.extend(vl.bandwidth for vl in request.links)
        self.typical = (float(np.median(self._seen_cpu)), float(np.median(self._seen_mem)),
                        float(np.median(self._seen_bw)) if self._seen_bw else 0.0)

    def check(self, mapping: Mapping) -> list[str]:
        """Every reason this mapping cannot be allocated now (empty list: it can)."""
        infra, req = self.infra, mapping.request
        out: list[str] = []
        if len(mapping.nodes) != req.size:
            return [f"{len(mapping.nodes)} nodes for {req.size} components"]
        if len(mapping.paths) != len(req.links):
            return [f"{len(mapping.paths)} paths for {len(req.links)} virtual links"]
        for i, node in enumerate(mapping.nodes):
            if not 0 <= node < infra.n:
                return [f"component {req.component_name(i)} on unknown node {node}"]
            if infra.cpu[node] <= 0:
                out.append(f"component {req.component_name(i)} on {infra.names[node]}, "
                           "which has no compute")
        cpu, mem, bw = mapping.demands()
        for node, need in cpu.items():
            if need > self.cpu[node] + EPS:
                out.append(f"node {infra.names[node]}: cpu {need:g} > residual "
                           f"{self.cpu[node]:g}")
            if mem[node] > self.mem[node] + EPS:
                out.append(f"node {infra.names[node]}: mem {mem[node]:g} > residual "
                           f"{self.mem[node]:g}")
        for link, need in bw.items():
            if not 0 <= link < infra.m:
                out.append(f"unknown link {link}")
            elif need > self.bw[link] + EPS:
                a, b = (infra.names[e] for e in infra.ends(link))
                out.append(f"link {a}-{b}: bandwidth {need:g} > residual {self.bw[link]:g}")
        flows = [(f"virtual link {req.component_name(vl.a)}-{req.component_name(vl.b)}",
                  mapping.nodes[vl.a], mapping.nodes[vl.b], path)
                 for vl, path in zip(req.links, mapping.paths, strict=True)]
        if req.ingress is not None and req.entry is not None:
            flows.append(("ingress path", req.ingress, mapping.nodes[req.entry],
                          mapping.ingress_path))
        elif mapping.ingress_path:
            out.append("ingress path given but the request has no ingress")
        for what, u, v, path in flows:
            nodes = infra.walk(u, path)
            if nodes is None or nodes[-1] != v:
                out.append(f"{what}: path does not connect {infra.names[u]} to "
                           f"{infra.names[v]}")
            elif len(set(nodes)) != len(nodes):
                out.append(f"{what}: path revisits a node")
            else:
                lat = infra.path_latency(path)
                if lat > req.latency_bound + EPS:
                    out.append(f"{what}: latency {lat:.3f} ms > bound {req.latency_bound:g} ms")
        return out

    def allocate(self, mapping: Mapping) -> None:
        problems = self.check(mapping)
        if problems:
            raise ValueError(f"request {mapping.request.id}: " + "; ".join(problems))
        cpu, mem, bw = mapping.demands()
        for node, need in cpu.items():
            self.cpu[node] = max(self.cpu[node] - need, 0.0)
            self.mem[node] = max(self.mem[node] - mem[node], 0.0)
        for link, need in bw.items():
            self.bw[link] = max(self.bw[link] - need, 0.0)
        self.active[mapping.request.id] = mapping

    def release(self, mapping: Mapping) -> None:
        if self.active.pop(mapping.request.id, None) is None:
            raise KeyError(f"request {mapping.request.id} is not deployed")
        infra = self.infra
        cpu, mem, bw = mapping.demands()
        for node, need in cpu.items():
            self.cpu[node] = min(self.cpu[node] + need, infra.cpu[node])
            self.mem[node] = min(self.mem[node] + mem[node], infra.mem[node])
        for link, need in bw.items():
            self.bw[link] = min(self.bw[link] + need, infra.bandwidth[link])

    # -- utilisation and fragmentation (the metrics every algorithm is judged on) --

    def utilisation(self) -> tuple[float, float, float]:
        """Used share of compute-node CPU, memory, and link bandwidth."""
        infra = self.infra

        def share(cap: FloatArray, res: FloatArray) -> float:
            total = float(cap.sum())
            return float((cap - res).sum()) / total if total > 0 else 0.0

        return (share(infra.cpu, self.cpu), share(infra.mem, self.mem),
                share(infra.bandwidth, self.bw))

    def fragmentation(self) -> tuple[float, float]:
        """(cpu, bandwidth) fragmentation; see `cpu_fragmentation` and `bw_stranding`."""
        return (cpu_fragmentation(self.infra, self.cpu, self.mem, self.bw, self.typical),
                bw_stranding(self.bw, self.typical))


def stranded(free_cpu: float, free_mem: float, free_link: float,
             typical: tuple[float, float, float]) -> float:
    """A node's free CPU counts as stranded when a typical component no longer fits there
    (CPU or memory) or could no longer talk to anything: none of its links has a typical
    virtual link's bandwidth free (`free_link` is the largest residual among its links)."""
    if (free_cpu < typical[0] - EPS or free_mem < typical[1] - EPS
            or free_link < typical[2] - EPS):
        return max(free_cpu, 0.0)
    return 0.0


def max_link_free(infra: Infrastructure, bw: Sequence[float]) -> list[float]:
    """Per node, the largest residual bandwidth among its links (0 for an isolated node)."""
    return [max((bw[link] for _, link, _ in row), default=0.0) for row in infra.adj]


def cpu_fragmentation(infra: Infrastructure, cpu: FloatArray, mem: FloatArray, bw: FloatArray,
                      typical: tuple[float, float, float]) -> float:
    """Share of the free CPU of compute nodes that is stranded (`stranded`): capacity that
    exists on paper but cannot be sold to a typical component.  0 when nothing is free or
    nothing was observed yet."""
    total = float(cpu[infra.compute].sum())
    if total <= EPS or typical[0] <= 0:
        return 0.0
    link_free = max_link_free(infra, bw.tolist())
    cpu_l, mem_l = cpu.tolist(), mem.tolist()
    return sum(stranded(cpu_l[u], mem_l[u], link_free[u], typical)
               for u in infra.compute) / total


def bw_stranding(bw: FloatArray, typical: tuple[float, float, float]) -> float:
    """Share of free link bandwidth on links that can no longer carry a typical virtual link."""
    total = float(bw.sum())
    if total <= EPS or typical[2] <= 0:
        return 0.0
    return float(bw[bw < typical[2] - EPS].sum()) / total
