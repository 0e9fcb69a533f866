"""LLM shards served by real payload-agent processes: pipeline and tensor parallel over TCP give
the single-device tokens, memory limits are enforced, a node dying mid-generation gives a clear
error and the others keep serving; the edge-llm experiment end to end in an emulation."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from controllers.llm.config import ConfigError, load_config
from payloads.llm.cluster import NodeAddr, ShardCluster

REPO = Path(__file__).resolve().parents[1]
TOKEN = "test-token"
PROMPT = "What is the capital of France?"
EOS = 2  # SmolLM2's <|im_end|>; generation stops there, as the reference does


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agents:
    """Agent processes with --llm on loopback, killed at the end whatever happens."""

    def __init__(self, specs: list[tuple[str, list[str]]]) -> None:
        env = {**os.environ, "SAGIN_RUN_TOKEN": TOKEN}
        self.addrs: list[NodeAddr] = []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for name, extra in specs:
            port = _free_port()
            self.addrs.append(NodeAddr(name, "127.0.0.1", port))
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "payloads.agent", "--node", name, "--cpu-hz", "1e9",
                 "--host", "127.0.0.1", "--port", str(port), "--llm", *extra],
                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self, name: str) -> None:
        p = self.procs[name]
        p.send_signal(signal.SIGKILL)
        p.wait(10)

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
            p.wait(10)


@pytest.fixture(scope="module")
def prompt_ids() -> list[int]:
    from payloads.llm.tokenizer import load_tokenizer

    return load_tokenizer(None).encode_chat([{"role": "user", "content": PROMPT}])


@pytest.fixture(scope="module")
def reference(prompt_ids: list[int]) -> list[int]:
    from payloads.llm.runtime import generate_local

    return generate_local(None, prompt_ids, 12)


@pytest.fixture
def agents() -> Iterator[Agents]:
    a = Agents([("n0", []), ("n1", ["--llm-speed", "0.5"]),
                ("n2", ["--llm-speed", "0.25", "--llm-mem-mb", "60"])])
    try:
        yield a
    finally:
        a.close()


def _run(coro):
    return asyncio.run(coro)


@pytest.mark.unit
def test_pipeline_and_tensor_parallel_over_tcp_equal_single_device(
        agents: Agents, prompt_ids: list[int], reference: list[int]) -> None:
    async def go() -> dict:
        cl = ShardCluster(agents.addrs, TOKEN, timeout=60)
        try:
            await cl.wait_ready(30)
            # two rounds around the ring, consecutive stages on one node merged locally
            stages = [("n0", 0, 6), ("n1", 6, 12), ("n2", 12, 15), ("n0", 15, 22),
                      ("n1", 22, 30)]
            await cl.load_pipeline("p", stages)
            g = await cl.generate("p", "n0", ["n0", "n1", "n2"], prompt_ids, 12, EOS)
            assert g.ok, g.error
            assert g.tokens == reference
            # every hop carries float32 [T, 576] activations: at least 4 hops x prompt rows
            assert g.bytes_sent > 4 * len(prompt_ids) * 576 * 4
            await cl.release("p")
            await cl.load_tensor("t", ["n0", "n1"])
            g = await cl.generate("t", "n0", ["n0", "n1"], prompt_ids, 12, EOS)
            assert g.ok, g.error
            assert g.tokens == reference
            assert g.messages >= 2 * 30 * 2 * len(reference)  # 2 all-reduces per layer
        finally:
            await cl.close()

    _run(go())


@pytest.mark.unit
def test_memory_limit_refuses_a_window_that_does_not_fit(agents: Agents) -> None:
    async def go() -> None:
        cl = ShardCluster(agents.addrs, TOKEN, timeout=60)
        try:
            await cl.wait_ready(30)
            with pytest.raises(Exception, match=r"n2: plan m needs .* MiB .* 60\.0 MiB"):
                await cl.load_pipeline("m", [("n0", 0, 10), ("n2", 10, 30)])
        finally:
            await cl.close()

    _run(go())


@pytest.mark.unit
def test_offloading_node_streams_a_window_that_does_not_fit(
        prompt_ids: list[int], reference: list[int]) -> None:
    """--llm-offload: 16 layers (227 MB) on a 200 MiB device are accepted, 13 stay resident
    and 3 are re-read per token, the tokens are the reference's; the same plan on the same
    device without --llm-offload is refused.  The profile's disk_ms_per_layer and buffer make
    the solver's capacity and overflow equal what the node does."""
    from controllers.llm.experiment import devices_from_profiles, model_shape
    from controllers.llm.latency import layer_capacity, overflow_layers

    agents = Agents([("m0", []), ("m1", ["--llm-offload", "--llm-mem-mb", "200"]),
                     ("m2", ["--llm-mem-mb", "200"])])

    async def go() -> dict:
        cl = ShardCluster(agents.addrs, TOKEN, timeout=60)
        try:
            await cl.wait_ready(30)
            # two rounds: m1's two windows share one budget and one streaming buffer
            stages = [("m0", 0, 7), ("m1", 7, 15), ("m0", 15, 22), ("m1", 22, 30)]
            load = await cl.load_pipeline("o", stages)
            assert load["m1"]["resident_layers"] == 13 and load["m1"]["streamed_layers"] == 3
            assert load["m1"]["weights_bytes"] > 200 * 2**20 >= load["m1"]["resident_bytes"]
            assert "streamed_layers" not in load["m0"]
            g = await cl.generate("o", "m0", ["m0", "m1"], prompt_ids, 12, EOS)
            assert g.ok, g.error
            assert g.tokens == reference
            st = await cl.call("m1", {"op": "stats", "plan": "o"})
            # prefill + decode steps (+ the step that produced EOS, when it came before the cap)
            steps = len(reference) + (len(reference) < 12)
            assert st["streamed"]["streamed_layers"] == 3
            assert st["streamed"]["bytes"] == 3 * steps * 14_160_384 > 0
            assert st["streamed"]["peak_bytes"] <= 14 * 14_160_384 <= 200 * 2**20
            assert st["resident_bytes"] <= 200 * 2**20
            await cl.release("o")
            with pytest.raises(Exception, match=r"m2: plan r needs 216\.1 MiB .* 200\.0 MiB"):
                await cl.load_pipeline("r", [(n, a, b) if n == "m0" else ("m2", a, b)
                                             for n, a, b in stages])
            prof = await cl.call("m1", {"op": "profile", "layers": 1, "tokens": 2,
                                        "disk_loads": 3})
            return prof
        finally:
            await cl.close()

    try:
        prof = _run(go())
    finally:
        agents.close()
    assert prof["offload"] is True and prof["disk_ms_per_layer"] > 0
    dev = devices_from_profiles({"m1": prof})[0]
    shape = model_shape()
    assert dev.disk_ms_per_layer == prof["disk_ms_per_layer"]
    assert layer_capacity(dev, shape, master=False) == 13  # the node's resident layers
    assert overflow_layers(dev, 16, shape, master=False) == 3  # what it re-reads per token


