"""Whole-network co-simulation of the accelerator against the golden model and PyTorch.

    python sim/net.py --package build/pkg-digits-dqt --images 20
    python sim/net.py --package PKG --checkpoint CKPT --dataset fashion-mnist --images 1000 \
        --sim verilator --json build/sim-net.json

Compiles the package for the accelerator configuration (`--cols`, defaults of
`AcceleratorConfig`), writes the accelerator's Verilog, builds it with cocotb's runner, loads
the model through the bus and runs test images one by one (sim/tb_accelerator.py). Each
image's logits, prediction and per-layer bits are compared with `dqt_hw.golden.run_graph` on
the package and with the PyTorch integer emulation of the checkpoint the package came from
(the manifest names it; `--checkpoint` overrides, `--no-torch` skips it). Prints a summary
(mismatches, accuracy, bit choices, cycles per image, images/s of the co-simulation) and
exits 1 on any mismatch. `make sim-net PKG=... IMAGES=... SIM=...` runs it.
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
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))
if str(SIM_DIR) not in sys.path:
    sys.path.insert(0, str(SIM_DIR))

from regression import SIMULATORS, _check_simulator  # noqa: E402

__all__ = ["NetJob", "run_net", "accelerator_verilog", "main"]


@dataclasses.dataclass
class NetJob:
    package: str
    images: int = 20
    first: int = 0
    dataset: str = None
    checkpoint: str = None
    torch: bool = True
    simulator: str = "verilator"
    cols: int = 4
    poll_cycles: int = 512
    pin_bits: int = None
    build_root: str = None
    verbose: bool = False


#: Verilator flags of the whole-design benches. cocotb's runner passes --public-flat-rw, which
#: makes every signal of every module visible (and unoptimizable); the benches touch only the
#: top level's ports, so only the top module stays public (about 7x faster).
VERILATOR_BUILD_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3", "--x-assign", "fast",
                        "--x-initial", "fast", "--noassert", "--no-public-flat-rw",
                        "--public-depth", "1"]


def accelerator_verilog(config):
    """The Verilog text of `Accelerator(config)` (no model in its memories: the bench loads
    it over the bus), top module `accelerator` with ports `clk` and the bus.

    The clock domain has no reset input: registers start at their initial values, as on an
    FPGA. A reset input would feed the next-state logic of every register, and Verilator
    re-evaluates all logic that depends on a top-level input whenever one changes, which made
    the simulation about a third slower."""
    from amaranth.back import verilog
    from amaranth.hdl import ClockDomain, ClockSignal, Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out
    from dqt_hw.hdl.accelerator import Accelerator, wishbone_signature

    class SimulationTop(wiring.Component):
        def __init__(self):
            super().__init__({"clk": In(1), "bus": In(wishbone_signature()),
                              "busy": Out(1), "done": Out(1), "error": Out(1)})

        def elaborate(self, platform):
            m = Module()
            m.domains.sync = ClockDomain(reset_less=True)
            m.d.comb += ClockSignal("sync").eq(self.clk)
            m.submodules.accelerator = accelerator = Accelerator(config)
            wiring.connect(m, wiring.flipped(self.bus), accelerator.bus)
            m.d.comb += [self.busy.eq(accelerator.busy), self.done.eq(accelerator.done),
                         self.error.eq(accelerator.error)]
            return m

    return verilog.convert(SimulationTop(), name="accelerator", emit_src=False)


def golden_outputs(graph, codes, batch=500):
    """(logits (N, classes), bits (N, slots) or None) of the golden interpreter: the chosen
    bit-widths of every select_bits op, concatenated in op order (the accelerator's slots)."""
    from dqt_hw.golden import run_graph
    selects = [op["output"] for op in graph["ops"] if op["op"] == "select_bits"]
    logits, bits = [], []
    for start in range(0, len(codes), batch):
        env = run_graph(graph, codes[start:start + batch], keep_all=True)
        logits.append(env["logits"])
        if selects:
            bits.append(np.concatenate([env[name] for name in selects], axis=1))
    return np.concatenate(logits), (np.concatenate(bits) if selects else None)


def _references(job, graph, manifest, codes):
    logits, bits = golden_outputs(graph, codes)
    refs = {"golden_logits": logits}
    if bits is not None:
        refs["golden_bits"] = bits
    if job.torch:
        checkpoint = job.checkpoint or manifest.get("metadata", {}).get("checkpoint")
        if not checkpoint or not Path(checkpoint).is_file():
            raise SystemExit(f"error: the package's checkpoint {checkpoint!r} is not here; "
                             f"give --checkpoint or --no-torch")
        from dqt_hw.torch_reference import run_checkpoint
        torch = run_checkpoint(checkpoint, codes, progress=False)
        refs["torch_logits"] = torch["logits"]
        if torch["bits"] is not None:
            refs["torch_bits"] = torch["bits"]
        if not np.array_equal(torch["logits"], logits):
            raise SystemExit("error: the golden model and the PyTorch emulation disagree on "
                             "this package; re-export it from the checkpoint")
    return refs


def run_net(job):
    """Run one co-simulation; return the summary dict (see `summarize`)."""
    _check_simulator(job.simulator)
    import cocotb_tools.runner
    from cocotb_tools.runner import get_runner

    from dqt_hw.accel.compiler import compile_package
    from dqt_hw.accel.config import AcceleratorConfig
    from dqt_hw.eval import load_test_set
    from dqt_hw.package import load_package, pin_bits

    config = AcceleratorConfig(cols=job.cols)
    graph, manifest = load_package(job.package)
    model = compile_package(job.package, config)
    dataset = job.dataset or manifest.get("metadata", {}).get("dataset")
    if not dataset:
        raise SystemExit("error: the package does not name its dataset; give --dataset")
    shape = manifest["inputs"]["image"]["shape"]
    codes, labels = load_test_set(dataset, manifest["master_bits"], shape)
    if job.first + job.images > len(codes):
        raise SystemExit(f"error: {dataset} has {len(codes)} test images; --first "
                         f"{job.first} --images {job.images} asks beyond that")
    codes = codes[job.first:job.first + job.images]
    labels = labels[job.first:job.first + job.images]
    key = hashlib.sha256(json.dumps(dataclasses.asdict(config), sort_keys=True)
                         .encode()).hexdigest()[:12]
    build_root = (Path(job.build_root) if job.build_root
                  else SIM_DIR / f"sim_build_net_{job.simulator}")
    build_dir = build_root / key
    build_dir.mkdir(parents=True, exist_ok=True)
    # One simulator build per configuration, shared; each run's files in a folder of its own,
    # so that runs of different packages may share the build at the same time.
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=build_dir))
    package = Path(job.package).resolve()
    if job.pin_bits is not None:
        # Every controlled layer at one width: a package of the pinned graph, golden only.
        from dqt_hw.package import write_package
        graph = pin_bits(graph, job.pin_bits)
        package = run_dir / f"package-pinned-{job.pin_bits}"
        write_package(graph, package, metadata=manifest.get("metadata"),
                      controlled_layers=manifest.get("controlled_layers"))
        model = compile_package(package, config)
        job = dataclasses.replace(job, torch=False)
    refs = _references(job, graph, manifest, codes)

    cocotb_tools.runner.MAX_PARALLEL_BUILD_JOBS = 1
    arrays = run_dir / "job.npz"
    np.savez(arrays, images=codes, labels=labels, **refs)
    report = run_dir / "report.json"
    job_file = run_dir / "job.json"
    job_file.write_text(json.dumps({
        "package": str(package), "config": dataclasses.asdict(config),
        "arrays": str(arrays), "report": str(report), "first": job.first,
        "poll_cycles": job.poll_cycles}))

    if job.simulator == "verilator":
        # Verilator's default -Os build of this design simulates about half as fast.
        flags = os.environ.get("MAKEFLAGS", "")
        if "OPT_FAST" not in flags:
            os.environ["MAKEFLAGS"] = f"{flags} OPT_FAST=-O2 OPT_GLOBAL=-O2"
    # The bench imports this checkout's dqt_hw, whatever the environment's install points at.
    paths = [str(REPO_DIR), str(SIM_DIR)] + [p for p in os.environ.get("PYTHONPATH", "")
                                             .split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    runner = get_runner(job.simulator)
    logging.getLogger(type(runner).__qualname__).setLevel(
        logging.INFO if job.verbose else logging.ERROR)
    build_args = VERILATOR_BUILD_ARGS if job.simulator == "verilator" else []
    started = time.perf_counter()
    with open(build_dir / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)            # one build of the shared folder at a time
        source = build_dir / "accelerator.v"
        text = accelerator_verilog(config)
        if not source.is_file() or source.read_text() != text:
            source.write_text(text)
        runner.build(sources=[source], hdl_toplevel="accelerator", build_dir=build_dir,
                     build_args=build_args, timescale=("1ns", "1ps"), verbose=job.verbose,
                     log_file=build_dir / "build.log")
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    try:
        runner.test(test_module="tb_accelerator", hdl_toplevel="accelerator",
                    build_dir=build_dir, test_dir=run_dir,
                    extra_env={"DQT_NET_JOB": str(job_file)},
                    results_xml=str(run_dir / "results.xml"), timescale=("1ns", "1ps"),
                    verbose=job.verbose, log_file=run_dir / "sim.log")
    except SystemExit:
        pass
    sim_s = time.perf_counter() - started
    if not report.is_file():
        tail = (run_dir / "sim.log").read_text(errors="replace").splitlines()[-20:]
        raise SystemExit(f"error: the simulation wrote no report; {run_dir}/sim.log ends "
                         f"with:\n" + "\n".join(tail))
    summary = summarize(json.loads(report.read_text()), model, job, dataset, build_s, sim_s)
    shutil.rmtree(run_dir)
    return summary


def summarize(report, model, job, dataset, build_s, sim_s):
    records = report["images"]
    mismatches = sum(not all(v for k, v in r.items() if "_match_" in k) for r in records)
    cycles = np.array([r["cycles"] for r in records])
    ops = [o["name"] for o in model.ops]
    op_cycles = np.array([r["op_cycles"] for r in records])
    bits = np.array([r["bits"] for r in records]) if records and records[0]["bits"] else None
    summary = {
        "package": job.package, "pin_bits": job.pin_bits, "dataset": dataset,
        "first": job.first,
        "images": len(records), "simulator": job.simulator,
        "config": dataclasses.asdict(model.config), "mismatches": int(mismatches),
        "references": [ref for ref in ("golden", "torch")
                       if records and f"logits_match_{ref}" in records[0]],
        "accuracy": (float(np.mean([r["prediction"] == r["label"] for r in records]))
                     if records and "label" in records[0] else None),
        "cycles_mean": float(cycles.mean()) if len(cycles) else None,
        "cycles_min": int(cycles.min()) if len(cycles) else None,
        "cycles_max": int(cycles.max()) if len(cycles) else None,
        "op_cycles_mean": dict(zip(ops, op_cycles.mean(axis=0).tolist())) if len(records) else {},
        "build_s": build_s, "sim_s": sim_s, "load_s": report["load_s"],
        "run_s": report["run_s"],
        "images_per_s": len(records) / report["run_s"] if report["run_s"] else None,
        "bus_accesses": report["bus_accesses"],
        "ops": ops,
        # Per op: its fixed bit-width, or {"slot": s}, the controller slot it reads (None for
        # ops without weights): what the bench needs to price a precision switch.
        "op_bits": [o.get("bits") for o in model.ops],
        "macs": model.macs,
        "per_image": {"cycles": cycles.tolist(),
                      "op_cycles": op_cycles.tolist(),
                      "bits": bits.tolist() if bits is not None else None,
                      "prediction": [r["prediction"] for r in records]},
    }
    if bits is not None:
        slots = [s["layer"] for s in model.slots]
        summary["bits_histogram"] = {
            layer: {str(b): int((bits[:, i] == b).sum()) for b in sorted(set(bits[:, i]))}
            for i, layer in enumerate(slots)}
        summary["bits_switches"] = int(np.sum(np.any(bits[1:] != bits[:-1], axis=1)))
        summary["bit_vectors"] = len({tuple(row) for row in bits.tolist()})
    return summary


def format_summary(summary):
    lines = [f"{summary['images']} {summary['dataset']} images (from #{summary['first']}) on "
             f"{summary['simulator']}, 1x{summary['config']['cols']} array: "
             f"{summary['mismatches']} mismatches against {' and '.join(summary['references'])}"]
    if summary["accuracy"] is not None:
        lines.append(f"  top-1 {100 * summary['accuracy']:.2f} %")
    if summary["cycles_mean"] is not None:
        lines.append(f"  cycles per image: mean {summary['cycles_mean']:.0f} (min "
                     f"{summary['cycles_min']}, max {summary['cycles_max']})")
    if "bits_histogram" in summary:
        lines.append(f"  bit vectors: {summary['bit_vectors']} distinct; consecutive images "
                     f"switched precision {summary['bits_switches']} times")
        for layer, hist in summary["bits_histogram"].items():
            lines.append(f"    {layer}: " + ", ".join(f"{b} bits x{c}" for b, c in hist.items()))
    lines.append(f"  build {summary['build_s']:.0f} s, model load {summary['load_s']:.1f} s, "
                 f"run {summary['run_s']:.1f} s = {summary['images_per_s']:.2f} images/s")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python sim/net.py", description=__doc__.split("\n\n")[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", required=True, help="integer model package directory")
    parser.add_argument("--images", type=int, default=20, help="test images to run (20)")
    parser.add_argument("--first", type=int, default=0, help="index of the first test image")
    parser.add_argument("--dataset", default=None,
                        help="digits or fashion-mnist (default: the package's)")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint for the PyTorch reference (default: the manifest's)")
    parser.add_argument("--no-torch", action="store_true",
                        help="compare with the golden model only")
    parser.add_argument("--sim", default="verilator", choices=SIMULATORS)
    parser.add_argument("--cols", type=int, default=4, help="MAC array columns (4)")
    parser.add_argument("--bits", type=int, default=None, dest="pin_bits",
                        help="run every dynamic layer at this width (golden reference only)")
    parser.add_argument("--json", default=None, help="write the summary here (JSON)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error("--images must be at least 1")
    job = NetJob(package=args.package, images=args.images, first=args.first,
                 dataset=args.dataset, checkpoint=args.checkpoint, torch=not args.no_torch,
                 simulator=args.sim, cols=args.cols, pin_bits=args.pin_bits,
                 verbose=args.verbose)
    try:
        summary = run_net(job)
    except (ValueError, OSError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    if args.json:
        from dqt_hw.atomic import write_atomic
        write_atomic(args.json, json.dumps(summary, indent=1) + "\n")
    return 1 if summary["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
