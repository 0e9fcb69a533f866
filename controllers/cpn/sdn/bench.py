"""The SDN side of the CPN benchmark (controllers/cpn/bench.py runs it after the mapping
times), measured from captures on a real Open vSwitch backbone under os-ken.

2. setup     a 6-switch ring with chords (the cpn-mapping backbone), 20 services installed
             one after another through the API; for each, the client sends its first datagram
             to the VIP the moment the API returns.  Measured: request -> flows confirmed
             (barrier replies) and request -> first packet seen by tcpdump on the chosen
             instance's access link.  Target <= 100 ms.
3. meters    a service metered at 5 / 10 / 20 Mbit/s offered twice that by iperf3 (UDP):
             received / configured rate
4. reroute   a 200 packets/s stream to a service whose path crosses a trunk; the trunk is cut
             (its veths go down) 5 times, alternating two trunks; the outage is the longest
             gap in arrivals at the instance's capture.  Target <= 500 ms.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

REPO = Path(__file__).resolve().parents[3]
SERVICES = 20
CUTS = 5
METER_RATES = (5.0, 10.0, 20.0)
STREAM_HZ = 200

CLIENT = (
    "import socket,sys,time\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    "for line in sys.stdin:\n"
    " vip,port=line.split();s.sendto(b'first',(vip,int(port)));print(time.time(),flush=True)\n")

STREAM = (
    "import socket,sys,time\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    "vip,port,n,hz=sys.argv[1],int(sys.argv[2]),int(sys.argv[3]),float(sys.argv[4])\n"
    "t0=time.monotonic()\n"
    "for i in range(n):\n"
    " s.sendto(str(i).encode(),(vip,port))\n"
    " time.sleep(max(0.0,t0+(i+1)/hz-time.monotonic()))\n")


def backbone() -> dict[str, Any]:
    """The cpn-mapping backbone without the satellite part (no ns-3 needed)."""
    import yaml

    sc = yaml.safe_load((REPO / "topologies" / "cpn-mapping.yaml").read_text())
    sc["nodes"] = {n: v for n, v in sc["nodes"].items() if n not in ("remote1", "sat1")}
    sc["links"] = [lk for lk in sc["links"] if not lk["name"].startswith("sat-")]
    sc["timeline"], sc["name"] = [], "bench-cpn"
    sc["capture"] = {"enabled": False}
    return sc


def pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(xs, q)), 2) if xs else float("nan")


def sdn_side(console: Console) -> dict[str, Any]:
    from controllers.cpn.sdn.api import ApiClient
    from controllers.cpn.traces import arrivals, first_after, outage
    from testbed.engines.base import Change
    from testbed.lifecycle.sh import in_netns
    from testbed.run.harness import emulated
    from testbed.scenario import parse

    sc = parse(backbone(), "bench-cpn")
    instances = ["edge1", "edge2", "edge3", "edge4", "cloud1"]
    out: dict[str, Any] = {}
    with emulated(sc) as emu:
        assert emu.net.sdn is not None and emu.net.sdn.api_socket is not None
        api = ApiClient(str(emu.net.sdn.api_socket))
        pcap_dir = emu.run_dir / "pcaps"
        pcap_dir.mkdir(parents=True, exist_ok=True)
        dumps = []
        for node in instances:
            ifname = emu.net.plan.endpoint(f"a-{node}", node).ifname
            dumps.append(emu.popen(node, ["tcpdump", "-i", ifname, "-n", "-U", "-w",
                                          str(pcap_dir / f"{node}.pcap"), "udp"]))
        client = subprocess.Popen(
            in_netns(emu.net.plan.namespaces["gs1"], ["python3", "-u", "-c", CLIENT]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert client.stdin is not None and client.stdout is not None
        time.sleep(1.0)  # tcpdump attached
        records = []
        try:
            for i in range(SERVICES):
                inst = instances[i % len(instances)]
                t_req = time.time()
                svc = api.put_service(f"s{i}", instance=inst, port=8000 + i,
                                      instance_port=9000 + i, bandwidth_mbps=2,
                                      protocols=["udp"], clients=["gs1"])
                client.stdin.write(f"{svc['vip']} {8000 + i}\n")
                client.stdin.flush()
                t_sent = float(client.stdout.readline())
                records.append((svc, t_req, t_sent))
            time.sleep(0.5)
            # reroute: a service on edge2 (sw3) from gs1 (sw1) uses sw1-sw2-sw3 or sw1-sw4-sw3
            svc = api.put_service("stream", instance="edge2", port=8100, instance_port=9100,
                                  protocols=["udp"], clients=["gs1"])
            cuts = []
            for k in range(CUTS):
                path = api.services()[-1]["paths"]["sw1"]
                trunk = {("sw1", "sw2"): "t12", ("sw1", "sw4"): "t14"}.get(tuple(path[:2]))
                if trunk is None:
                    break
                n = int(STREAM_HZ * 2.0)
                stream = emu.popen("gs1", ["python3", "-c", STREAM, svc["vip"], "8100",
                                           str(n), str(STREAM_HZ)])
                time.sleep(0.8)
                t_cut = time.time()
                emu.net.apply([Change("set", link=trunk, up=False)])
                stream.wait(timeout=30)
                emu.net.apply([Change("set", link=trunk, up=True)])
                cuts.append((k, trunk, t_cut))
                time.sleep(1.5)  # LLDP rediscovers the trunk
        finally:
            client.kill()
            time.sleep(0.3)
            for d in dumps:
                d.terminate()
            for d in dumps:
                d.wait(timeout=10)
        out["meters"] = meters(emu, api)
        ips = {n: emu.net.plan.endpoint(f"a-{n}", n).ip for n in instances}
        wanted = {(ips[r[0]["instance"]], r[0]["instance_port"]) for r in records}
        wanted.add((ips["edge2"], 9100))
        seen = arrivals(sorted(pcap_dir.glob("*.pcap")), wanted)
        confirm, first, client_lag = [], [], []
        for svc_i, t_req, t_sent in records:
            t_first = first_after(seen[(ips[svc_i["instance"]], svc_i["instance_port"])], t_req)
            confirm.append((svc_i["installed_at"] - t_req) * 1000)
            client_lag.append((t_sent - t_req) * 1000)
            if t_first is not None:
                first.append((t_first - t_req) * 1000)
        out["setup"] = {
            "services": len(records), "first_packet_seen": len(first),
            "request_to_flows_confirmed_ms": {"median": pct(confirm, 50), "p95": pct(confirm, 95),
                                              "max": pct(confirm, 100)},
            "request_to_first_packet_ms": {"median": pct(first, 50), "p95": pct(first, 95),
                                           "max": pct(first, 100)},
            "request_to_client_send_ms": {"median": pct(client_lag, 50)},
            "target_ms": 100, "met": bool(first) and max(first) <= 100}
        stream_times = seen[(ips["edge2"], 9100)]
        events = [json.loads(line) for line in emu.net.sdn.event_log.read_text().splitlines()]
        downs = [e for e in events if e.get("reason") == "link_down"]
        gaps = []
        for k, trunk, t_cut in cuts:
            o = outage(stream_times, t_cut)
            if o is None:
                continue
            # the controller's side: when it learnt of the cut, and how long the reroute took
            ev = next((e for e in downs if e["t"] >= t_cut), None)
            if ev is not None:
                o["cut_to_controller_ms"] = round((ev["t"] - ev["install_ms"] / 1000 - t_cut)
                                                  * 1000, 2)
                o["controller_install_ms"] = ev["install_ms"]
            gaps.append({"cut": k, "trunk": trunk, **o})
        g = [x["gap_ms"] for x in gaps if x["recovered"]]
        out["reroute"] = {"cuts": gaps, "stream_hz": STREAM_HZ,
                          "gap_ms": {"median": pct(g, 50), "max": pct(g, 100)},
                          "nominal_interval_ms": round(1000 / STREAM_HZ, 2),
                          "target_ms": 500,
                          "met": bool(g) and len(g) == len(gaps) and max(g) <= 500}
    s, r = out["setup"], out["reroute"]
    console.print(f"setup: request->confirmed median "
                  f"{s['request_to_flows_confirmed_ms']['median']} ms, request->first packet "
                  f"median {s['request_to_first_packet_ms']['median']} ms, max "
                  f"{s['request_to_first_packet_ms']['max']} ms ({s['first_packet_seen']}/"
                  f"{s['services']} seen)")
    console.print("meters: " + ", ".join(f"{m['configured_mbps']:g} Mbit/s -> ratio {m['ratio']}"
                                         for m in out["meters"]))
    console.print(f"reroute: outage median {r['gap_ms']['median']} ms, max {r['gap_ms']['max']} "
                  f"ms over {len(g)} cuts")
    return out


def meters(emu: Any, api: Any) -> list[dict[str, Any]]:
    """A service's meter against an iperf3 UDP stream offered at twice its rate: received
    throughput over configured rate (the iperf3 control connection is steered too, as TCP)."""
    rows = []
    server = emu.popen("edge3", ["iperf3", "-s", "-p", "9200"])
    try:
        time.sleep(0.5)
        for rate in METER_RATES:
            svc = api.put_service("metered", instance="edge3", port=8200, instance_port=9200,
                                  bandwidth_mbps=rate, clients=["gs1"])
            res = emu.run("gs1", ["iperf3", "-c", svc["vip"], "-p", "8200", "-u", "-b",
                                  f"{2 * rate}M", "-t", "4", "-l", "1200", "-J"], timeout=60)
            data = json.loads(res.stdout)
            total = data["end"]["sum"]  # UDP: the sender's rate and the receiver's losses
            lost = float(total.get("lost_percent", 0.0))
            got = total["bits_per_second"] / 1e6 * (1 - lost / 100)
            rows.append({"configured_mbps": rate, "offered_mbps": 2 * rate,
                         "received_mbps": round(got, 3), "ratio": round(got / rate, 4),
                         "lost_pct": round(lost, 1)})
            api.delete_service("metered")
    finally:
        server.kill()
    return rows
