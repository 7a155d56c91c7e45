"""The simulated board: the bitstream's exact top level, driven through its UART pins.

    python sim/board.py --package build/pkg-digits-dqt --board icebreaker --images 3
    python sim/board.py --package PKG --board ulx3s-85f --images 100 --bits 8,4,2 --json F

Makes the top level `python -m dqt_hw.build --board` makes (`dqt_hw.boards.top.board_design`:
the same accelerator configuration, model in the memories, clock plan and baud rate), lets the
board's `amaranth-boards` platform prepare it as for a bitstream (its Verilog has the same pin
buffers and PLL instances), and simulates it with the primitives replaced by the models in
sim/models/. The cocotb bench (sim/tb_board.py) drives the oscillator pin at the design clock
and the UART pins with the bytes `dqt_hw.boards.link.BridgeTransport` sends for
`dqt_hw.accel.driver.AcceleratorDriver` (the classes the host CLI uses, unchanged), compares
every image's logits, prediction and bits with the golden model, checks the status LEDs, and
with `--bits` also runs the package with every dynamic layer pinned to each width (its program
loaded over the link) to measure cycles per image; with `--cascade LOW,HIGH` also runs the
precision cascade as `python -m dqt_hw.run --cascade` does (`dqt_hw.run.run_cascade_images`),
with `--margin` or the median margin of the images' LOW pass, against the golden cascade. `--json` writes the summary, whose
"cycles" table `python -m dqt_hw.build --board ... --cycles FILE` turns into images/s.
Exits 1 on any mismatch. `make sim-board PKG=... BOARD=... IMAGES=...` runs it.
"""

import argparse
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIM_DIR = Path(__file__).resolve().parent
REPO_DIR = SIM_DIR.parent
for path in (REPO_DIR, SIM_DIR):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from net import VERILATOR_BUILD_ARGS  # noqa: E402
from regression import SIMULATORS, _check_simulator  # noqa: E402

__all__ = ["BoardJob", "run_board", "board_verilog", "main"]


@dataclasses.dataclass
class BoardJob:
    package: str
    board: str = "icebreaker"
    images: int = 3
    first: int = 0
    dataset: str = None
    cols: int = None
    clock_mhz: float = None
    baud: int = None
    bits: tuple = ()              # pinned widths to measure after the dynamic run
    cascade: tuple = ()           # (low, high): also run the precision cascade
    margin: int = None            # its threshold (default: the median LOW-pass margin)
    simulator: str = "verilator"
    build_root: str = None
    verbose: bool = False


def _pin(platform, name, number, subsignal=None):
    """(top-level port name, inverted) of a platform resource's one pin."""
    resource = platform.lookup(name, number)
    ios = resource.ios
    if subsignal is not None:
        ios = next(io for io in ios if io.name == subsignal).ios
    pins = ios[0]
    port = f"{name}_{number}__{subsignal + '__' if subsignal else ''}io"
    return port, bool(pins.invert)


def board_verilog(design):
    """(Verilog text of the prepared top level, pin map) for a `BoardDesign`."""
    board = design.board
    platform = board.platform()
    plan = platform.prepare(design.top, name="top", debug_verilog=True)
    pins = {"clock": _pin(platform, *board.oscillator)[0],
            "rx": _pin(platform, "uart", 0, "rx")[0], "tx": _pin(platform, "uart", 0, "tx")[0],
            "leds": {role: _pin(platform, *resource) for role, resource in board.leds}}
    return plan.files["top.debug.v"], pins