@pytest.mark.unit
def test_tensor_parallel_ranks_stream_their_slices_through_the_tpi_window(
        prompt_ids: list[int], reference: list[int]) -> None:
    """TPI-LLM's regime on live agents: each rank's share of the layers (~200 MB) is far above
    its 40 MiB, so a plan without offload would be refused; with --llm-offload and an emulated
    disk each rank streams its own slice files through a memory window of 2 (the next slice
    loads while one computes).  The tokens are the reference's, a rank's streamed bytes are
    its slices' (not whole layers), and its weights never exceed the limit."""
    from payloads.llm.model import TPSlice, layer_bytes_of, load_config

    cfg = load_config()
    mib = 2**20
    agents = Agents([("t0", ["--llm-offload", "--llm-mem-mb", "148", "--llm-disk-mb-s", "4000"]),
                     ("t1", ["--llm-offload", "--llm-mem-mb", "40", "--llm-disk-mb-s", "4000"])])
    slice_b = layer_bytes_of(cfg, TPSlice.of(cfg, 1, 2))
    pinned = 40 * mib // slice_b - 2  # slots minus the window's two buffers

    async def go() -> tuple[dict, dict, object]:
        cl = ShardCluster(agents.addrs, TOKEN, timeout=120)
        try:
            await cl.wait_ready(30)
            load = await cl.load_tensor("tpi", ["t0", "t1"],
                                        options={"window": 2, "prefetch": True})
            g = await cl.generate("tpi", "t0", ["t0", "t1"], prompt_ids, 6, EOS)
            st = await cl.call("t1", {"op": "stats", "plan": "tpi"})
            return load, st, g
        finally:
            await cl.close()

    try:
        load, st, g = _run(go())
    finally:
        agents.close()
    assert g.ok, g.error
    assert g.tokens == reference[:6]
    assert load["t1"]["resident_layers"] == pinned and load["t1"]["window"] == 2
    assert load["t1"]["streamed_layers"] == cfg.n_layers - pinned
    steps = 6  # one pass per token (the reference has no EOS in its first 6)
    s = st["streamed"]
    assert s["bytes"] == (cfg.n_layers - pinned) * steps * slice_b
    assert s["prefetched"] >= s["loads"] - steps  # at most one on-demand read per pass
    assert st["peak_weight_bytes"] <= 40 * mib and st["resident_bytes"] <= 40 * mib
    assert isinstance(st["rss_bytes"], int)


