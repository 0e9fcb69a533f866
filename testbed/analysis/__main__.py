"""`python -m testbed.analysis RUN_DIR | --pcap FILE | --compare RUN_A RUN_B ...`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.analysis", description=__doc__)
    ap.add_argument("run", nargs="*", help="run folder(s): results/<scenario>/<run-id>")
    ap.add_argument("--pcap", help="analyse a single capture file (pcap or pcapng)")
    ap.add_argument("--compare", action="store_true", help="compare the given runs")
    ap.add_argument("--out", help="output folder (default: RUN/analysis, FILE.analysis/)")
    ap.add_argument("--bin", type=float, default=1.0, help="throughput bin in seconds")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: CPUs)")
    ap.add_argument("--split-mb", type=float, default=64,
                    help="captures larger than this are read by several processes (MB)")
    ap.add_argument("--warmup-mb", type=float, default=16,
                    help="bytes read before each range to rebuild TCP/ping state (MB)")
    ap.add_argument("--window", type=float, default=5.0,
                    help="longest one-way delay considered before a packet counts lost (s)")
    ap.add_argument("--nat-robust", action="store_true",
                    help="match packets across capture points without addresses and ports")
    ap.add_argument("--pair", nargs=2, action="append", metavar=("A", "B"),
                    help="capture pair for one-way delay (default: same link, two nodes)")
    args = ap.parse_args(argv)
    console = Console()
    split = {"workers": args.workers, "split_min": int(args.split_mb * (1 << 20)),
             "warmup": int(args.warmup_mb * (1 << 20))}
    from testbed.analysis.run import analyze_pcap, analyze_run

    if args.pcap:
        if not Path(args.pcap).is_file():
            console.print(f"[red]{args.pcap}: no such file[/]")
            return 2
        doc = analyze_pcap(args.pcap, out=args.out, bin_s=args.bin, **split)
        c = doc["capture"]
        console.print(f"{c['file']}: {c.get('packets', 0)} packets, {len(c['flows'])} flows")
        if c.get("error"):
            console.print(f"[yellow]{c['error']}[/]")
        console.print(f"-> {doc['out']}/report.html")
        return 1 if c.get("error") and not c.get("packets") else 0
    if not args.run:
        ap.print_usage()
        return 2
    if args.compare or len(args.run) > 1:
        from testbed.analysis.compare import compare_runs

        out = compare_runs([Path(r) for r in args.run], out=args.out, console=console)
        console.print(f"-> {out}")
        return 0
    try:
        doc = analyze_run(args.run[0], out=args.out, bin_s=args.bin, window_s=args.window,
                          nat_robust=args.nat_robust, pairs=args.pair, console=console, **split)
    except FileNotFoundError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    for c in doc["captures"]:
        if c.get("error"):
            console.print(f"[yellow]{c['error']}[/]")
    console.print(f"{len(doc['captures'])} captures, {len(doc['delay'])} capture pairs "
                  f"-> {doc['out']}/report.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
