"""802.11 events from a radiotap capture of mac80211_hwsim's `hwsim0` monitor interface.

hwsim0 sees every frame any hwsim radio sends, so one capture shows the whole wireless side
of a run: who (re)associated where and when, how long a handover took, how often data frames
were retransmitted, which BSSs were beaconing (IBSS ad hoc networks included).

dpkt reads the capture (pcap or pcapng) and the radiotap header (`dpkt.radiotap.Radiotap`, fed
the radiotap bytes only, for the FCS / bad-FCS flags).  The 802.11 header and the few fixed
management fields are decoded here with struct, using dpkt.ieee80211's type numbers, because
dpkt.ieee80211.IEEE80211 raises on valid frames (every action frame but Block Ack, PS-Poll)
and reads the little-endian fixed fields big-endian (status 17 comes out as 4352, auth
sequence 2 as 512).  A frame shorter than what is read from it counts as `malformed`.  A
capture cut inside a record header (tcpdump killed) stops with `error` set, keeping what was
read; dpkt hands a record cut inside its body over short, so it is decoded as far as it goes.

Roams: a successful (re)association response to a station from a BSSID other than the one it
was last associated with.  The roam time runs from the station's first frame toward the new
BSSID since that previous association (authentication, or (re)association request) to that
response.  Retransmitted management frames (Retry flag, same sequence number) are listed as
events but do not move the station state twice.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dpkt
from dpkt import ieee80211 as w
from dpkt import radiotap

LINKTYPE_IEEE802_11 = 105
LINKTYPE_IEEE802_11_RADIOTAP = 127

# frame control, second byte (dpkt's masks are for its byte-swapped read of the whole field)
FC_TO_DS, FC_FROM_DS, FC_RETRY, FC_PROTECTED, FC_ORDER = 0x01, 0x02, 0x08, 0x40, 0x80
# radiotap Flags field
RT_FCS, RT_BAD_FCS = 0x10, 0x40
CAP_IBSS = 0x0002
IE_SSID, IE_MESH_ID = 0, 114

MGMT_EVENTS = {
    w.M_AUTH: "auth",
    w.M_ASSOC_REQ: "assoc_req",
    w.M_ASSOC_RESP: "assoc_resp",
    w.M_REASSOC_REQ: "reassoc_req",
    w.M_REASSOC_RESP: "reassoc_resp",
    w.M_DEAUTH: "deauth",
    w.M_DISASSOC: "disassoc",
}
# bytes of fixed fields read after the 24-byte header (when the frame is not protected)
FIXED_LEN = {w.M_AUTH: 6, w.M_ASSOC_REQ: 4, w.M_ASSOC_RESP: 6, w.M_REASSOC_REQ: 10,
             w.M_REASSOC_RESP: 6, w.M_DEAUTH: 2, w.M_DISASSOC: 2, w.M_BEACON: 12}


class WlanCaptureError(ValueError):
    """The file is not a pcap/pcapng of 802.11 frames."""


class Malformed(ValueError):
    """One frame shorter than its headers claim; counted, never raised to the caller."""


def mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


@dataclass
class MgmtEvent:
    """One management frame of interest, as seen on the air (retransmissions included)."""

    time: float
    type: str  # auth, assoc_req, assoc_resp, reassoc_req, reassoc_resp, deauth, disassoc
    src: str
    dst: str
    bssid: str
    status: int | None = None  # auth and (re)association responses
    reason: int | None = None  # deauth, disassoc
    auth_seq: int | None = None
    retry: bool = False


@dataclass
class Roam:
    time: float  # the successful (re)association response
    from_bssid: str
    to_bssid: str
    start: float  # the station's first frame toward to_bssid
    roam_time_s: float


@dataclass
class Station:
    associations: list[tuple[float, str]] = field(default_factory=list)
    roams: list[Roam] = field(default_factory=list)


@dataclass
class LinkCount:
    """Data frames one transmitter sent to one receiver (null-data frames included)."""

    frames: int = 0
    retries: int = 0

    @property
    def retry_ratio(self) -> float:
        return self.retries / self.frames if self.frames else 0.0


@dataclass
class BssBeacons:
    count: int = 0
    ssid: str = ""
    mode: str = "ess"  # ess, ibss (ad hoc) or mesh
    first: float = 0.0
    last: float = 0.0


@dataclass
class WlanReport:
    path: str
    linktype: int = LINKTYPE_IEEE802_11_RADIOTAP
    frames: int = 0
    malformed: int = 0
    bad_fcs: int = 0  # frames the radio flagged as failing the FCS check: skipped
    control_frames: int = 0
    error: str | None = None  # where reading stopped early (truncated file)
    events: list[MgmtEvent] = field(default_factory=list)
    stations: dict[str, Station] = field(default_factory=dict)
    data: dict[tuple[str, str], LinkCount] = field(default_factory=dict)
    beacons: dict[str, BssBeacons] = field(default_factory=dict)

    @property
    def data_frames(self) -> int:
        return sum(c.frames for c in self.data.values())

    @property
    def data_retries(self) -> int:
        return sum(c.retries for c in self.data.values())

    @property
    def retry_ratio(self) -> float:
        n = self.data_frames
        return self.data_retries / n if n else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: times rounded to microseconds, data links as a list."""
        def r(x: float) -> float:
            return round(x, 6)

        return {
            "file": self.path, "linktype": self.linktype, "frames": self.frames,
            "malformed": self.malformed, "bad_fcs": self.bad_fcs,
            "control_frames": self.control_frames, "error": self.error,
            "events": [{**asdict(e), "time": r(e.time)} for e in self.events],
            "stations": {
                sta: {"associations": [[r(t), b] for t, b in s.associations],
                      "roams": [{**asdict(x), "time": r(x.time), "start": r(x.start),
                                 "roam_time_s": r(x.roam_time_s)} for x in s.roams]}
                for sta, s in sorted(self.stations.items())},
            "data": {
                "frames": self.data_frames, "retries": self.data_retries,
                "retry_ratio": round(self.retry_ratio, 6),
                "links": [{"transmitter": ta, "receiver": ra, "frames": c.frames,
                           "retries": c.retries, "retry_ratio": round(c.retry_ratio, 6)}
                          for (ta, ra), c in sorted(self.data.items())]},
            "beacons": {b: {**asdict(c), "first": r(c.first), "last": r(c.last)}
                        for b, c in sorted(self.beacons.items())},
        }


