"""python -m dqt_hw.build.arrays: the MAC arrays compared on one target, in one run.

Three arrays with one row of columns, as the accelerator uses them (operands streamed,
weights arriving nested, bit-widths `--candidates`), each synthesized alone for its area and
placed and routed in the timing harness (`harness.py`) with seeds 1..S for its Fmax:

- `scalable`: Bit Fusion PEs (`MacArray`), products per beat 1 / 4 / 16 at b = 8 / 4 / 2;
- `hybrid`: the same with a DSP lane beside the bricks (`dsp_lanes=1`): 2 / 4 / 16 products
  per beat, one DSP block per column;
- `fixed`: the fixed int8 design of the same area: as many DSP-multiplier columns as the hybrid
  has DSP blocks, plus LUT-multiplier columns filling the hybrid's LUT4 sites (sized from two
  small syntheses; on ECP5 a CCU2C carry cell counts as its two LUT4s), one product per beat
  at every b.

Throughput at b is products per cycle times the median Fmax. With `--accelerator` the build also
measures the accelerator's other needs (the accelerator with one column, minus a one-column
array) and reports the widest power-of-two array of each kind that fits the target beside
them. Each design's numbers are saved as OUT/<design>.json (default OUT bench/arrays/TARGET, in
the repository; the tools' netlists and logs go to --work) when measured and reused by a later
run with the same settings (`--reuse`), so an interrupted run resumes.
"""

import argparse
import json
import signal
import statistics
import sys
import time
from pathlib import Path

from .. import toolchain
from ..atomic import atomic_dir, write_atomic
from ..golden import accumulator_bits
from .flow import _write_rtlil, nextpnr_flags, synthesize
from .harness import TimingHarness
from .targets import TARGETS, check_target

__all__ = ["DESIGNS", "make_array", "products_per_cycle", "main"]

DESIGNS = ("fixed", "scalable", "hybrid")
REPORT_FORMAT = "dqt-hw-array-comparison"
#: Column counts the accelerator supports (`AcceleratorConfig.cols`).
COLUMN_CHOICES = (1, 2, 4, 8, 16)
#: Yosys 0.70's ABC9 trips internal assertions on some flattened designs (the hybrid array on
#: ECP5 among them); the same synthesis with `-dff` (ABC9 maps the flip-flops too) does not.
SYNTH_FALLBACKS = ("", " -dff")


def make_array(kind, cols, *, dsp_columns=0, max_terms=1024, supported_bits=(2, 4, 8)):
    """The `MacArray` of design `kind` with one row of `cols` columns."""
    from ..hdl.mac_array import MacArray
    common = dict(rows=1, cols=cols, master_bits=8, max_terms=max_terms,
                  supported_bits=tuple(supported_bits), nest_weights=False)
    if kind == "scalable":
        return MacArray(**common)
    if kind == "hybrid":
        return MacArray(**common, dsp_lanes=1)
    if kind == "fixed":
        return MacArray(**common, scalable=False, dsp_columns=dsp_columns)
    raise ValueError(f"`design` must be one of {', '.join(DESIGNS)}, not {kind!r}")


def products_per_cycle(array, bits):
    """Multiply-accumulates the array completes per cycle at bit-width `bits`."""
    return array.macs_per_cycle(bits)


def _synthesize(component, name, target, root, *, netlist):
    source = _write_rtlil(component, name, root)
    for options in SYNTH_FALLBACKS:
        try:
            resources, cells, script = synthesize(source, name, target, root, dsp=True,
                                                  netlist=netlist, options=options)
            return resources, cells, script
        except toolchain.ToolError:
            if options == SYNTH_FALLBACKS[-1]:
                raise


