"""python -m dqt_hw.bench: the hardware tables of docs/results.md, for every target at once.

Runs `python -m dqt_hw.build` once per target (sequentially: one tool at a time) into
OUT/<target>/, then writes OUT/results.md: area and Fmax per block and target, the flexibility
tax and throughput, the transition cost and the energy tables, each with the command that made
it. `make bench-hw` runs it with the defaults.
"""

import argparse
import json
import signal
import sys
from pathlib import Path

from . import toolchain
from .atomic import write_atomic
from .build import run_build
from .build.blocks import BLOCKS
from .build.config import parse_args
from .build.report import (fmax_cell, flexibility_verdict, inference_markdown,
                           op_count_markdown)
from .build.targets import TARGETS

__all__ = ["main", "collect_tables"]


def _make_parser():
    parser = argparse.ArgumentParser(
        prog="python -m dqt_hw.bench",
        description="Build the reference configuration for each target and write the "
                    "combined hardware tables (OUT/results.md).")
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help="comma-separated targets (default: all)")
    parser.add_argument("--bits", type=int, default=8, help="master width (default 8)")
    parser.add_argument("--rows", type=int, default=2, help="array rows (default 2)")
    parser.add_argument("--cols", type=int, default=2, help="array columns (default 2)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="nextpnr seeds per block (default 3)")
    parser.add_argument("--no-pnr", dest="place_route", action="store_false",
                        help="synthesis only")
    parser.add_argument("--model", type=Path, default=None,
                        help="exported package for the per-inference energy table")
    parser.add_argument("--dataset", default=None,
                        help="dataset to measure the model's dynamic bit mix on")
    parser.add_argument("--reuse", action="store_true",
                        help="keep a target's existing OUT/<target>/report.json when it was "
                             "made by the same build command")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-hw"),
                        help="output folder (default runs/bench-hw)")
    return parser


def _build_argv(args, target):
    argv = ["--bits", str(args.bits), "--rows", str(args.rows), "--cols", str(args.cols),
            "--target", target, "--seeds", str(args.seeds),
            "--out", str(args.out / target)]
    if not args.place_route:
        argv.append("--no-pnr")
    if args.model is not None:
        argv += ["--model", str(args.model)]
    if args.dataset is not None:
        argv += ["--dataset", args.dataset]
    return argv


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _rate(value):
    return "n/a" if value is None else f"{value / 1e6:,.0f} M"


