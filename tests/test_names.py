"""Names instead of addresses in what people read (issue 22): the address -> node mapping from
a run's network.json, flow labels matched to the scenario's flows, legends that fit."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from testbed.analysis import plots, synth
from testbed.analysis.names import IPERF_BASE_PORT, Names, capture_name, pair_name

pytestmark = pytest.mark.unit

# the shape of results/<scenario>/<run>/network.json, cut down to what names use
NETWORK = {
    "namespaces": {"user1": "shx-user1", "gw1": "shx-gw1", "cloud1": "shx-cloud1",
                   "rpi1": "shx-rpi1"},
    "segments": [
        {"name": "fiber", "medium": "p2p", "subnet": "198.18.1.0/24", "links": ["fiber"],
         "members": [{"node": "gw1", "link": "fiber", "ifname": "eth0", "ip": "198.18.1.1"},
                     {"node": "cloud1", "link": "fiber", "ifname": "eth0",
                      "ip": "198.18.1.2"}]},
        {"name": "up", "medium": "p2p", "subnet": "198.18.2.0/24", "links": ["up"],
         "members": [{"node": "user1", "link": "up", "ifname": "eth0", "ip": "198.18.2.1"},
                     {"node": "gw1", "link": "up", "ifname": "eth1", "ip": "198.18.2.2"}]},
    ],
    "primary_ip": {"user1": "198.19.255.254", "gw1": "198.19.255.253",
                   "cloud1": "198.19.255.252", "rpi1": "198.19.255.251"},
    "attached": {"rpi1": ["198.18.5.0/30"]},
    "served_by": {"rpi1": "198.18.5.2"},
}
TRAFFIC = [{"name": "ping-cloud", "kind": "ping", "src": "user1", "dst": "cloud1"},
           {"name": "tcp-cloud", "kind": "tcp", "src": "user1", "dst": "cloud1"}]
USER1, CLOUD1 = "198.19.255.254", "198.19.255.252"


@pytest.fixture()
def names() -> Names:
    return Names.from_network(NETWORK, TRAFFIC)


def test_every_address_maps_to_its_node(names: Names) -> None:
    assert names.node(USER1) == "user1" and names.node(CLOUD1) == "cloud1"
    assert names.node("198.18.1.1") == "gw1" and names.link("198.18.1.1") == "fiber"
    assert names.node("198.18.2.2") == "gw1" and names.link("198.18.2.2") == "up"
    assert names.node("198.18.5.2") == "rpi1"  # the board that stands in for rpi1
    assert names.node("10.9.9.9") == "10.9.9.9"  # not the run's: the address stays
    assert names.link(USER1) is None and names.node(None) == ""


def test_flow_labels_use_scenario_flow_names(names: Names) -> None:
    assert names.flow("icmp", USER1, CLOUD1, 343, 0) == "ping-cloud: user1 → cloud1"
    assert names.flow("icmp", CLOUD1, USER1, 343, 0) == "ping-cloud reply: cloud1 → user1"
    port = IPERF_BASE_PORT + 1  # tcp-cloud is the scenario's second flow
    assert names.flow("tcp", USER1, CLOUD1, 52140, port) == "tcp-cloud: user1 → cloud1"
    assert names.flow("tcp", CLOUD1, USER1, port, 52140) == "tcp-cloud reverse: cloud1 → user1"
    # same nodes, another port or protocol: not the scenario's flow, named by its nodes
    assert names.flow("tcp", USER1, CLOUD1, 40000, 7700) == "user1 → cloud1 (TCP 7700)"
    assert names.flow("udp", USER1, CLOUD1, 40000, port) == f"user1 → cloud1 (UDP {port})"
    assert names.flow("icmp", "198.18.1.1", "198.18.1.2") == "gw1 → cloud1 (ICMP on fiber)"
    assert names.flow("icmp", "198.18.2.2", CLOUD1) == "gw1 → cloud1 (ICMP)"
    assert Names().flow("icmp", "10.0.0.1", "10.0.0.9") == "10.0.0.1 → 10.0.0.9 (ICMP)"


def test_names_round_trip_and_capture_names(names: Names) -> None:
    again = Names.from_dict(json.loads(json.dumps(names.to_dict())))
    assert again == names
    assert capture_name("backhaul--uav1") == "backhaul at uav1"
    assert capture_name("mixed") == "mixed"
    assert pair_name("backhaul--gs1", "backhaul--uav1") == "backhaul: gs1 → uav1"


def test_iperf_port_agrees_with_the_traffic_runner() -> None:
    from testbed.run.traffic import BASE_PORT

    assert IPERF_BASE_PORT == BASE_PORT


def test_run_folder_names_reach_csv_and_report(tmp_path: Path) -> None:
    """A run whose captures carry the plan's addresses: flows.csv keeps the addresses and
    gains names beside them; report.html shows the names with the addresses on hover."""
    from testbed.analysis.run import analyze_run

    run = tmp_path / "scen" / "run1"
    (run / "pcaps").mkdir(parents=True)
    pk = synth.mixed_traffic()
    synth.write_pcap(run / "pcaps" / "wan--gs1.pcap", pk)
    a, b = "10.0.0.1", "10.0.0.2"  # synth.mixed_traffic's TCP flow
    net = {"segments": [{"members": [{"node": "alpha", "link": "wan", "ip": a},
                                     {"node": "beta", "link": "wan", "ip": b}]}]}
    (run / "network.json").write_text(json.dumps(net))
    analyze_run(run, workers=1)
    rows = list(csv.DictReader((run / "analysis" / "flows.csv").open(newline="")))
    named = {r["src"]: r["src_name"] for r in rows}
    assert named[a] == "alpha" and named[b] == "beta"
    assert all(r["flow"] and r["flow_name"] and "→" in r["flow_name"] for r in rows)
    page = (run / "analysis" / "report.html").read_text()
    assert f'<td title="{a}">alpha</td>' in page
    summary = json.loads((run / "analysis" / "analysis.json").read_text())
    assert summary["names"]["nodes"][a] == "alpha"


# ---- legends ---------------------------------------------------------------------------------
def _inside(inner: object, outer: object) -> bool:
    return (inner.x0 >= outer.x0 - 1 and inner.y0 >= outer.y0 - 1  # type: ignore[attr-defined]
            and inner.x1 <= outer.x1 + 1 and inner.y1 <= outer.y1 + 1)  # type: ignore[attr-defined]


@pytest.mark.parametrize("n", [1, 8, 30])
def test_legend_lies_inside_the_figure_and_below_the_axes(n: int) -> None:
    fig, ax = plots.figure(height=plots._height(n))
    for i in range(n):
        ax.plot([0, 1], [i, i], label=f"tcp-cloud reverse: cloud{i} → user{i} [fiber at gw1]")
    ax.set_xlabel("time (s)")
    leg = plots.legend_below(ax, max(0, n - plots.TOP))
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    box = leg.get_window_extent(r)
    assert _inside(box, fig.bbox)  # nothing cut, even without the tight bounding box
    assert box.y1 <= ax.xaxis.label.get_window_extent(r).y0 + 1  # below "time (s)"
    texts = [t.get_text() for t in leg.get_texts()]
    assert (texts[-1] == f"+{n - plots.TOP} more (see the CSV files)") == (n > plots.TOP)
    plots.plt.close(fig)


def test_plain_figure_legend_is_kept_in_the_saved_figure() -> None:
    """A figure made elsewhere (plain subplots): the legend hangs below the axes, and what
    to_png saves (tight layout, then bbox_inches="tight") contains all of it."""
    fig, ax = plots.plt.subplots(figsize=(6, 3))
    for i in range(6):
        ax.plot([0, 1], [i, i], label=f"flow {i} " + "x" * 50)
    leg = plots.legend_below(ax)
    fig.tight_layout()
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    saved = fig.get_tightbbox(r).transformed(fig.dpi_scale_trans)
    assert _inside(leg.get_window_extent(r), saved)
    assert plots.to_png(fig).startswith(b"\x89PNG")


def test_timeseries_png_grows_with_its_legend() -> None:
    few = plots.timeseries([("a", [[0, 1], [1, 2]])], 0.0, "ms", "t")
    many = plots.timeseries([(f"flow {i}", [[0, i], [1, i]]) for i in range(20)], 0.0, "ms",
                            "t")
    assert few and many
    assert int.from_bytes(many[20:24], "big") > int.from_bytes(few[20:24], "big")


def test_plots_show_distinct_flows_before_more_capture_points() -> None:
    from testbed.analysis.run import distinct_first

    series = [("bulk: a → b [l at a]", 9), ("bulk: a → b [l at b]", 8), ("ping: a → c [l at a]", 1)]
    assert [s[0] for s in distinct_first(series, lambda s: s[0])] == [
        "bulk: a → b [l at a]", "ping: a → c [l at a]", "bulk: a → b [l at b]"]