def _measure(kind, cols, dsp_columns, args, target, root, progress):
    """Area of the array alone and Fmax of seeds 1..S in the harness."""
    array = make_array(kind, cols, dsp_columns=dsp_columns, max_terms=args.terms,
                       supported_bits=args.candidates)
    progress(f"{kind} 1x{cols}: synthesis")
    resources, cells, script = _synthesize(array, kind, target, root, netlist=False)
    entry = {"design": kind, "cols": cols, "dsp_columns": dsp_columns,
             "products_per_cycle": {str(b): products_per_cycle(array, b)
                                    for b in args.candidates},
             "latency": array.latency, "resources": resources, "cells": cells,
             "synthesis": script}
    wrapper = f"{kind}_timed"
    _r, _c, harness_script = _synthesize(TimingHarness(make_array(
        kind, cols, dsp_columns=dsp_columns, max_terms=args.terms,
        supported_bits=args.candidates)), wrapper, target, root, netlist=True)
    fmax = []
    for seed in range(1, args.seeds + 1):
        progress(f"{kind} 1x{cols}: nextpnr seed {seed}")
        result = toolchain.run_nextpnr(target.family, target.nextpnr_device,
                                       f"synth/{wrapper}.json", root, seed=seed,
                                       freq_mhz=target.target_mhz,
                                       stem=f"pnr/{wrapper}.seed{seed}")
        fmax.append(result.worst_fmax_mhz)
        if seed == 1:
            entry["harness_utilization"] = {cell: use for cell, use
                                            in result.utilization.items() if use["used"]}
    entry.update(harness_synthesis=harness_script, place_route=nextpnr_flags(target, args.seeds),
                 fmax_mhz={"per_seed": fmax, "min": min(fmax), "max": max(fmax),
                           "median": statistics.median(fmax)})
    entry["gmacs"] = {b: n * entry["fmax_mhz"]["median"] / 1e3
                      for b, n in entry["products_per_cycle"].items()}
    return entry


def _fixed_columns(args, target, root, hybrid, progress):
    """LUT-multiplier columns that bring a fixed array with `args.cols` DSP columns to the
    hybrid's LUT4 sites (`Target.lut_sites`: on ECP5 a CCU2C carry cell holds two LUT4s), the
    area per LUT column from a synthesis with four more."""
    progress("fixed: sizing")
    sites = target.lut_sites
    base = sites(_synthesize(make_array("fixed", args.cols, dsp_columns=args.cols,
                                        max_terms=args.terms, supported_bits=args.candidates),
                             "fixed_dsp_only", target, root, netlist=False)[0])
    more = sites(_synthesize(make_array("fixed", args.cols + 4, dsp_columns=args.cols,
                                        max_terms=args.terms, supported_bits=args.candidates),
                             "fixed_plus_four", target, root, netlist=False)[0])
    per_column = (more - base) / 4
    return max(0, round((sites(hybrid) - base) / per_column)), {
        "dsp_only_lut_sites": base, "lut_sites_per_lut_column": per_column}


def _other_needs(args, target, root, progress):
    """The accelerator's resources besides its array: the accelerator with one column minus a
    one-column array (both synthesized here)."""
    from ..accel.config import AcceleratorConfig
    from ..hdl.accelerator import Accelerator
    from .accelerator import data_memory_for
    progress("accelerator (one column): synthesis")
    config = AcceleratorConfig(cols=1, supported_bits=tuple(sorted(set(args.candidates) | {8})))
    whole = _synthesize(Accelerator(config, data_memory=data_memory_for(target)),
                        "accelerator_one_column", target, root, netlist=False)[0]
    array = _synthesize(make_array("scalable", 1, max_terms=config.max_terms,
                                   supported_bits=config.supported_bits),
                        "array_one_column", target, root, netlist=False)[0]
    return {resource: whole[resource] - array.get(resource, 0)
            for resource in ("LUT4", "FF", "DSP", "carry")}


def _widest_fit(kind, entry, one, target, reserve):
    """The widest power-of-two array of `kind` that fits beside `reserve`, from the measured
    width and a one-column synthesis (linear in the columns)."""
    per_column = {r: (entry["resources"][r] - one[r]) / max(entry["cols"] - 1, 1)
                  for r in ("LUT4", "DSP")}
    fits = None
    for cols in COLUMN_CHOICES:
        need = {r: one[r] + per_column[r] * (cols - 1) + reserve.get(r, 0)
                for r in ("LUT4", "DSP")}
        if all(need[r] <= target.capacity[r] for r in need):
            fits = cols
    return fits