def run_board(job):
    """Run one board simulation; return the summary dict."""
    _check_simulator(job.simulator)
    import cocotb_tools.runner
    from cocotb_tools.runner import get_runner

    from dqt_hw.accel.compiler import compile_graph
    from dqt_hw.boards.catalog import check_board
    from dqt_hw.boards.top import board_design
    from dqt_hw.eval import load_test_set
    from dqt_hw.package import load_package, pin_bits, write_package
    from dqt_hw.run import golden_outputs

    board = check_board(job.board)
    graph, manifest = load_package(job.package)
    design = board_design(board, graph, cols=job.cols, baud=job.baud,
                          clock_hz=job.clock_mhz * 1e6 if job.clock_mhz else None)
    dataset = job.dataset or manifest.get("metadata", {}).get("dataset")
    if not dataset:
        raise SystemExit("error: the package does not name its dataset; give --dataset")
    codes, labels = load_test_set(dataset, graph["master_bits"],
                                  manifest["inputs"]["image"]["shape"])
    if job.first + job.images > len(codes):
        raise SystemExit(f"error: {dataset} has {len(codes)} test images")
    codes = codes[job.first:job.first + job.images]
    labels = labels[job.first:job.first + job.images]
    golden = golden_outputs(graph, codes)
    text, pins = board_verilog(design)
    key = hashlib.sha256(text.encode()).hexdigest()[:12]
    build_root = (Path(job.build_root) if job.build_root
                  else SIM_DIR / f"sim_build_board_{job.simulator}")
    build_dir = build_root / key
    build_dir.mkdir(parents=True, exist_ok=True)
    # One simulator build per design, shared; each run's files in a folder of its own, so
    # that runs of different packages or image ranges may share the build at the same time.
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=build_dir))
    # Every dynamic layer pinned to one width: a package of its own (the storage layout may
    # differ), compiled for the same configuration and loaded over the link by the bench.
    pinned = {}
    for bits in job.bits:
        path = run_dir / f"package-pinned-{bits}"
        write_package(pin_bits(graph, bits), path, metadata=manifest.get("metadata"),
                      controlled_layers=manifest.get("controlled_layers"))
        compile_graph(pin_bits(graph, bits), design.config)      # fails here, not in the bench
        pinned[str(bits)] = {"package": str(path), "golden_logits": golden_outputs(
            pin_bits(graph, bits), codes[:1])["logits"][0].tolist()}
    cascade, extra = {}, {}
    if job.cascade:
        from dqt_hw.eval import logit_margin, run_cascade
        low, high = job.cascade
        margin = job.margin
        if margin is None:
            margin = int(np.median(logit_margin(golden_outputs(pin_bits(graph, low),
                                                               codes)["logits"])))
        extra["cascade_logits"], extra["cascade_again"] = run_cascade(
            graph, codes, low, high, margin, progress=False)
        cascade = {"low": low, "high": high, "margin": margin}
        for name, bits in (("low", low), ("high", high)):
            path = run_dir / f"package-cascade-{bits}"
            write_package(pin_bits(graph, bits), path, metadata=manifest.get("metadata"),
                          controlled_layers=manifest.get("controlled_layers"))
            cascade[f"{name}_package"] = str(path)
    arrays = run_dir / "job.npz"
    np.savez(arrays, images=codes, labels=labels, golden_logits=golden["logits"],
             **({"golden_bits": golden["bits"]} if golden["bits"] is not None else {}),
             **extra)
    report = run_dir / "report.json"
    job_file = run_dir / "job.json"
    job_file.write_text(json.dumps({
        "package": str(Path(job.package).resolve()), "config": dataclasses.asdict(design.config),
        "clock_hz": design.clock.clock_hz, "baud": design.baud, "pins": pins,
        "data_in_bitstream": board.data_in_bitstream,
        "arrays": str(arrays), "report": str(report), "first": job.first, "pinned": pinned,
        "cascade": cascade}))

    cocotb_tools.runner.MAX_PARALLEL_BUILD_JOBS = 1
    if job.simulator == "verilator":
        flags = os.environ.get("MAKEFLAGS", "")
        if "OPT_FAST" not in flags:
            os.environ["MAKEFLAGS"] = f"{flags} OPT_FAST=-O2 OPT_GLOBAL=-O2"
    runner = get_runner(job.simulator)
    logging.getLogger(type(runner).__qualname__).setLevel(
        logging.INFO if job.verbose else logging.ERROR)
    build_args = VERILATOR_BUILD_ARGS if job.simulator == "verilator" else []
    started = time.perf_counter()
    with open(build_dir / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)            # one build of the shared folder at a time
        source = build_dir / "top.v"
        if not source.is_file() or source.read_text() != text:
            source.write_text(text)
        runner.build(sources=[source, SIM_DIR / "models" / f"{board.family}.v"],
                     hdl_toplevel="top", build_dir=build_dir, build_args=build_args,
                     timescale=("1ns", "1ps"), verbose=job.verbose,
                     log_file=build_dir / "build.log")
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    try:
        runner.test(test_module="tb_board", hdl_toplevel="top", build_dir=build_dir,
                    test_dir=run_dir, extra_env={"DQT_BOARD_JOB": str(job_file)},
                    results_xml=str(run_dir / "results.xml"), timescale=("1ns", "1ps"),
                    verbose=job.verbose, log_file=run_dir / "sim.log")
    except SystemExit:
        pass
    sim_s = time.perf_counter() - started
    if not report.is_file():
        tail = (run_dir / "sim.log").read_text(errors="replace").splitlines()[-20:]
        raise SystemExit(f"error: the simulation wrote no report; {run_dir}/sim.log ends "
                         f"with:\n" + "\n".join(tail))
    result = json.loads(report.read_text())
    shutil.rmtree(run_dir)
    records = result["images"]
    summary = {
        "package": job.package, "board": board.name, "dataset": dataset, "first": job.first,
        "config": dataclasses.asdict(design.config), "clock_hz": design.clock.clock_hz,
        "baud": design.baud, "images": len(records),
        "mismatches": (sum(not r["match"] for r in records) + result["pinned_mismatches"]
                       + result.get("cascade", {}).get("mismatches", 0)),
        "accuracy": float(np.mean([r["prediction"] == r["label"] for r in records])),
        "leds_ok": result["leds_ok"], "link": result["link"],
        "cycles": {"dynamic": float(np.mean([r["cycles"] for r in records])),
                   **{bits: c for bits, c in result["pinned_cycles"].items()}},
        "build_s": build_s, "sim_s": sim_s,
    }
    if "cascade" in result:
        summary["cascade"] = dict(cascade, **result["cascade"])
    if records and records[0]["bits"]:
        bits = np.array([r["bits"] for r in records])
        summary["bits_histogram"] = {
            slot["layer"]: {str(b): int((bits[:, i] == b).sum()) for b in sorted(set(bits[:, i]))}
            for i, slot in enumerate(design.model.slots)}
    return summary


