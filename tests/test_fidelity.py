"""Fidelity must not regress: the short form of `make bench BENCH=fidelity` (one delay, one
rate) through the same measurement code, with the bench's own pass criteria."""

from __future__ import annotations

import pytest

from testbed.bench.fidelity import measure

pytestmark = [pytest.mark.emulation]


def test_rtt_and_goodput_match_the_configured_link() -> None:
    out = measure(delays_ms=[25], rates_mbps=[10], pings=15, tcp_s=6, omit_s=1)
    (rtt,) = out["rtt"]
    (tcp,) = out["goodput"]
    assert rtt["samples"] >= 14, rtt
    # median RTT within 2 % or 0.5 ms of the configured one (delay compensation on)
    assert rtt["pass"], rtt
    # TCP over a PPP-framed 10 Mbit/s link: at least 93 % of the rate (ceiling 96.4 %)
    assert tcp["pass"], tcp