def _goals(target, entries):
    """The issue's goal lines for `target` (met / missed), from the measured entries."""
    fixed, scalable, hybrid = (entries.get(kind) for kind in DESIGNS)
    lines = []
    if hybrid is None or fixed is None:
        return lines

    def verdict(ok):
        return "**met**" if ok else "**missed**"

    fmax = min(hybrid["fmax_mhz"]["median"], scalable["fmax_mhz"]["median"]) if scalable \
        else hybrid["fmax_mhz"]["median"]
    if target.family == "ice40":
        lines += [
            f"- array Fmax >= 40 MHz: {fmax:.1f} MHz (median, scalable and hybrid): "
            f"{verdict(fmax >= 40)}",
            f"- >= 0.3 GMAC/s at 8 bits: hybrid 1x{hybrid['cols']} "
            f"{hybrid['gmacs']['8']:.3f}: {verdict(hybrid['gmacs']['8'] >= 0.3)}",
            f"- >= 3 GMAC/s at 2 bits: hybrid 1x{hybrid['cols']} "
            f"{hybrid['gmacs']['2']:.2f}: {verdict(hybrid['gmacs']['2'] >= 3)}",
        ]
    else:
        ratio8 = hybrid["gmacs"]["8"] / fixed["gmacs"]["8"]
        ratio2 = hybrid["gmacs"]["2"] / fixed["gmacs"]["2"]
        lines += [
            f"- array Fmax >= 100 MHz: {fmax:.1f} MHz (median, scalable and hybrid): "
            f"{verdict(fmax >= 100)}",
            f"- 8 bits no slower than the fixed int8 design of the same area: hybrid / fixed "
            f"= {ratio8:.2f}x: {verdict(ratio8 >= 1)}",
            f"- 2 bits at least 4x faster than that design: {ratio2:.2f}x: "
            f"{verdict(ratio2 >= 4)}",
        ]
    return lines


def render(report):
    target = TARGETS[report["target"]]
    lines = [f"# MAC arrays on {target.name}", "", f"Command: `{report['command']}`", "",
             f"Tools: {report['tools']['yosys']}; {report['tools']['nextpnr']}. Synthesis "
             f"`{target.synth_command('<design>', dsp=True)}` (RTLIL), place and route in the "
             f"timing harness, seeds 1..{report['seeds']}. Candidates "
             f"{', '.join(map(str, report['candidates']))}; accumulators for K = "
             f"{report['terms']}.", "",
             "| design | columns (DSP) | LUT4 | carry | FF | DSP | Fmax MHz min / median / max "
             "| products/cycle b = 8 / 4 / 2 | GMAC/s b = 8 | b = 4 | b = 2 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for kind in DESIGNS:
        entry = report["designs"].get(kind)
        if entry is None:
            continue
        res, f, ppc, g = entry["resources"], entry["fmax_mhz"], entry["products_per_cycle"], \
            entry["gmacs"]
        dsp_cols = entry["dsp_columns"] if kind == "fixed" else (
            entry["cols"] if kind == "hybrid" else 0)
        lines.append(
            f"| {kind} | {entry['cols']} ({dsp_cols}) | {res['LUT4']} | {res['carry']} | "
            f"{res['FF']} | {res['DSP']} | {f['min']:.1f} / {f['median']:.1f} / "
            f"{f['max']:.1f} | {ppc.get('8', '-')} / {ppc.get('4', '-')} / "
            f"{ppc.get('2', '-')} | {g.get('8', 0):.3f} | {g.get('4', 0):.3f} | "
            f"{g.get('2', 0):.3f} |")
    sizing = report.get("fixed_sizing")
    if sizing:
        lines += ["", f"The fixed design's LUT columns fill the hybrid's LUT4 sites (LUT4, plus "
                  f"two per CCU2C carry cell on ECP5): {sizing['dsp_only_lut_sites']} with DSP "
                  f"columns only, {sizing['lut_sites_per_lut_column']:.0f} per LUT-multiplier "
                  f"column."]
    if "other_needs" in report:
        other = report["other_needs"]
        lines += ["", f"The accelerator's other needs (one-column accelerator minus a "
                  f"one-column array): {other['LUT4']} LUT4, {other['DSP']} DSP. Widest "
                  f"array that fits beside them: " + ", ".join(
                      f"{kind} {report['widest_fit'][kind] or 'none'}"
                      for kind in ("scalable", "hybrid")) + "."]
    goals = _goals(target, report["designs"])
    if goals:
        lines += ["", "Goals of issue 10 (this run):", ""] + goals
    return "\n".join(lines) + "\n"


def _parse(argv):
    parser = argparse.ArgumentParser(
        prog="python -m dqt_hw.build.arrays",
        description="Synthesize, place and route the scalable array, the hybrid (a DSP lane "
                    "per column) and a fixed int8 DSP+LUT array of the same area on one "
                    "target; report area, Fmax and throughput per bit-width.",
        epilog="Example: python -m dqt_hw.build.arrays --target ice40-up5k --cols 4 --seeds 3")
    parser.add_argument("--target", default="ice40-up5k",
                        help=f"device: {', '.join(TARGETS)} (default %(default)s)")
    parser.add_argument("--cols", type=int, default=4,
                        help="columns of the scalable array and the hybrid (default 4)")
    parser.add_argument("--terms", type=int, default=1024,
                        help="longest dot product the accumulators hold (default 1024)")
    parser.add_argument("--candidates", default="2,4,8",
                        help="bit-widths the arrays run (default 2,4,8)")
    parser.add_argument("--seeds", type=int, default=3, help="nextpnr seeds (default 3)")
    parser.add_argument("--accelerator", action="store_true",
                        help="also measure the accelerator's other needs and report the widest "
                             "array that fits beside them")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse designs already measured with the same settings in --out")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder of the numbers: DESIGN.json, report.json, report.md "
                             "(default bench/arrays/TARGET, kept in the repository)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder of the tool runs: netlists, logs (default "
                             "runs/bench-arrays/TARGET)")
    args = parser.parse_args(argv)
    check_target(args.target)
    try:
        args.candidates = tuple(sorted({int(part) for part in args.candidates.split(",")}))
    except ValueError:
        raise ValueError(f"`--candidates` must be comma-separated integers, "
                         f"not {args.candidates!r}") from None
    if 8 not in args.candidates or not all(2 <= b <= 8 for b in args.candidates):
        raise ValueError(f"`--candidates` must be bit-widths in 2..8 including 8, "
                         f"not {','.join(map(str, args.candidates))}")
    for name in ("cols", "terms", "seeds"):
        value = getattr(args, name)
        if value < 1:
            raise ValueError(f"`--{name}` must be a positive integer, not {value}")
    accumulator_bits(8, 8, args.terms)
    if args.out is None:
        args.out = Path("bench/arrays") / args.target
    if args.work is None:
        args.work = Path("runs/bench-arrays") / args.target
    return args