# --- decoding -------------------------------------------------------------------------------

def strip_radiotap(buf: bytes) -> bytes | None:
    """The 802.11 frame inside a radiotap record (FCS removed); None for a bad-FCS frame."""
    if len(buf) < 8:
        raise Malformed("radiotap header cut short")
    version, _pad, length = struct.unpack_from("<BBH", buf)
    if version != 0 or length < 8 or length > len(buf):
        raise Malformed(f"radiotap version {version}, length {length} of {len(buf)} bytes")
    try:
        rt = radiotap.Radiotap(buf[:length])  # header only: dpkt then decodes no 802.11
    except (dpkt.UnpackError, struct.error, IndexError) as exc:
        raise Malformed(f"radiotap fields: {exc}") from exc
    flags = rt.flags.val if rt.flags_present else 0
    if flags & RT_BAD_FCS:
        return None
    frame = buf[length:]
    if flags & RT_FCS:
        if len(frame) < 4:
            raise Malformed("FCS flagged on a frame shorter than 4 bytes")
        frame = frame[:-4]
    return frame


def ies(body: bytes) -> Iterator[tuple[int, bytes]]:
    """Information elements, stopping quietly at a cut-off one."""
    pos = 0
    while pos + 2 <= len(body):
        eid, n = body[pos], body[pos + 1]
        if pos + 2 + n > len(body):
            return
        yield eid, body[pos + 2:pos + 2 + n]
        pos += 2 + n


