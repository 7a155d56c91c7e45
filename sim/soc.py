"""The whole SoC on Verilator: the firmware in ROM classifies test images, compared with the
golden model.

    python sim/soc.py --package build/pkg-digits-dqt --images 20 --preset digits
    make sim-soc PKG=build/pkg-digits-dqt IMAGES=100 SIM_SOC_ARGS="--preset digits"

Steps: compile the package for the accelerator configuration (the --options of
`python -m dqt_hw.accel.compile`) and write it with the test images as C
(`python -m dqt_hw.firmware`); build the firmware (`make -C firmware`); build the SoC
(`dqt_hw.soc.SoC`, CPU `--cpu`, the model also in the accelerator's memories unless
--no-preload) as Verilog and Verilate it with the harness sim/soc_main.cpp; run it until the
firmware exits. Every IMAGE line the firmware prints on the UART (prediction, chosen bits,
logits, accelerator and CPU cycles) is compared with `dqt_hw.golden.run_graph`, and every
CHECK line of the runtime's error paths must say ok. Prints a summary (mismatches, cycles
inside and outside the accelerator, firmware size, simulated images/s) and exits 1 on any
mismatch or failed check.
"""

import argparse
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIM_DIR = Path(__file__).resolve().parent
REPO_DIR = SIM_DIR.parent
for path in (REPO_DIR, SIM_DIR):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from regression import _setup_verilator  # noqa: E402

__all__ = ["PRESETS", "SocJob", "run_soc", "soc_verilog", "parse_output", "summarize", "main"]

#: Accelerator configurations sized for a model family, for fast simulation and synthesis
#: (`--preset`); explicit --options override a preset's fields.
PRESETS = {
    "digits": dict(data_words=4096, program_words=512, wide_words=64, table_words=64, slots=16,
                   max_ops=32, max_terms=512),
}

#: Clock cycles per UART bit in simulation (the SoC's clock is nominally 25 MHz).
SIM_UART_DIVISOR = 8
SIM_CLOCK_HZ = 25_000_000


@dataclasses.dataclass
class SocJob:
    package: str
    config: object = None              # AcceleratorConfig (default: the defaults)
    images: int = 8
    first: int = 0
    dataset: str = None
    cpu: str = None                    # default: dqt_hw.soc.cpu.DEFAULT_CPU
    preload: bool = True
    build_root: str = None
    max_cycles: int = 2_000_000_000
    timeout_s: float = 3600.0
    verbose: bool = False


def soc_verilog(soc):
    """Verilog of `soc` in a top module `soc` with a `clk` input and no reset (registers
    start at their initial values, as on an FPGA; a reset input makes Verilator slower)."""
    from amaranth.back import verilog
    from amaranth.hdl import ClockDomain, ClockSignal, Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class SimulationTop(wiring.Component):
        def __init__(self):
            super().__init__({"clk": In(1), "uart_tx": Out(1), "uart_rx": In(1),
                              "halt": Out(1), "exit_code": Out(8)})

        def elaborate(self, platform):
            m = Module()
            m.domains.sync = ClockDomain(reset_less=True)
            m.d.comb += ClockSignal("sync").eq(self.clk)
            m.submodules.soc = soc
            m.d.comb += [self.uart_tx.eq(soc.uart_tx), soc.uart_rx.eq(self.uart_rx),
                         self.halt.eq(soc.halt), self.exit_code.eq(soc.exit_code)]
            return m

    return verilog.convert(SimulationTop(), name="soc", emit_src=False)