def format_summary(s):
    link = s["link"]
    lines = [f"{s['images']} {s['dataset']} images on the simulated {s['board']} "
             f"({s['clock_hz'] / 1e6:g} MHz, {s['baud']} baud): {s['mismatches']} mismatches "
             f"against the golden model; status LEDs {'as expected' if s['leds_ok'] else 'WRONG'}",
             f"  top-1 {100 * s['accuracy']:.2f} %",
             "  cycles per image: " + ", ".join(f"{mode} {c:.0f}"
                                               for mode, c in s["cycles"].items()),
             f"  link per image: {link['bytes_out_per_image']:.0f} bytes to the board, "
             f"{link['bytes_in_per_image']:.0f} back, {link['frames_per_image']:.0f} frames; "
             f"{1e3 * link['seconds_per_image']:.2f} ms of simulated time per image, of which "
             f"the accelerator ran {1e3 * link['accelerator_seconds_per_image']:.3f} ms"]
    for layer, hist in s.get("bits_histogram", {}).items():
        lines.append(f"    {layer}: " + ", ".join(f"{b} bits x{c}" for b, c in hist.items()))
    if "cascade" in s:
        c = s["cascade"]
        lines.append(f"  cascade {c['low']} -> {c['high']} bits, margin {c['margin']}: "
                     f"{c['run_twice']} of {s['images']} images run twice, {c['mismatches']} "
                     f"mismatches against the golden cascade")
    lines.append(f"  build {s['build_s']:.0f} s, simulation {s['sim_s']:.0f} s")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python sim/board.py",
                                     description=__doc__.split("\n\n")[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", required=True, help="integer model package directory")
    parser.add_argument("--board", default="icebreaker", help="icebreaker, ulx3s-85f, ulx3s-25f")
    parser.add_argument("--images", type=int, default=3, help="test images (3)")
    parser.add_argument("--first", type=int, default=0, help="first test image (0)")
    parser.add_argument("--dataset", default=None, help="default: the package's")
    parser.add_argument("--cols", type=int, default=None, help="default: the board's")
    parser.add_argument("--clock-mhz", type=float, default=None, help="default: the board's")
    parser.add_argument("--baud", type=int, default=None, help="default: the board's")
    parser.add_argument("--bits", default="",
                        help="comma-separated widths to pin and measure, e.g. 8,4,2")
    parser.add_argument("--cascade", default="",
                        help="LOW,HIGH: also run the precision cascade of these widths")
    parser.add_argument("--margin", type=int, default=None,
                        help="the cascade's threshold (default: the median LOW-pass margin)")
    parser.add_argument("--sim", default="verilator", choices=SIMULATORS)
    parser.add_argument("--json", default=None, help="write the summary here")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error("--images must be at least 1")
    try:
        bits = tuple(int(b) for b in args.bits.split(",") if b.strip())
    except ValueError:
        parser.error(f"--bits must be comma-separated integers, not {args.bits!r}")
    try:
        cascade = tuple(int(b) for b in args.cascade.split(",")) if args.cascade else ()
    except ValueError:
        cascade = None
    if cascade is None or (cascade and (len(cascade) != 2 or cascade[0] >= cascade[1])):
        parser.error(f"--cascade must be LOW,HIGH with LOW < HIGH, not {args.cascade!r}")
    job = BoardJob(package=args.package, board=args.board, images=args.images,
                   first=args.first, dataset=args.dataset, cols=args.cols,
                   clock_mhz=args.clock_mhz, baud=args.baud, bits=bits, cascade=cascade,
                   margin=args.margin, simulator=args.sim, verbose=args.verbose)
    try:
        summary = run_board(job)
    except (ValueError, OSError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    if args.json:
        from dqt_hw.atomic import write_atomic
        write_atomic(args.json, json.dumps(summary, indent=1) + "\n")
    return 1 if summary["mismatches"] or not summary["leds_ok"] else 0


if __name__ == "__main__":
    sys.exit(main())
