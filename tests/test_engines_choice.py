"""Which engine carries what, and the named errors before anything is created, on the host
(no kernel modules needed): hwsim asked for without mac80211_hwsim, too many radios, an
unknown Wi-Fi mode, access points on ns-3, the OVS kernel datapath without its module; the
hwsim channel; the VM's initramfs plan and the kernel-test report plumbing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from testbed.engines import features, hwsim
from testbed.engines.hwsim import MAX_RADIOS, mode_rate_mbps, pair_quality
from testbed.net import network
from testbed.scenario import ScenarioError, parse
from testbed.vm import image

pytestmark = pytest.mark.unit


def cell(mode: str = "adhoc", engine: str = "hwsim", users: int = 2) -> dict[str, Any]:
    wifi: dict[str, Any] = {"mode": mode}
    if mode == "ap":
        wifi["aps"] = ["uav"]
    nodes: dict[str, Any] = {"uav": {"kind": "uav", "position": [0, 0, 50]}}
    nodes |= {f"u{i}": {"kind": "ground_user", "position": [10 * i, 5, 1.5]}
              for i in range(users)}
    return {"name": "cell", "engines": {"wifi": engine},
            "nodes": nodes, "links": [{"name": "c", "kind": "air-to-ground",
                                       "endpoints": list(nodes), "wifi": wifi}]}


def problems(exc: ScenarioError) -> dict[str, str]:
    return {p.path: f"{p.message} {p.fix}" for p in exc.problems}


def test_hwsim_without_the_module_is_a_named_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features, "has_hwsim", lambda: False)
    with pytest.raises(ScenarioError) as info:
        network.preflight(parse(cell(), "cell.yaml"), "cell.yaml")
    found = problems(info.value)
    assert "mac80211_hwsim" in found["engines.wifi"] and "ns3" in found["engines.wifi"]


def test_more_stations_than_radios(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features, "has_hwsim", lambda: True)
    with pytest.raises(ScenarioError) as info:
        network.preflight(parse(cell(users=MAX_RADIOS), "big.yaml"), "big.yaml")
    assert f"at most {MAX_RADIOS}" in problems(info.value)["links"]


def test_unknown_wifi_mode_and_access_points_on_ns3() -> None:
    with pytest.raises(ScenarioError) as info:
        parse(cell(mode="wds"), "cell.yaml")
    assert any(p.path.startswith("links[0].wifi.mode") for p in info.value.problems)
    with pytest.raises(ScenarioError) as info:
        parse(cell(mode="ap", engine="ns3"), "cell.yaml")
    assert "hwsim" in problems(info.value)["links[0].wifi.mode"]
    bad = cell(mode="ap")
    bad["links"][0]["wifi"]["aps"] = ["nobody"]
    with pytest.raises(ScenarioError, match="not an endpoint"):
        parse(bad, "cell.yaml")


def test_ovs_kernel_datapath_without_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features, "has_ovs_kernel", lambda: False)
    sc = parse({"name": "sw", "engines": {"switch": "kernel"},
                "nodes": {"a": {"kind": "edge_server"}, "b": {"kind": "cloud"},
                          "s": {"kind": "switch"}},
                "links": [{"name": "la", "kind": "wired", "endpoints": ["a", "s"]},
                          {"name": "lb", "kind": "wired", "endpoints": ["b", "s"]}]}, "sw")
    with pytest.raises(ScenarioError) as info:
        network.preflight(sc, "sw")
    assert "userspace" in problems(info.value)["engines.switch"]


def test_hwsim_channel_falls_with_distance_and_matches_the_mode() -> None:
    wifi = {"standard": "802.11a", "data_mode": "OfdmRate24Mbps", "tx_power_dbm": 16.0}
    near, edge, far = (pair_quality(wifi, d) for d in (20.0, 150.0, 3000.0))
    assert near.rate_mbps == pytest.approx(24 * hwsim.MAC_EFFICIENCY) and near.loss_pct < 0.1
    assert near.snr_db > edge.snr_db > far.snr_db
    assert 0.1 < edge.loss_pct < 99.9  # the mode's threshold lies between
    assert far.rate_mbps == 0.0 and far.loss_pct == pytest.approx(100.0)
    assert mode_rate_mbps("OfdmRate6MbpsBW10MHz") == (6.0, True)
    with pytest.raises(ValueError, match="unknown Wi-Fi data mode"):
        mode_rate_mbps("HtMcs7")


def test_initramfs_loads_dependencies_first(tmp_path: Path) -> None:
    mods = tmp_path / "lib" / "6.1.0-9-amd64"
    mods.mkdir(parents=True)
    (mods / "modules.dep").write_text(
        "kernel/net/9p/9pnet.ko:\n"
        "kernel/drivers/virtio/virtio_ring.ko:\n"
        "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
        "kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko "
        "kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n")
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "vmlinuz-6.1.0-9-amd64").write_bytes(b"")
    k = image.find_kernel(boot, tmp_path / "lib")
    order = image.module_order(k, ("9pnet_virtio",))
    assert order.index("kernel/drivers/virtio/virtio_ring.ko") < order.index(
        "kernel/drivers/virtio/virtio.ko") < order.index("kernel/net/9p/9pnet_virtio.ko")
    assert order.index("kernel/net/9p/9pnet.ko") < order.index("kernel/net/9p/9pnet_virtio.ko")
    with pytest.raises(image.VmUnavailable, match="no module overlay"):
        image.module_order(k, ("overlay",))
    with pytest.raises(image.VmUnavailable, match="make vm-setup"):
        image.find_kernel(tmp_path / "nothing", tmp_path / "lib")


def test_vm_outcomes_map_back_to_node_ids(tmp_path: Path) -> None:
    from tests.conftest import parse_junit

    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_k.py").write_text("")
    junit = tmp_path / "j.xml"
    junit.write_text(
        '<testsuites><testsuite>'
        '<testcase classname="tests.test_k" name="test_ok"/>'
        '<testcase classname="tests.test_k" name="test_bad[x]"><failure message="boom">'
        'trace</failure></testcase>'
        '<testcase classname="tests.test_k.TestC" name="test_skip"><skipped message="why"/>'
        '</testcase></testsuite></testsuites>')
    got = parse_junit(junit, tmp_path)
    assert got["tests/test_k.py::test_ok"] == ("passed", "")
    assert got["tests/test_k.py::test_bad[x]"][0] == "failed"
    assert "boom" in got["tests/test_k.py::test_bad[x]"][1]
    assert got["tests/test_k.py::TestC::test_skip"] == ("skipped", "why")
