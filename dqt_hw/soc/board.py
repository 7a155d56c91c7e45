"""python -m dqt_hw.soc.board: the SoC as a board bitstream (ULX3S-85F, iCEBreaker).

    python -m dqt_hw.soc.board --board ulx3s-85f --package build/pkg-fmnist --images 3 \
        --out build/board-soc-ulx3s

Compiles the package to C with N test images (`python -m dqt_hw.firmware`), builds the
classify firmware, and builds `SoC` (default CPU, the model also in the accelerator's
memories) for the board through its `amaranth-boards` platform (pin constraints, RTLIL, Yosys,
nextpnr, the packer), with the YoWASP tools (`dqt_hw.toolchain`; $YOSYS etc. override). The SoC
runs from the board's oscillator (no PLL); its UART is the board's USB serial port (115200
baud), its LEDs show the accelerator's busy, done and error and the firmware's end. The
firmware prints its results on the UART (docs/firmware.md).

Writes OUT/gateware/soc.bit (or .bin), the build files, and OUT/report.json (utilisation,
Fmax, whether it meets the board clock; the command exits 1 when it does not).
"""

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

from amaranth.hdl import Elaboratable, Module
from amaranth.lib import io

__all__ = ["BOARDS", "BoardSoC", "build_board", "main"]


@dataclasses.dataclass(frozen=True)
class _Board:
    platform: str            # amaranth_boards class, "module:Class"
    target: str              # dqt_hw.build.targets key
    data_memory: str


BOARDS = {
    "ulx3s-85f": _Board("amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5-85f", "portable"),
    "icebreaker": _Board("amaranth_boards.icebreaker:ICEBreakerPlatform", "ice40-up5k",
                         "ice40-spram"),
}


def _platform(board):
    module, name = BOARDS[board].platform.split(":")
    return getattr(__import__(module, fromlist=[name]), name)()


class BoardSoC(Elaboratable):
    """`soc` on a board platform: UART 0 and the first four LEDs (busy, done, error, halt)."""

    def __init__(self, soc):
        self.soc = soc

    def elaborate(self, platform):
        m = Module()
        m.submodules.soc = soc = self.soc
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.d.comb += [tx.o.eq(soc.uart_tx), soc.uart_rx.eq(rx.i)]
        for index, level in enumerate((soc.busy, soc.done, soc.error, soc.halt)):
            m.submodules[f"led_{index}"] = led = io.Buffer("o", platform.request("led", index,
                                                                                dir="-"))
            m.d.comb += led.o.eq(level)
        return m


def build_board(board, package, out, *, images=3, cpu=None, seed=1, verbose=False):
    """Build the SoC bitstream for `board` into `out`; returns the report dict."""
    from ..accel.config import AcceleratorConfig
    from ..firmware.__main__ import write_model_sources
    from ..firmware.build import build_firmware, firmware_size
    from .. import toolchain
    from ..build.targets import TARGETS
    from .cpu import DEFAULT_CPU
    from .soc import SoC

    if board not in BOARDS:
        raise ValueError(f"`board` must be one of {', '.join(BOARDS)}, not {board!r}")
    spec, out = BOARDS[board], Path(out).resolve()
    platform = _platform(board)
    clock_hz = int(platform.default_clk_frequency)
    config = AcceleratorConfig()
    started = time.perf_counter()
    model = write_model_sources(package, out / "model", config, images=images)
    image = build_firmware(out / "model", out / "firmware", verbose)
    soc = SoC(image, cpu=cpu or DEFAULT_CPU, accelerator=config, model=model,
              clock_hz=clock_hz, data_memory=spec.data_memory)
    for path in soc.verilog_files():
        platform.add_file(path.name, path.read_text())
    # The platform gives the files (RTLIL, constraints, Yosys script); the tools run through
    # dqt_hw.toolchain (YoWASP or $YOSYS, ...), not the platform's script, which would also
    # demand the board's programmer.
    plan = platform.prepare(BoardSoC(soc), name="soc")
    gateware = out / "gateware"
    gateware.mkdir(parents=True, exist_ok=True)
    for name, contents in plan.files.items():
        path = gateware / name
        if isinstance(contents, str):
            path.write_text(contents)
        else:
            path.write_bytes(contents)
    target = TARGETS[spec.target]
    toolchain.run_yosys(plan.files["soc.ys"].splitlines(), gateware, log_name="soc.rpt")
    family = target.family
    constraints = ["--lpf", "soc.lpf", "--textcfg", "soc.config"] if family == "ecp5" else \
        ["--pcf", "soc.pcf", "--asc", "soc.asc"]
    routed = toolchain.run_nextpnr(family, list(target.nextpnr_device) + constraints,
                                   "soc.json", gateware, seed=seed, freq_mhz=clock_hz / 1e6)
    packer = toolchain.find_tool("ecppack" if family == "ecp5" else "icepack")
    arguments = (["--input", "soc.config", "--bit", "soc.bit"] if family == "ecp5"
                 else ["soc.asc", "soc.bin"])
    packed = subprocess.run(packer + arguments, cwd=gateware, capture_output=True, text=True)
    if packed.returncode:
        raise toolchain.ToolError(f"{packer[0]} failed: {packed.stderr.strip()[-200:]}")
    bitstream = next((p for p in (gateware / "soc.bit", gateware / "soc.bin") if p.is_file()),
                     None)
    report = {
        "board": board, "target": spec.target, "cpu": soc.cpu_name, "clock_hz": clock_hz,
        "package": str(package), "images": images, "utilisation": routed.utilization,
        "seed": seed, "fmax_mhz": routed.worst_fmax_mhz,
        "timing_met": routed.worst_fmax_mhz >= clock_hz / 1e6,
        "bitstream": str(bitstream) if bitstream else None,
        "firmware": firmware_size(out / "firmware"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def main(argv=None):
    from ..package import run_cli
    from .cpu import CPU_CLASSES, DEFAULT_CPU

    parser = argparse.ArgumentParser(prog="python -m dqt_hw.soc.board",
                                     description=__doc__.split("\n\n")[2].replace("\n", " "))
    parser.add_argument("--board", required=True, choices=sorted(BOARDS))
    parser.add_argument("--package", required=True, help="integer model package directory")
    parser.add_argument("--images", type=int, default=3,
                        help="test images in the firmware (3)")
    parser.add_argument("--cpu", default=DEFAULT_CPU, choices=sorted(CPU_CLASSES))
    parser.add_argument("--seed", type=int, default=1, help="nextpnr seed (1)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    def run(_):
        try:
            report = build_board(args.board, args.package, args.out, images=args.images,
                                 cpu=args.cpu, seed=args.seed, verbose=args.verbose)
        except RuntimeError as error:                # a tool or the firmware build failed
            print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
            return 2
        print(json.dumps({k: v for k, v in report.items() if k != "utilisation"}, indent=1))
        if not report["timing_met"]:
            print(f"warning: {report['fmax_mhz']:.2f} MHz is below the board clock "
                  f"({report['clock_hz'] / 1e6:g} MHz); try another --seed", file=sys.stderr)
        return 0 if report["bitstream"] and report["timing_met"] else 1

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