@pytest.mark.unit
def test_offload_refuses_when_not_even_one_layer_and_the_buffer_fit() -> None:
    from payloads.llm.node import ShardHost

    async def go() -> dict:
        host = ShardHost("x", TOKEN, mem_limit_bytes=120 * 2**20, offload=True)
        try:
            reply, _ = await host.handle({"op": "load", "plan": "p", "master": "x",
                                          "stages": [{"node": "x", "host": "127.0.0.1",
                                                      "port": 1, "start": 0, "end": 30}]}, b"")
            return reply
        finally:
            await host.close()

    reply = _run(go())
    assert not reply["ok"]
    assert ("x: plan p cannot run here even streaming its layers from the model file "
            "(--llm-offload): it needs at least the embedding and head (108.0 MiB) + one "
            "resident layer + the streaming buffer (27.0 MiB) = 135.0 MiB, the device's "
            "model memory is 120.0 MiB") in reply["error"]


@pytest.mark.unit
def test_emulated_device_speed_slows_the_node(agents: Agents) -> None:
    async def go() -> dict:
        cl = ShardCluster(agents.addrs, TOKEN, timeout=60)
        try:
            await cl.wait_ready(30)
            return await cl.profile(layers=2, tokens=6)
        finally:
            await cl.close()

    prof = _run(go())
    # n1 emulates a device half as fast as a host core, n2 a quarter: the layer times follow
    # the host's measurement of the same work divided by the speed
    for name, speed in (("n1", 0.5), ("n2", 0.25)):
        p = prof[name]
        assert p["layer_ms"] == pytest.approx(p["host_layer_ms"] / speed, rel=1e-6)
    assert prof["n2"]["layer_ms"] > prof["n0"]["layer_ms"]