def verilate(source_files, build_dir, verbose=False):
    """Build the harness with Verilator in `build_dir`; returns the executable's path."""
    _setup_verilator()
    executable = Path(build_dir) / "obj" / "Vsoc"
    stamp = Path(build_dir) / "sources.sha256"
    digest = hashlib.sha256()
    for path in list(source_files) + [SIM_DIR / "soc_main.cpp"]:
        digest.update(Path(path).read_bytes())
    if executable.is_file() and stamp.is_file() and stamp.read_text() == digest.hexdigest():
        return executable
    env = dict(os.environ)
    flags = env.get("MAKEFLAGS", "")
    env["MAKEFLAGS"] = f"{flags} OPT_FAST=-O2 OPT_GLOBAL=-O2".strip()
    command = ["verilator", "--cc", "--exe", "--build", "-j", "1", "-O3",
               "--x-assign", "fast", "--x-initial", "fast", "--noassert",
               "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", "soc",
               "-Mdir", str(Path(build_dir) / "obj"), "-o", "Vsoc",
               *map(str, source_files), str(SIM_DIR / "soc_main.cpp")]
    log = Path(build_dir) / "build.log"
    with open(log, "w") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    if result.returncode or not executable.is_file():
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise SystemExit("error: the Verilator build failed; build.log ends with:\n"
                         + "\n".join(tail))
    stamp.write_text(digest.hexdigest())
    return executable


_LINE = re.compile(r"(\d+) ([\d.]+) (.*)")


def parse_output(text):
    """The harness's output -> {"lines": [(cycle, wall, text)], "images": [...],
    "checks": [...], "load": ..., "end": failures, "exit": code or None, "cycles": n}."""
    parsed = {"lines": [], "images": [], "checks": [], "load": None, "end": None,
              "exit": None, "cycles": None, "errors": []}
    for raw in text.splitlines():
        if raw.startswith("#EXIT"):
            _, code, cycles = raw.split()
            parsed["exit"], parsed["cycles"] = int(code), int(cycles)
            continue
        if raw.startswith("#LIMIT"):
            parsed["cycles"] = int(raw.split()[1])
            continue
        match = _LINE.match(raw)
        if not match:
            continue
        cycle, wall, line = int(match[1]), float(match[2]), match[3]
        parsed["lines"].append((cycle, wall, line))
        words = line.split()
        if not words:
            continue
        if words[0] == "IMAGE" and len(words) > 2 and words[2] == "ERROR":
            parsed["errors"].append(line)
        elif words[0] == "IMAGE":
            bits_at, logits_at = words.index("BITS"), words.index("LOGITS")
            parsed["images"].append({
                "index": int(words[1]), "prediction": int(words[3]), "label": int(words[5]),
                "cycles": int(words[7]), "total": int(words[9]),
                "bits": [int(v) for v in words[bits_at + 1:logits_at]],
                "logits": [int(v) for v in words[logits_at + 1:]],
                "at_cycle": cycle, "wall": wall})
        elif words[0] == "CHECK":
            parsed["checks"].append({"name": words[1], "expected": int(words[2]),
                                     "status": int(words[3]), "ok": words[4] == "ok"})
        elif words[0] == "LOAD":
            parsed["load"] = {"how": words[1], "status": int(words[2]),
                              "cycles": int(words[3]), "at_cycle": cycle, "wall": wall}
        elif words[0] == "END":
            parsed["end"] = int(words[1])
    return parsed