class _Analyser:
    """Folds frames into a WlanReport; keeps per-station handover state on the side."""

    def __init__(self, report: WlanReport):
        self.rep = report
        self.current: dict[str, str] = {}  # station -> BSSID of its last association
        self.pending: dict[str, dict[str, float]] = {}  # station -> BSSID -> first frame
        self.last_seq: dict[str, tuple[int, int]] = {}  # transmitter -> (subtype, seq ctrl)

    def frame(self, ts: float, f: bytes) -> None:
        if len(f) < 10:
            raise Malformed(f"{len(f)}-byte 802.11 frame")
        fc0, fc1 = f[0], f[1]
        ftype, subtype = (fc0 >> 2) & 3, fc0 >> 4
        if ftype == w.MGMT_TYPE:
            self.mgmt(ts, f, subtype, fc1)
        elif ftype == w.DATA_TYPE:
            hdr = 24 + (6 if fc1 & FC_TO_DS and fc1 & FC_FROM_DS else 0)
            if subtype & 0x8:  # QoS: QoS Control, then HT Control when Order is set
                hdr += 2 + (4 if fc1 & FC_ORDER else 0)
            if len(f) < hdr:
                raise Malformed(f"{len(f)}-byte data frame, header needs {hdr}")
            link = self.rep.data.setdefault((mac(f[10:16]), mac(f[4:10])), LinkCount())
            link.frames += 1
            link.retries += bool(fc1 & FC_RETRY)
        elif ftype == w.CTL_TYPE:
            self.rep.control_frames += 1
        # type 3 (extension: DMG/S1G beacons) is counted in `frames` only

    def mgmt(self, ts: float, f: bytes, subtype: int, fc1: int) -> None:
        hdr = 24 + (4 if fc1 & FC_ORDER else 0)  # +HTC
        protected = bool(fc1 & FC_PROTECTED)
        need = hdr + (0 if protected else FIXED_LEN.get(subtype, 0))
        if len(f) < need:
            raise Malformed(f"{len(f)}-byte management frame (subtype {subtype}), need {need}")
        dst, src, bssid = mac(f[4:10]), mac(f[10:16]), mac(f[16:22])
        body = f[hdr:]
        if subtype == w.M_BEACON:
            self.beacon(ts, bssid, body)
            return
        kind = MGMT_EVENTS.get(subtype)
        if kind is None:
            return
        ev = MgmtEvent(ts, kind, src, dst, bssid, retry=bool(fc1 & FC_RETRY))
        if not protected:
            if subtype == w.M_AUTH:
                _alg, ev.auth_seq, ev.status = struct.unpack_from("<HHH", body)
            elif subtype in (w.M_ASSOC_RESP, w.M_REASSOC_RESP):
                ev.status = struct.unpack_from("<H", body, 2)[0]
            elif subtype in (w.M_DEAUTH, w.M_DISASSOC):
                ev.reason = struct.unpack_from("<H", body)[0]
        self.rep.events.append(ev)
        seq = struct.unpack_from("<H", f, 22)[0]
        if ev.retry and self.last_seq.get(src) == (subtype, seq):
            return  # a retransmission: the first copy already moved the state
        self.last_seq[src] = (subtype, seq)
        self.track(ev)

    def beacon(self, ts: float, bssid: str, body: bytes) -> None:
        b = self.rep.beacons.get(bssid)
        if b is None:
            b = self.rep.beacons[bssid] = BssBeacons(first=ts)
            elements = dict(ies(body[12:]))
            ssid = elements.get(IE_SSID, b"")
            b.ssid = "" if not ssid.strip(b"\0") else ssid.decode("utf-8", "replace")
            cap = struct.unpack_from("<H", body, 10)[0]
            b.mode = "ibss" if cap & CAP_IBSS else "mesh" if IE_MESH_ID in elements else "ess"
        b.count += 1
        b.last = ts

    def track(self, ev: MgmtEvent) -> None:
        """Handover state: first station frame toward a BSSID, then the successful answer."""
        if ev.type in ("auth", "assoc_req", "reassoc_req"):
            if ev.src == ev.bssid:  # an AP's authentication answer
                return
            self.pending.setdefault(ev.src, {}).setdefault(ev.bssid, ev.time)
        elif ev.type in ("assoc_resp", "reassoc_resp") and ev.status == 0:
            sta, bssid = ev.dst, ev.bssid
            station = self.rep.stations.setdefault(sta, Station())
            station.associations.append((ev.time, bssid))
            start = self.pending.pop(sta, {}).get(bssid, ev.time)
            prev = self.current.get(sta)
            if prev is not None and prev != bssid:
                station.roams.append(Roam(ev.time, prev, bssid, start, ev.time - start))
            self.current[sta] = bssid