def run(argv):
    args = _parse(argv)
    target = TARGETS[args.target]
    tools = {"yosys": toolchain.tool_version("yosys"),
             "nextpnr": toolchain.tool_version(f"nextpnr-{target.family}")}
    started = time.monotonic()

    def progress(text):
        print(f"[{time.monotonic() - started:5.0f} s] {args.target}: {text}", file=sys.stderr,
              flush=True)

    settings = {"target": args.target, "cols": args.cols, "terms": args.terms,
                "candidates": list(args.candidates), "seeds": args.seeds, "tools": tools}
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)

    def measured(kind, cols, dsp_columns):
        saved = args.out / f"{kind}.json"
        if args.reuse and saved.exists():
            entry = json.loads(saved.read_text())
            if entry.get("settings") == settings and entry["cols"] == cols:
                progress(f"{kind}: reused {saved}")
                return entry
        with atomic_dir(args.work / kind) as root:
            entry = _measure(kind, cols, dsp_columns, args, target, root, progress)
        entry["settings"] = settings
        write_atomic(saved, json.dumps(entry, indent=1) + "\n")
        return entry

    designs = {"scalable": measured("scalable", args.cols, 0),
               "hybrid": measured("hybrid", args.cols, 0)}
    with atomic_dir(args.work / "sizing") as root:
        lut_columns, sizing = _fixed_columns(args, target, root,
                                             designs["hybrid"]["resources"], progress)
        report = {"format": REPORT_FORMAT, "version": 1, "target": args.target,
                  "command": "python -m dqt_hw.build.arrays " + " ".join(argv),
                  "tools": tools, "seeds": args.seeds, "candidates": list(args.candidates),
                  "terms": args.terms, "fixed_sizing": sizing}
        if args.accelerator:
            report["other_needs"] = _other_needs(args, target, root, progress)
            widest = {}
            for kind in ("scalable", "hybrid"):
                one = _synthesize(make_array(kind, 1, max_terms=args.terms,
                                             supported_bits=args.candidates),
                                  f"{kind}_one_column", target, root, netlist=False)[0]
                widest[kind] = _widest_fit(kind, designs[kind], one, target,
                                           report["other_needs"])
            report["widest_fit"] = widest
    designs["fixed"] = measured("fixed", args.cols + lut_columns, args.cols)
    report["designs"] = designs
    report["elapsed_s"] = round(time.monotonic() - started)
    write_atomic(args.out / "report.json", json.dumps(report, indent=1) + "\n")
    write_atomic(args.out / "report.md", render(report))
    return args.out / "report.md"


def _terminate(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    # A terminated run unwinds like an interrupted one: staging folders are removed.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        path = run(argv)
    except KeyboardInterrupt:
        print("error: interrupted; finished designs are kept for --reuse", file=sys.stderr)
        return 130
    except (ValueError, TypeError, toolchain.ToolError, OSError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