@pytest.mark.unit
def test_node_dying_mid_generation_gives_a_clear_error_and_others_keep_serving(
        agents: Agents, prompt_ids: list[int], reference: list[int]) -> None:
    async def go() -> None:
        cl = ShardCluster(agents.addrs, TOKEN, timeout=60, step_timeout_s=10)
        try:
            await cl.wait_ready(30)
            await cl.load_pipeline("p", [("n0", 0, 10), ("n1", 10, 20), ("n0", 20, 30)])
            gen = asyncio.ensure_future(cl.generate("p", "n0", ["n0", "n1"], prompt_ids, 400, None))
            await asyncio.sleep(1.5)
            assert not gen.done()
            agents.kill("n1")
            t0 = time.monotonic()
            g = await gen
            assert not g.ok
            assert "n1" in (g.error or "")
            assert time.monotonic() - t0 < 15
            # the run survives: a plan without n1 still serves, with the same tokens
            await cl.load_pipeline("q", [("n0", 0, 12), ("n2", 12, 15), ("n0", 15, 30)])
            g = await cl.generate("q", "n0", ["n0", "n2"], prompt_ids, 12, EOS)
            assert g.ok, g.error
            assert g.tokens == reference
        finally:
            await cl.close()

    _run(go())


@pytest.mark.unit
def test_experiment_file_errors_name_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "x.llm.yaml"
    bad.write_text(yaml.safe_dump({"master": "a", "nodes": ["b"], "prompts": ["hi"],
                                   "methods": ["halda", "magic"]}))
    with pytest.raises(ConfigError, match=r"x\.llm\.yaml") as err:
        load_config(bad)
    assert "master 'a' must be one of nodes" in str(err.value)
    bad.write_text(yaml.safe_dump({"master": "a", "nodes": ["a"], "prompts": [],
                                   "max_new_tokens": 0}))
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "prompts" in str(err.value) and "max_new_tokens" in str(err.value)
    assert load_config(REPO / "topologies" / "edge-llm.llm.yaml").master == "edge1"


@pytest.mark.emulation
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="emulation tests need root (namespaces)")
def test_edge_llm_scenario_end_to_end(tmp_path: Path) -> None:
    """The edge-llm network and agents, a short experiment: every method's tokens equal the
    reference, Halda beats the even split, the crash of a shard node is survived, and nothing
    is left behind."""
    import json

    from testbed.run.cleanup import leftovers
    from testbed.run.runner import Run, RunOptions
    from testbed.scenario import load

    exp = yaml.safe_load((REPO / "topologies" / "edge-llm.llm.yaml").read_text())
    exp |= {"prompts": [PROMPT], "max_new_tokens": 8, "methods": ["even", "halda", "tensor"],
            "failover": {"until_s": 85}}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    raw = yaml.safe_load((REPO / "topologies" / "edge-llm.yaml").read_text())
    raw["include"] = str(REPO / "topologies" / raw["include"])  # the copy lives in tmp_path
    raw["duration_s"] = 100
    for ev in raw["timeline"]:
        if ev.get("node") == "gs1":
            ev["command"] = f"python -m controllers.llm.live --config {tmp_path / 'exp.yaml'}"
        if ev["action"] == "node_crash":
            ev["at_s"] = 50
    raw["capture"] = {"enabled": False}
    path = tmp_path / "edge-llm.yaml"
    path.write_text(yaml.safe_dump(raw))
    res = Run(load(path), "edge-llm", RunOptions(results_base=tmp_path, analyze=False)).execute()
    assert res.status == "done", res.error
    d = res.run_dir
    log = (d / "logs" / "gs1" / "exec-1s.log").read_text(errors="replace")
    assert (d / "llm" / "summary.json").is_file(), log[-3000:]
    summary = json.loads((d / "llm" / "summary.json").read_text())
    rows = {r["method"]: r for r in summary["methods"]}
    assert all(r["tokens_equal"] for r in rows.values()), rows
    assert rows["halda"]["ms_per_token"] < rows["even"]["ms_per_token"]
    assert rows["tensor"]["bytes_per_token"] > 10 * rows["halda"]["bytes_per_token"]
    f = summary["failover"]
    assert f["failure"] and f["dead"] == ["uav1"], (f, log[-3000:])
    assert f["replanned"]["ok"] and f["replanned"]["tokens_equal"]
    assert "uav1" not in f["replanned"]["members"]
    assert not any(leftovers(d.name.rsplit("-", 1)[-1]).values())