def _records(reader: Any, rep: WlanReport) -> Iterator[tuple[float, bytes]]:
    """dpkt's records, turning a half-written last record into `rep.error`."""
    it = iter(reader)
    while True:
        try:
            ts, buf = next(it)
        except StopIteration:
            return
        except (dpkt.NeedData, struct.error, ValueError) as exc:
            rep.error = (f"{Path(rep.path).name}: capture ends in a truncated record after "
                         f"{rep.frames} frames ({str(exc) or type(exc).__name__})")
            return
        yield ts, buf


def analyse_pcap(path: Path) -> WlanReport:
    """Read one radiotap (or plain 802.11) pcap/pcapng and report its 802.11 events."""
    path = Path(path)
    rep = WlanReport(str(path))
    with path.open("rb") as fh:
        try:
            reader = dpkt.pcap.UniversalReader(fh)
        except (ValueError, dpkt.NeedData) as exc:
            raise WlanCaptureError(f"{path.name}: not a pcap or pcapng file ({exc})") from exc
        rep.linktype = reader.datalink()
        if rep.linktype not in (LINKTYPE_IEEE802_11_RADIOTAP, LINKTYPE_IEEE802_11):
            raise WlanCaptureError(
                f"{path.name}: link type {rep.linktype}, expected 127 (IEEE802_11_RADIOTAP, "
                "as captured on hwsim0) or 105 (IEEE802_11)")
        radiotap_hdr = rep.linktype == LINKTYPE_IEEE802_11_RADIOTAP
        an = _Analyser(rep)
        for ts, buf in _records(reader, rep):
            rep.frames += 1
            try:
                frame = strip_radiotap(buf) if radiotap_hdr else buf
                if frame is None:
                    rep.bad_fcs += 1
                    continue
                an.frame(float(ts), frame)
            except Malformed:
                rep.malformed += 1
    rep.events.sort(key=lambda e: e.time)  # stable: file order among equal times
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.analysis.wlan",
                                 description="802.11 events of a hwsim0 radiotap capture, "
                                             "as JSON")
    ap.add_argument("pcap", type=Path)
    args = ap.parse_args(argv)
    try:
        rep = analyse_pcap(args.pcap)
    except (OSError, WlanCaptureError) as exc:
        print(f"wlan: {exc}", file=sys.stderr)
        return 2
    json.dump(rep.to_dict(), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The few numbers of a `to_dict()` document that go into analysis.json (the whole
    document is analysis/wlan.json): frames, management events by type, associations, roams
    with their times, data retries."""
    kinds: dict[str, int] = {}
    for e in doc["events"]:
        kinds[e["type"]] = kinds.get(e["type"], 0) + 1
    roams = [r | {"station": sta} for sta, s in doc["stations"].items() for r in s["roams"]]
    return {"frames": doc["frames"], "malformed": doc["malformed"], "events": kinds,
            "associations": sum(len(s["associations"]) for s in doc["stations"].values()),
            "roams": roams, "data_frames": doc["data"]["frames"],
            "data_retries": doc["data"]["retries"], "retry_ratio": doc["data"]["retry_ratio"],
            "bss": len(doc["beacons"])}
