"""`python -m testbed <verb>`: the same verbs as the Makefile, for people who don't use make.

    scenarios                      list the scenarios in topologies/
    check  NAME | --file F         validate a scenario (and print its plan) without running it
    run    NAME | --file F         run it: build, health-check, experiment, measure, tear down
    shell  NODE [--run ID]         a shell inside a node of a running scenario
    exec   NODE CMD...             run one command inside a node of a running scenario
    status                         running scenarios
    clean  [--all]                 remove what crashed or killed runs left behind
    bench  [NAME ...] | --list     benchmarks -> results/bench/*.json (the core's and workloads')
    eval   NAME [VAR=value ...] [-- ARGS]   a workload's evaluation (make eval-NAME)
    workloads                      what each installed workload adds
    sweep  SPEC [--ray-address A]  a parameter sweep as Ray tasks, one table (docs/sweeps.md)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from testbed.net import plan as planner
from testbed.scenario import ScenarioError, available, load, resolve


def _load(args: argparse.Namespace) -> tuple[object, Path]:
    from testbed.scenario.overrides import PathError, parse_sets

    path = resolve(args.name, args.file)
    try:
        sets = parse_sets(getattr(args, "set", None) or [])
    except PathError as exc:
        raise ScenarioError("--set", [exc.problem]) from None
    return load(path, cut_to_s=getattr(args, "duration", None), sets=sets), path


def cmd_scenarios(args: argparse.Namespace, con: Console) -> int:
    table = Table(title="Scenarios (make scenario NAME=...)")
    table.add_column("name")
    table.add_column("description")
    for name, path in available().items():
        try:
            desc = " ".join(load(path).description.split()) or "-"
        except ScenarioError as exc:
            desc = f"[red]invalid: {exc.problems[0].path}: {exc.problems[0].message}[/]"
        table.add_row(name, desc)
    con.print(table)
    return 0


def cmd_check(args: argparse.Namespace, con: Console) -> int:
    from testbed.mobility.world import World
    from testbed.net.network import preflight

    sc0, path = _load(args)
    built = time.perf_counter()
    world = World.build(sc0, str(path))  # type: ignore[arg-type]
    built = time.perf_counter() - built
    sc = world.sc
    preflight(sc, str(path))
    if args.inventory:
        from testbed.hil.boards import HardwareInTheLoop

        HardwareInTheLoop.load(args.inventory, con).require(sc)  # prints each board's report
    plan = planner.build(sc, "0000")
    con.print(f"[green]OK[/] {path}: {len(sc.nodes)} nodes, {len(sc.links)} links, "
              f"{len(plan.segments)} subnets, {len(sc.traffic)} flows, "
              f"{len(sc.timeline)} timeline events (expanded in {built:.2f} s)")
    if world.dyn or world.moving:
        info = world.describe()
        con.print(f"mobility: {len(world.sat_names)} satellites, dynamic links "
                  f"{info['dynamic_links']}, moving nodes {info['moving_nodes']}, "
                  f"epoch {info['epoch']}, time scale {world.time_scale:g}")
    for term, wins in world.passes().items():
        con.print(f"{term}: {len(wins)} satellite passes above the mask during the run: " +
                  ", ".join(f"{sat} {a:.0f}-{b:.0f} s (max {el:.0f} deg)"
                            for sat, a, b, el in sorted(wins, key=lambda w: w[1])[:6]) +
                  (" ..." if len(wins) > 6 else ""))
    if world.groups:
        from testbed.mobility.association import predict

        hand = predict(world)
        table = Table(title=f"Predicted attachments and handovers ({len(hand)} events)")
        for col in ("t (s)", "group", "terminal", "from", "to", "reason"):
            table.add_column(col)
        for h in hand[: args.max_rows]:
            table.add_row(f"{h['t_s']:.1f}", str(h["group"]), str(h["terminal"]),
                          str(h["from"] or "-"), str(h["to"] or "-"), str(h["reason"]))
        con.print(table)
        if len(hand) > args.max_rows:
            con.print(f"... {len(hand) - args.max_rows} more")
    if args.plan:
        table = Table(title="Plan")
        for col in ("subnet", "segment", "medium", "members"):
            table.add_column(col)
        for seg in plan.segments:
            table.add_row(seg.subnet, seg.name, seg.medium.value,
                          ", ".join(f"{m.node}:{m.ifname}={m.ip}" for m in seg.members))
        con.print(table)
    return 0


def cmd_run(args: argparse.Namespace, con: Console) -> int:
    from testbed.run.runner import Run, RunOptions
    from testbed.run.summary import render

    sc, path = _load(args)
    if getattr(args, "hosts", None) or getattr(sc, "cluster", None) is not None:
        from testbed.cluster import command  # one scenario on several hosts

        return command.run(sc, path, args.hosts, con,  # type: ignore[arg-type]
                           getattr(args, "results", None))
    inventory = Path(args.inventory) if args.inventory else None
    extra = {"results_base": Path(args.results)} if args.results else {}
    result = Run(sc, str(path), RunOptions(hold=args.hold, console=con,  # type: ignore[arg-type]
                                           inventory=inventory, view=args.view,
                                           view_port=args.view_port, **extra)).execute()
    if result.metrics:  # the tables, then each workload's headline (testbed.run.summary)
        text = render(result.metrics, con, result.run_dir)
        (result.run_dir / "summary.txt").write_text(text)
    con.print(f"results: {result.run_dir}  (status: {result.status})")
    if args.view:
        con.print(f"replay it in the browser: make view RUN={result.run_dir}")
    if result.error:
        con.print(f"[red]{result.error}[/]")
    return {"done": 0, "interrupted": 130}.get(result.status, 1)


def cmd_summary(args: argparse.Namespace, con: Console) -> int:
    """A finished run's console summary again (its tables and every workload's headline),
    from its metrics.json; with --write, summary.txt is rewritten too."""
    from testbed.run.summary import render

    run_dir = Path(args.run_dir)
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError) as exc:
        con.print(f"[red]{run_dir}: no readable metrics.json ({exc})[/]")
        return 2
    text = render(metrics, con, run_dir)
    if args.write:
        (run_dir / "summary.txt").write_text(text)
    return 0


def _find_run(run: str | None) -> object:
    from testbed.lifecycle.ledger import active_ledgers

    runs = active_ledgers()
    if run:
        runs = [r for r in runs if run in (r.run_id, r.scenario)]
    if not runs:
        raise SystemExit("no running scenario" + (f" matching {run}" if run else "") +
                         ": start one with make scenario NAME=... (HOLD=1 keeps it up)")
    return max(runs, key=lambda r: r.created)


def _netns(args: argparse.Namespace) -> tuple[str, str]:
    ledger = _find_run(args.run)
    ns = f"sh{ledger.tag}-{args.node}"  # type: ignore[attr-defined]
    if ns not in ledger.namespaces:  # type: ignore[attr-defined]
        nodes = sorted(n.split("-", 1)[1] for n in ledger.namespaces)  # type: ignore[attr-defined]
        raise SystemExit(f"no node '{args.node}' in run {ledger.run_id}; "  # type: ignore[attr-defined]
                         f"nodes: {', '.join(nodes)}")
    return ns, ledger.run_id  # type: ignore[attr-defined]


def cmd_shell(args: argparse.Namespace, con: Console) -> int:
    ns, run_id = _netns(args)
    con.print(f"shell in {args.node} (namespace {ns}, run {run_id}); exit to leave")
    env = {**os.environ, "PS1": f"[{args.node}] \\w# "}
    os.execvpe("ip", ["ip", "netns", "exec", ns, "bash", "--norc", "-i"], env)
    return 0


def cmd_exec(args: argparse.Namespace, con: Console) -> int:
    ns, _ = _netns(args)
    os.execvp("ip", ["ip", "netns", "exec", ns, *args.command])
    return 0


def cmd_status(args: argparse.Namespace, con: Console) -> int:
    from testbed.lifecycle.ledger import all_ledgers

    table = Table(title="Runs on this host")
    for col in ("run", "scenario", "state", "nodes", "results"):
        table.add_column(col)
    for lg in all_ledgers():
        table.add_row(lg.run_id, lg.scenario, "running" if lg.runner_alive() else
                      "dead: make clean", str(len(lg.namespaces)), lg.results_dir)
    con.print(table)
    return 0


def cmd_clean(args: argparse.Namespace, con: Console) -> int:
    from testbed.run.cleanup import clean

    done = clean(include_active=args.all)
    for run_id, counts in done:
        con.print(f"cleaned {run_id}: {counts}")
    if not done:
        con.print("nothing to clean")
    from testbed.lifecycle.ledger import LEDGER_DIR

    if any((LEDGER_DIR / "cluster").glob("*.json")):  # multi-host runs: clean their hosts too
        from testbed.cluster import command

        command.clean(con)
    from testbed.vm import board

    vms = board.running()
    if vms:  # started by a person (or a killed test lane): like hardware, left running
        con.print(f"emulated boards still running: {', '.join(v.name for v in vms)} "
                  "(make board-vm ACTION=down stops them)")
    return 0


def cmd_bench(args: argparse.Namespace, con: Console) -> int:
    from testbed.bench import listing
    from testbed.bench import main as bench_main

    if args.list:
        print(listing())
        return 0
    return bench_main(args.which, con)


def eval_argv(name: str, words: list[str]) -> list[str]:
    """`VAR=value` words (make's command-line variables) become the eval's flags; other
    words pass through.  Unknown variables are an error that lists the known ones."""
    from testbed.workloads import Registry

    evals = Registry.installed().evals()
    if name not in evals:
        raise SystemExit(f"no eval named '{name}'; available: {', '.join(evals) or '(none)'}")
    flags = evals[name].make_vars
    out: list[str] = []
    for word in words:
        var, eq, value = word.partition("=")
        if eq and var.isupper() and not word.startswith("-"):
            if var not in flags:
                raise SystemExit(f"eval {name} takes {', '.join(sorted(flags)) or 'no '}"
                                 f" variables, not {var} (other options: -- --help)")
            out += [flags[var], value]
        elif word != "--":
            out.append(word)
    return out


def cmd_eval(args: argparse.Namespace, con: Console) -> int:
    from testbed.workloads import Registry, resolve

    argv = eval_argv(args.name, args.args)
    rc = resolve(Registry.installed().evals()[args.name].main)(argv)
    return int(rc or 0)


def cmd_workloads(args: argparse.Namespace, con: Console) -> int:
    from testbed.workloads import Registry

    table = Table(title="Workloads (entry points sagin_hil.workloads, testbed/workloads.py)")
    for col in ("workload", "adds"):
        table.add_column(col)
    for w in Registry.installed().workloads:
        adds = [f"node section {n}" for n in w.node_sections]
        adds += [f"SDN app {a.name}" for a in w.sdn_apps]
        adds += ["run-time service"] if w.service else []
        adds += [f"bench {b.name}" for b in w.benches]
        adds += [f"eval {e.name}" for e in w.evals]
        adds += ["console headline"] if w.headline else []
        adds += ["report section"] if w.report else []
        adds += ["board agent"] if w.board_agent else []
        table.add_row(w.name, f"{w.about}\n[dim]{', '.join(adds)}[/]")
    con.print(table)
    return 0


def cmd_sweep(args: argparse.Namespace, con: Console) -> int:
    from testbed.sweep.execute import main as sweep_main

    return sweep_main(args, con)


def cmd_boards(args: argparse.Namespace, con: Console) -> int:
    from testbed.vm import board

    return board.main(args.args)


def cmd_hosts(args: argparse.Namespace, con: Console) -> int:
    from testbed.cluster import standin

    if not args.args or args.args[0] != "sim":
        con.print("usage: python -m testbed hosts sim up [N] | down | status")
        return 2
    return standin.main(args.args[1:])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m testbed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="verb", required=True)
    sub.add_parser("scenarios").set_defaults(fn=cmd_scenarios)
    for verb, fn in (("check", cmd_check), ("run", cmd_run)):
        sp = sub.add_parser(verb)
        sp.add_argument("name", nargs="?")
        sp.add_argument("--file")
        sp.add_argument("--inventory", help="hardware in the loop: boards replacing nodes "
                        "(testbed/hil/inventory.example.yaml)")
        sp.add_argument("--hosts", help="run on several hosts: a hosts file (hosts: [...]; "
                        "docs/multi-host.md); python -m testbed hosts sim up makes two")
        sp.add_argument("--duration", type=float,
                        help="shorten the run to this many seconds (flows clipped, later "
                        "events dropped)")
        sp.add_argument("--set", action="append", metavar="PATH=VALUE",
                        help="change one field, e.g. links.sat-up.delay_ms=20 (list items by "
                        "name; the value is YAML); repeatable")
        if verb == "check":
            sp.add_argument("--plan", action="store_true", help="print subnets and addresses")
            sp.add_argument("--max-rows", type=int, default=40,
                            help="rows of the predicted handover table")
        else:
            sp.add_argument("--hold", action="store_true",
                            help="keep the network up after the timeline until Ctrl-C")
            sp.add_argument("--view", action="store_true",
                            help="the live web view: prints a 127.0.0.1 URL to open")
            sp.add_argument("--view-port", type=int, default=0,
                            help="the view's port (default: any free one)")
            sp.add_argument("--results", metavar="DIR",
                            help="write the run under DIR/<scenario>/<run-id> instead of "
                            "results/ (the sweeps use it)")
        sp.set_defaults(fn=fn)
    sp = sub.add_parser("shell")
    sp.add_argument("node")
    sp.add_argument("--run")
    sp.set_defaults(fn=cmd_shell)
    sp = sub.add_parser("exec")
    sp.add_argument("node")
    sp.add_argument("command", nargs=argparse.REMAINDER)
    sp.add_argument("--run")
    sp.set_defaults(fn=cmd_exec)
    sub.add_parser("status").set_defaults(fn=cmd_status)
    sp = sub.add_parser("clean")
    sp.add_argument("--all", action="store_true", help="also runs whose runner is alive")
    sp.set_defaults(fn=cmd_clean)
    sp = sub.add_parser("bench")
    sp.add_argument("which", nargs="*", default=[])
    sp.add_argument("--list", action="store_true", help="list the benchmarks")
    sp.set_defaults(fn=cmd_bench)
    sp = sub.add_parser("eval", help="a workload's evaluation: eval NAME [VAR=value ...] "
                        "[-- ARGS]")
    sp.add_argument("name")
    sp.add_argument("args", nargs=argparse.REMAINDER)
    sp.set_defaults(fn=cmd_eval)
    sub.add_parser("workloads").set_defaults(fn=cmd_workloads)
    sp = sub.add_parser("sweep", help="a parameter sweep as Ray tasks: sweep SPEC.yaml "
                        "[--ray-address ADDR] (docs/sweeps.md)")
    sp.add_argument("spec", help="sweeps/<name>.yaml")
    sp.add_argument("--ray-address", default=None,
                    help="an existing Ray cluster (default: a local one started and stopped "
                    "here)")
    sp.add_argument("--out", default=None, help="default results/sweeps/<name>")
    sp.add_argument("--dry-run", action="store_true",
                    help="validate and list the runs, start nothing")
    sp.set_defaults(fn=cmd_sweep)
    sp = sub.add_parser("summary", help="a finished run's summary and workload headlines again")
    sp.add_argument("run_dir", help="results/<scenario>/<run-id> (or .../latest)")
    sp.add_argument("--write", action="store_true", help="rewrite the run's summary.txt")
    sp.set_defaults(fn=cmd_summary)
    sp = sub.add_parser("boards", help="boards vm up|down|status|build|poweroff|cut|restore: "
                        "emulated arm64 boards for the hardware path (testbed/vm/board.py)")
    sp.add_argument("kind", choices=["vm"])
    sp.add_argument("args", nargs=argparse.REMAINDER)
    sp.set_defaults(fn=cmd_boards)
    sp = sub.add_parser("hosts", help="hosts sim up [N]|down|status: stand-in hosts (namespaces "
                        "with sshd on an underlay LAN) for multi-host runs (docs/multi-host.md)")
    sp.add_argument("args", nargs="*")
    sp.set_defaults(fn=cmd_hosts)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    con = Console()
    if args.verb in ("check", "run") and not (args.name or args.file):
        con.print("give a scenario NAME or --file PATH; `python -m testbed scenarios` lists them")
        return 2
    try:
        return int(args.fn(args, con))
    except ScenarioError as exc:
        con.print(f"[red]scenario error[/]\n{exc}", markup=True, highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