def collect_tables(reports):
    """Markdown for the combined tables of several build reports ({target: report dict})."""
    first = next(iter(reports.values()))
    out = []
    tools = sorted({report["tools"]["yosys"] for report in reports.values()}
                   | {report["tools"].get("nextpnr") for report in reports.values()
                      if report["tools"].get("nextpnr")})
    out += ["### Area (LUT4 / carry / FF / DSP) and Fmax (MHz, min / median / max of the seeds)",
            ""]
    header = ["block"] + [f"{target} area" for target in reports] + [
        f"{target} Fmax" for target in reports]
    rows = []
    for name in first["blocks"]:
        row = [f"`{name}`"]
        for report in reports.values():
            block = report["blocks"].get(name)
            res = block["synthesis"]["resources"] if block else None
            row.append(f"{res['LUT4']} / {res['carry']} / {res['FF']} / {res['DSP']}"
                       if res else "-")
        for report in reports.values():
            block = report["blocks"].get(name)
            row.append(fmax_cell(block) if block else "-")
        rows.append(row)
    out.append(_table(header, rows))
    out += ["", "Tools: " + "; ".join(tools) + ". Synthesis commands: " + "; ".join(
        f"{target}: `{report['synthesis_flow']['command']}`"
        for target, report in reports.items()) + ". Place and route flags: " + "; ".join(
        f"{target}: `{' '.join(report['place_route_flow']['flags'])}`"
        for target, report in reports.items() if report["place_route_flow"]) + "."]

    for target, report in reports.items():
        for name, block in report["blocks"].items():
            if block.get("place_route", {}).get("note"):
                out.append(f"{target} `{name}`: {block['place_route']['note']}.")

    out += ["", "### Flexibility tax: scalable PE / fixed MAC (goal <= 1.5x at n = 8; Bit "
                "Fusion pays 2.5x)", ""]
    rows = []
    for target, report in reports.items():
        flex = report.get("flexibility")
        if not flex:
            continue
        pe = report["blocks"]["pe_scalable"]["synthesis"]["resources"]
        fixed = report["blocks"]["pe_fixed"]["synthesis"]["resources"]
        ratio = dict(flex["ratio"])
        # Reports from before the LUT4-sites column: recompute it from the same counts.
        sites = TARGETS[target].lut_sites
        ratio.setdefault("LUT4_sites", sites(pe) / sites(fixed))
        verdict = flexibility_verdict(ratio, report["config"]["master_bits"])
        rows.append([target, f"{pe['LUT4']} / {fixed['LUT4']}", f"{ratio['LUT4']:.2f}x",
                     f"{sites(pe)} / {sites(fixed)}", f"{ratio['LUT4_sites']:.2f}x",
                     f"{pe['FF']} / {fixed['FF']}", f"{ratio['FF']:.2f}x", verdict])
    out.append(_table(["target", "LUT4 PE / fixed", "LUT4 ratio",
                       "LUT4 sites incl. carry (ECP5: + 2 per CCU2C)", "sites ratio",
                       "FF PE / fixed", "FF ratio", "1.5x goal"], rows))

    out += ["", "### Throughput: MACs per cycle per mode and MAC/s at the achieved (median) "
                "Fmax", ""]
    rows = []
    for target, report in reports.items():
        flex = report.get("flexibility")
        if not flex:
            continue
        for mode in flex["modes"]:
            rows.append([target, mode["bits"], mode["pe_macs_per_cycle"],
                         _rate(mode["pe_mac_per_s"]), mode["fixed_macs_per_cycle"],
                         _rate(mode["fixed_mac_per_s"]),
                         report["blocks"].get("mac_array", {}).get("products_per_cycle", {})
                         .get(str(mode["bits"]), "-"), _rate(mode["array_mac_per_s"])])
    config = first["config"]
    out.append(_table(["target", "b", "PE MACs/cycle", "PE MAC/s", "fixed MAC MACs/cycle",
                       "fixed MAC/s", f"{config['rows']}x{config['cols']} array MACs/cycle",
                       "array MAC/s"], rows))

    out += ["", "### Transition cost: nest unit vs dequantize/requantize unit", ""]
    rows = []
    for target, report in reports.items():
        for row in report["transition"]["rows"]:
            rows.append([target, f"`{row['block']}`", row["LUT4"], row["carry"], row["FF"],
                         row["DSP"], row["latency_cycles"], row["cycles_per_element"],
                         "n/a" if row["fmax_mhz"] is None else f"{row['fmax_mhz']:.1f}",
                         f"{row['energy_pj_per_element']:.3f}"])
    out.append(_table(["target", "block", "LUT4", "carry", "FF", "DSP", "latency (cycles)",
                       "cycles/element", "Fmax MHz", "pJ/element (45 nm model)"], rows))

    model = first["energy"]["model"]
    if model:
        out += ["", "### Precision-switch op counts and energy per inference", ""]
        out += op_count_markdown(model) + [""] + inference_markdown(model)
    return "\n".join(out) + "\n"


def _terminate(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = _make_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        targets = [name for name in args.targets.split(",") if name]
        for target in targets:
            if target not in TARGETS:
                raise ValueError(f"`--targets` must name targets among {', '.join(TARGETS)}, "
                                 f"not {target!r}")
        reports, commands = {}, []
        for target in targets:
            build_argv = _build_argv(args, target)
            commands.append("python -m dqt_hw.build " + " ".join(build_argv))
            existing = args.out / target / "report.json"
            if args.reuse and existing.exists():
                report = json.loads(existing.read_text())
                # Reports from before the block names were unified are rebuilt, not misread.
                if (report.get("command") == commands[-1]
                        and set(report["blocks"]) <= {spec.name for spec in BLOCKS}):
                    print(f"bench: reusing {existing}", file=sys.stderr, flush=True)
                    reports[target] = report
                    continue
            print(f"bench: {commands[-1]}", file=sys.stderr, flush=True)
            path = run_build(parse_args(build_argv), argv=build_argv)
            reports[target] = json.loads(path.with_name("report.json").read_text())
        text = ("Made by `python -m dqt_hw.bench " + " ".join(
            sys.argv[1:] if argv is None else argv) + "`, which ran:\n\n"
            + "\n".join(f"    {command}" for command in commands) + "\n\n"
            + collect_tables(reports))
        write_atomic(args.out / "results.md", text)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, toolchain.ToolError, OSError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"tables: {args.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