def run_soc(job):
    """Build and run one SoC simulation; return the summary dict."""
    from dqt_hw.accel.config import AcceleratorConfig
    from dqt_hw.firmware.build import build_firmware, firmware_size
    from dqt_hw.firmware.__main__ import write_model_sources
    from dqt_hw.package import load_package
    from dqt_hw.soc import SoC
    from dqt_hw.soc.cpu import DEFAULT_CPU
    from net import golden_outputs

    config = job.config or AcceleratorConfig()
    job = dataclasses.replace(job, cpu=job.cpu or DEFAULT_CPU)
    key = hashlib.sha256(json.dumps([dataclasses.asdict(config), job.cpu, job.preload,
                                     str(Path(job.package).resolve()), job.first,
                                     job.images], sort_keys=True).encode()).hexdigest()[:12]
    build_root = Path(job.build_root) if job.build_root else SIM_DIR / "sim_build_soc"
    build_dir = (build_root / key).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model = write_model_sources(job.package, build_dir / "model", config, images=job.images,
                                first=job.first, dataset=job.dataset)
    try:
        image = build_firmware(build_dir / "model", build_dir / "firmware", job.verbose)
    except RuntimeError as error:
        raise SystemExit(f"error: {error}") from None
    soc = SoC(image, cpu=job.cpu, accelerator=config, model=model if job.preload else None,
              clock_hz=SIM_CLOCK_HZ, baud=SIM_CLOCK_HZ // SIM_UART_DIVISOR)
    source = build_dir / "soc.v"
    text = soc_verilog(soc)
    if not source.is_file() or source.read_text() != text:
        source.write_text(text)
    executable = verilate([source, *soc.verilog_files()], build_dir, job.verbose)
    build_s = time.perf_counter() - started

    started = time.perf_counter()
    try:
        result = subprocess.run([str(executable), str(soc.uart_divisor), str(job.max_cycles)],
                                capture_output=True, text=True, timeout=job.timeout_s)
    except subprocess.TimeoutExpired as expired:
        output = expired.stdout.decode(errors="replace") if expired.stdout else ""
        (build_dir / "uart.log").write_text(output)
        raise SystemExit(f"error: the simulation ran longer than {job.timeout_s:g} s; the "
                         f"UART output is in {build_dir / 'uart.log'}") from None
    run_s = time.perf_counter() - started
    (build_dir / "uart.log").write_text(result.stdout + result.stderr)
    if result.returncode:
        raise SystemExit(f"error: the simulation failed (exit {result.returncode}); see "
                         f"{build_dir / 'uart.log'}")
    parsed = parse_output(result.stdout)

    arrays = np.load(build_dir / "model" / "images.npz")
    graph, _ = load_package(job.package)
    logits, bits = golden_outputs(graph, arrays["images"])
    return summarize(parsed, logits, bits, arrays["labels"], model, job, config,
                     firmware_size(build_dir / "firmware"), build_s, run_s, build_dir)


def summarize(parsed, logits, bits, labels, model, job, config, size, build_s, run_s,
              build_dir):
    images = parsed["images"]
    mismatches = []
    for i, record in enumerate(images):
        want_bits = [] if bits is None else [int(b) for b in bits[i]]
        if (record["logits"] != [int(v) for v in logits[i]]
                or record["prediction"] != int(np.argmax(logits[i]))
                or record["bits"] != want_bits or record["label"] != int(labels[i])
                or record["index"] != job.first + i):
            mismatches.append(record["index"])
    missing = job.images - len(images)
    cycles = np.array([r["cycles"] for r in images], dtype=np.int64)
    totals = np.array([r["total"] for r in images], dtype=np.int64)
    outside = totals - cycles
    load = parsed["load"]
    walls = [load["wall"]] + [r["wall"] for r in images] if load and images else []
    summary = {
        "package": str(job.package), "cpu": job.cpu, "preload": job.preload,
        "config": dataclasses.asdict(config), "images": len(images), "first": job.first,
        "missing": missing, "mismatches": len(mismatches) + max(missing, 0),
        "mismatched_images": mismatches, "errors": parsed["errors"],
        "checks": parsed["checks"],
        "failed_checks": [c["name"] for c in parsed["checks"] if not c["ok"]],
        "end": parsed["end"], "exit": parsed["exit"], "load": load,
        "accuracy": float(np.mean([r["prediction"] == r["label"] for r in images]))
        if images else None,
        "accelerator_cycles_mean": float(cycles.mean()) if len(images) else None,
        "infer_cycles_mean": float(totals.mean()) if len(images) else None,
        "cpu_cycles_outside_mean": float(outside.mean()) if len(images) else None,
        "cpu_outside_percent": float(100 * outside.mean() / cycles.mean())
        if len(images) else None,
        "bit_vectors": len({tuple(r["bits"]) for r in images}),
        "simulated_cycles": parsed["cycles"],
        "images_per_s": (len(images) / (walls[-1] - walls[0])
                         if len(walls) > 1 and walls[-1] > walls[0] else None),
        "firmware": size, "build_s": build_s, "run_s": run_s, "build_dir": str(build_dir),
    }
    summary["ok"] = (summary["mismatches"] == 0 and not summary["failed_checks"]
                     and not summary["errors"] and summary["end"] == 0
                     and summary["exit"] == 0 and len(summary["checks"]) > 0)
    return summary


def format_summary(s):
    lines = [f"{s['images']} images (from #{s['first']}) on the Verilated SoC ({s['cpu']}, "
             f"1x{s['config']['cols']} array, model {'preloaded' if s['preload'] else 'loaded'}"
             f"): {s['mismatches']} mismatches against the golden model"]
    if s["load"]:
        lines.append(f"  model load: {s['load']['how']}, {s['load']['cycles']} cycles")
    if s["images"]:
        lines.append(f"  top-1 {100 * s['accuracy']:.2f} %")
        lines.append(f"  per image: accelerator {s['accelerator_cycles_mean']:.0f} cycles, "
                     f"dqt_infer {s['infer_cycles_mean']:.0f} cycles, CPU outside the "
                     f"accelerator {s['cpu_cycles_outside_mean']:.0f} cycles "
                     f"({s['cpu_outside_percent']:.2f} % of the accelerator's)")
    checks = s["checks"]
    lines.append(f"  error paths: {sum(c['ok'] for c in checks)}/{len(checks)} checks ok"
                 + (f"; FAILED: {', '.join(s['failed_checks'])}" if s["failed_checks"] else ""))
    for error in s["errors"]:
        lines.append(f"  {error}")
    fw = s["firmware"]
    lines.append(f"  firmware: {fw['rom']} bytes of ROM ({fw['runtime_text']} the runtime), "
                 f"{fw['bss']} bytes of RAM (bss + stack)")
    rate = f"{s['images_per_s']:.2f} images/s" if s["images_per_s"] else "n/a"
    lines.append(f"  build {s['build_s']:.0f} s, run {s['run_s']:.1f} s "
                 f"({s['simulated_cycles']} cycles): {rate} simulated")
    lines.append(f"  exit code {s['exit']}" + ("" if s["ok"] else " -- FAILED"))
    return "\n".join(lines)


def main(argv=None):
    from dqt_hw.accel.compile import add_config_arguments, parse_config
    from dqt_hw.soc.cpu import CPU_CLASSES, DEFAULT_CPU

    parser = argparse.ArgumentParser(prog="python sim/soc.py",
                                     description=__doc__.split("\n\n")[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--package", required=True, help="integer model package directory")
    parser.add_argument("--images", type=int, default=8, help="test images (8)")
    parser.add_argument("--first", type=int, default=0, help="index of the first test image")
    parser.add_argument("--dataset", default=None, help="default: the package's")
    parser.add_argument("--cpu", default=DEFAULT_CPU, choices=sorted(CPU_CLASSES))
    parser.add_argument("--no-preload", action="store_true",
                        help="do not put the model in the accelerator's memories at build "
                             "time (the firmware loads it through the windows)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="a small accelerator configuration for this model family "
                             "(digits: 4096 data words, K <= 512, ...)")
    parser.add_argument("--build-root", default=None, help="default: sim/sim_build_soc")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="stop the simulation after this many seconds (3600)")
    parser.add_argument("--json", default=None, help="write the summary here (JSON)")
    parser.add_argument("--verbose", action="store_true")
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    if args.images < 1:
        parser.error("--images must be at least 1")
    for name, value in PRESETS.get(args.preset, {}).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    try:
        job = SocJob(package=args.package, config=parse_config(args), images=args.images,
                     first=args.first, dataset=args.dataset, cpu=args.cpu,
                     preload=not args.no_preload, build_root=args.build_root,
                     timeout_s=args.timeout, verbose=args.verbose)
        summary = run_soc(job)
    except (ValueError, TypeError, OSError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    if args.json:
        from dqt_hw.atomic import write_atomic
        write_atomic(args.json, json.dumps(summary, indent=1) + "\n")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
