"""From SNR to achievable rate and packet loss: Shannon with a gap, MCS tables, a PER curve.

Shannon capacity with an SNR gap Γ (Cioffi's gap approximation; Goldsmith, "Wireless
Communications", §9.3)::

    R = B · log2(1 + SNR / Γ)

Γ folds the distance of real coding and modulation from capacity into one number (≈3 dB
for good LDPC/turbo codes at practical error rates), so Shannon stays an upper-bound-like
but not absurd rate.  The spectral efficiency can be capped to mimic the top modulation.

MCS tables give the step-wise rate of a real PHY: the highest-rate entry whose required
SNR is met is used.  Entries are (name, required SNR in dB, spectral efficiency in
bit/s/Hz), so a table scales with the channel bandwidth.

* "dvb-s2": ETSI EN 302 307-1 V1.4.1, Table 13 - ideal Es/N0 for quasi-error-free
  operation (PER 1e-7, AWGN, normal 64800-bit FECFRAME) and spectral efficiency in bit
  per symbol.  The symbol rate is taken equal to the bandwidth; roll-off and pilots can
  be charged to the channel's `efficiency`.
* "802.11ac": VHT MCS 0-9, one spatial stream, 20 MHz, 800 ns guard interval; rates 6.5
  ... 86.7 Mbit/s (IEEE 802.11-2016 Table 21-30; MCS 9 at 20 MHz/1 SS is excluded by
  802.11ac but computed by the same formula and supported by 802.11ax chipsets), divided
  by 20 MHz.  Required SNR: the receiver minimum sensitivity of IEEE 802.11-2016 Table
  21-25 (-82 ... -57 dBm) minus the 20 MHz thermal noise (-101 dBm) and the 10 dB noise
  figure the standard assumes; it keeps the standard's 5 dB implementation margin.
* "802.11p": the OFDM PHY in a 10 MHz channel (ITS-G5 / DSRC), 3 ... 27 Mbit/s; required
  SNR from the 10 MHz receiver minimum sensitivity of IEEE 802.11-2016 Table 17-18
  (-85 ... -68 dBm) minus the 10 MHz thermal noise (-104 dBm) and the same 10 dB noise
  figure.

Packet loss: a logistic curve around a threshold::

    PER = 1 / (1 + exp((SNR - threshold) / slope))

an abstraction of a coded link's waterfall: 50 % at the threshold, dropping by a factor
e per `slope` dB above it.  Real curves are steeper (LDPC: ~1 dB from 1e-1 to 1e-5) but
the emulator wants a smooth, monotone loss rather than a cliff.  It is computed as
0.5·(1 - tanh(x/2)), the same function, without overflow.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from testbed.channels.free_space import FloatOrArray


class McsEntry(NamedTuple):
    name: str
    threshold_db: float  # required SNR (Es/N0 for DVB-S2)
    efficiency: float  # bit/s/Hz


def _wifi(mcs: int, modulation: str, sensitivity_dbm: float, rate_mbps: float,
          bandwidth_mhz: float = 20.0) -> McsEntry:
    noise_dbm = round(-174.0 + 10.0 * float(np.log10(bandwidth_mhz * 1e6)))  # -101, -104
    return McsEntry(f"MCS{mcs} {modulation}", sensitivity_dbm - noise_dbm - 10.0,
                    rate_mbps / bandwidth_mhz)


MCS_TABLES: dict[str, tuple[McsEntry, ...]] = {
    "dvb-s2": (
        McsEntry("QPSK 1/4", -2.35, 0.490243),
        McsEntry("QPSK 1/3", -1.24, 0.656448),
        McsEntry("QPSK 2/5", -0.30, 0.789412),
        McsEntry("QPSK 1/2", 1.00, 0.988858),
        McsEntry("QPSK 3/5", 2.23, 1.188304),
        McsEntry("QPSK 2/3", 3.10, 1.322253),
        McsEntry("QPSK 3/4", 4.03, 1.487473),
        McsEntry("QPSK 4/5", 4.68, 1.587196),
        McsEntry("QPSK 5/6", 5.18, 1.654663),
        McsEntry("QPSK 8/9", 6.20, 1.766451),
        McsEntry("QPSK 9/10", 6.42, 1.788612),
        McsEntry("8PSK 3/5", 5.50, 1.779991),
        McsEntry("8PSK 2/3", 6.62, 1.980636),
        McsEntry("8PSK 3/4", 7.91, 2.228124),
        McsEntry("8PSK 5/6", 9.35, 2.478562),
        McsEntry("8PSK 8/9", 10.69, 2.646012),
        McsEntry("8PSK 9/10", 10.98, 2.679207),
        McsEntry("16APSK 2/3", 8.97, 2.637201),
        McsEntry("16APSK 3/4", 10.21, 2.966728),
        McsEntry("16APSK 4/5", 11.03, 3.165623),
        McsEntry("16APSK 5/6", 11.61, 3.300184),
        McsEntry("16APSK 8/9", 12.89, 3.523143),
        McsEntry("16APSK 9/10", 13.13, 3.567342),
        McsEntry("32APSK 3/4", 12.73, 3.703295),
        McsEntry("32APSK 4/5", 13.64, 3.951571),
        McsEntry("32APSK 5/6", 14.28, 4.119540),
        McsEntry("32APSK 8/9", 15.69, 4.397854),
        McsEntry("32APSK 9/10", 16.05, 4.453027),
    ),
    "802.11ac": (
        _wifi(0, "BPSK 1/2", -82, 6.5),
        _wifi(1, "QPSK 1/2", -79, 13.0),
        _wifi(2, "QPSK 3/4", -77, 19.5),
        _wifi(3, "16-QAM 1/2", -74, 26.0),
        _wifi(4, "16-QAM 3/4", -70, 39.0),
        _wifi(5, "64-QAM 2/3", -66, 52.0),
        _wifi(6, "64-QAM 3/4", -65, 58.5),
        _wifi(7, "64-QAM 5/6", -64, 65.0),
        _wifi(8, "256-QAM 3/4", -59, 78.0),
        _wifi(9, "256-QAM 5/6", -57, 86.7),
    ),
    "802.11p": (
        _wifi(0, "BPSK 1/2", -85, 3.0, 10.0),
        _wifi(1, "BPSK 3/4", -84, 4.5, 10.0),
        _wifi(2, "QPSK 1/2", -82, 6.0, 10.0),
        _wifi(3, "QPSK 3/4", -80, 9.0, 10.0),
        _wifi(4, "16-QAM 1/2", -77, 12.0, 10.0),
        _wifi(5, "16-QAM 3/4", -73, 18.0, 10.0),
        _wifi(6, "64-QAM 2/3", -69, 24.0, 10.0),
        _wifi(7, "64-QAM 3/4", -68, 27.0, 10.0),
    ),
}


def shannon_rate_bps(snr_db: FloatOrArray, bandwidth_hz: float, gap_db: float = 0.0,
                     max_spectral_eff: float | None = None) -> FloatOrArray:
    """B·log2(1 + SNR/Γ) in bit/s, spectral efficiency optionally capped (bit/s/Hz)."""
    eff = np.log2(1.0 + 10.0 ** ((snr_db - gap_db) / 10.0))
    if max_spectral_eff is not None:
        eff = np.minimum(eff, max_spectral_eff)
    return bandwidth_hz * eff


@cache
def _ladder(table: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Thresholds ascending, and best[i]: the top efficiency of the i lowest (best[0] = 0).

    DVB-S2 thresholds are not monotone in efficiency (8PSK 3/5 needs less SNR than
    QPSK 9/10 and carries less), so "highest entry whose threshold ≤ SNR" is a maximum
    over all entries met, which the running maximum turns into one sorted lookup.
    """
    entries = sorted(MCS_TABLES[table], key=lambda e: e.threshold_db)
    thresholds = np.array([e.threshold_db for e in entries])
    best = np.maximum.accumulate(np.array([0.0] + [e.efficiency for e in entries]))
    return thresholds, best


def mcs_rate_bps(snr_db: FloatOrArray, bandwidth_hz: float, table: str) -> FloatOrArray:
    """Rate in bit/s of the best MCS entry whose required SNR ≤ snr_db; 0 when none is met."""
    thresholds, best = _ladder(table)
    return bandwidth_hz * best[np.searchsorted(thresholds, snr_db, side="right")]


def min_threshold_db(table: str) -> float:
    """Lowest required SNR of a table: where the link starts to carry anything."""
    return float(_ladder(table)[0][0])


def packet_loss(snr_db: FloatOrArray, threshold_db: float, slope_db: float = 1.0) -> FloatOrArray:
    """Packet error rate in [0, 1]: logistic waterfall, 0.5 at the threshold."""
    return 0.5 * (1.0 - np.tanh((snr_db - threshold_db) / (2.0 * slope_db)))
