"""python -m dqt_hw.soc.bench: area of the soft CPUs and of the SoC on the FPGA targets.

    python -m dqt_hw.soc.bench --out build/soc-bench                       # the CPUs alone
    python -m dqt_hw.soc.bench --out build/soc-bench --soc FIRMWARE.bin    # + SoC and accelerator

Synthesizes (Yosys, `synth_ice40` / `synth_ecp5`) each CPU of `dqt_hw.soc.cpu` on its own,
and with --soc the whole SoC (CPU `--soc-cpu`, ROM holding FIRMWARE, RAM, UART, system
controller and the accelerator of the default `AcceleratorConfig`) and the accelerator alone,
so that SoC minus accelerator is what the CPU side costs. Each finished run is saved as
OUT/<target>/<design>.json, and a run whose file exists is reused (delete it to redo it);
OUT/summary.json collects them. The CPU speed (cycles per inference outside the accelerator)
comes from the SoC simulation (sim/soc.py).
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["synthesize_design", "main"]


def _rtlil(component, name):
    from amaranth.back import rtlil
    return rtlil.convert(component, name=name, emit_src=False)


def synthesize_design(name, component, verilog_files, target, out_dir, *, place_route=False):
    """Synthesize `component` (plus the Verilog it instantiates) for `target`, and with
    `place_route` place and route it (nextpnr, seed 1, unconstrained pins); return
    {"resources": ..., "cells": ..., "seconds": ..., "fmax_mhz": ..., "utilization": ...} and
    save it as OUT/<target>/<name>.json."""
    from ..build.targets import TARGETS, classify_cells
    from .. import toolchain

    target = TARGETS[target]
    root = Path(out_dir) / target.name / name
    root.mkdir(parents=True, exist_ok=True)
    script = []
    for path in verilog_files:
        shutil.copy(path, root / Path(path).name)
        script.append(f"read_verilog -defer {Path(path).name}")
    (root / "top.il").write_text(_rtlil(component, "top"))
    synth = target.synth_command("top", dsp=True) + (" -json netlist.json" if place_route else "")
    script += ["read_rtlil top.il", synth, "tee -q -o stat.json stat -json"]
    started = time.perf_counter()
    toolchain.run_yosys(script, root, log_name="yosys.log")
    cells = toolchain.read_yosys_stat(root / "stat.json")
    result = {"design": name, "target": target.name, "resources": classify_cells(cells),
              "cells": cells, "seconds": round(time.perf_counter() - started, 1),
              "yosys": toolchain.tool_version("yosys")}
    if place_route:
        routed = toolchain.run_nextpnr(target.family, target.nextpnr_device, "netlist.json",
                                       root, seed=1, freq_mhz=target.target_mhz)
        result.update(fmax_mhz=routed.worst_fmax_mhz, utilization=routed.utilization,
                      seconds=round(time.perf_counter() - started, 1))
    from ..atomic import write_atomic
    write_atomic(Path(out_dir) / target.name / f"{name}.json", json.dumps(result, indent=1) + "\n")
    return result


class _AcceleratorTop(wiring.Component):
    """The accelerator with its ports passed through: Yosys 0.70 trips an internal assertion
    on the RTLIL of `Accelerator` as the top module itself."""

    def __init__(self, accelerator):
        from ..hdl.accelerator import wishbone_signature
        self.accelerator = accelerator
        super().__init__({"bus": In(wishbone_signature()), "busy": Out(1), "done": Out(1),
                          "error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = accelerator = self.accelerator
        wiring.connect(m, wiring.flipped(self.bus), accelerator.bus)
        m.d.comb += [self.busy.eq(accelerator.busy), self.done.eq(accelerator.done),
                     self.error.eq(accelerator.error)]
        return m


def _designs(args, target):
    """(name, factory of the component, verilog files, place and route) of every run asked
    for on `target`."""
    from ..accel.config import AcceleratorConfig
    from ..hdl.accelerator import Accelerator
    from .cpu import CPU_CLASSES
    from .soc import SoC

    designs = []
    for cpu in args.cpus:
        cls = CPU_CLASSES[cpu]
        designs.append((f"cpu-{cpu}", cls, cls.verilog_files(), False))
    if args.soc:
        firmware = Path(args.soc).read_bytes()
        # The iCE40 build keeps the data memory in SPRAM, as a board build would.
        memory = "ice40-spram" if target.startswith("ice40") else "portable"

        def soc():
            return SoC(firmware, cpu=args.soc_cpu, accelerator=AcceleratorConfig(),
                       data_memory=memory)

        def accelerator():
            return _AcceleratorTop(Accelerator(AcceleratorConfig(), data_memory=memory))

        designs.append((f"soc-{args.soc_cpu}", soc, CPU_CLASSES[args.soc_cpu].verilog_files(),
                        args.pnr))
        designs.append(("accelerator", accelerator, [], False))
    return designs


def main(argv=None):
    from ..build.targets import TARGETS
    from ..package import run_cli
    from ..toolchain import DeviceFull
    from .cpu import CPU_CLASSES, DEFAULT_CPU

    parser = argparse.ArgumentParser(prog="python -m dqt_hw.soc.bench",
                                     description=__doc__.split("\n\n")[2].replace("\n", " "))
    parser.add_argument("--out", default="build/soc-bench", help="output folder")
    parser.add_argument("--targets", default="ice40-up5k,ecp5-85f",
                        help="comma-separated (ice40-up5k,ecp5-85f)")
    parser.add_argument("--cpus", default=",".join(CPU_CLASSES),
                        help=f"comma-separated CPUs to synthesize alone ({','.join(CPU_CLASSES)})")
    parser.add_argument("--soc", default=None, metavar="FIRMWARE.bin",
                        help="also synthesize the SoC with this ROM image, and the accelerator")
    parser.add_argument("--soc-cpu", default=DEFAULT_CPU, choices=sorted(CPU_CLASSES))
    parser.add_argument("--pnr", action="store_true",
                        help="also place and route the SoC (nextpnr, seed 1): Fmax, utilisation")
    args = parser.parse_args(argv)
    args.targets = [t for t in args.targets.split(",") if t]
    args.cpus = [c for c in args.cpus.split(",") if c]

    def run(_):
        for target in args.targets:
            if target not in TARGETS:
                raise ValueError(f"`--targets` must name {', '.join(TARGETS)}, not {target!r}")
        for cpu in args.cpus:
            if cpu not in CPU_CLASSES:
                raise ValueError(f"`--cpus` must name {', '.join(CPU_CLASSES)}, not {cpu!r}")
        summary = {}
        for target in args.targets:
            for name, factory, files, place_route in _designs(args, target):
                saved = Path(args.out) / target / f"{name}.json"
                if saved.is_file():
                    result = json.loads(saved.read_text())
                    print(f"{target} {name}: reused {saved}")
                else:
                    print(f"{target} {name}: synthesizing ...", flush=True)
                    try:
                        result = synthesize_design(name, factory(), files, target, args.out,
                                                   place_route=place_route)
                    except DeviceFull as error:
                        print(f"{target} {name}: {error}")
                        continue
                res = result["resources"]
                fmax = f", {result['fmax_mhz']:.1f} MHz" if result.get("fmax_mhz") else ""
                print(f"{target} {name}: {res['LUT4']} LUT4, {res['carry']} carry, {res['FF']} FF, "
                      f"{res['BRAM']} BRAM, {res['DSP']} DSP{fmax} ({result['seconds']} s)")
                summary.setdefault(target, {})[name] = dict(
                    res, **{k: result[k] for k in ("fmax_mhz", "utilization") if k in result})
        from ..atomic import write_atomic
        write_atomic(Path(args.out) / "summary.json", json.dumps(summary, indent=1) + "\n")
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
