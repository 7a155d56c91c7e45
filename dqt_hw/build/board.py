"""`python -m dqt_hw.build --board BOARD --model PKG`: a bitstream that runs one model.

The accelerator, sized to the package (`dqt_hw.accel.sizing`) with the package's program,
weights, constants and controller table in its memory initialisation, behind the UART bridge,
with the board's clock and status LEDs (`dqt_hw.boards.top.BoardTop`), goes through the board's
`amaranth-boards` platform (pin constraints, RTLIL), Yosys, nextpnr for seeds 1..N and the
packer of the YoWASP tools. The output folder holds the bitstream of the best seed, board.json
(what `python -m dqt_hw.run` needs), report.json and report.md (docs/boards.md).
"""

import argparse
import dataclasses
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .. import toolchain
from ..atomic import atomic_dir
from ..boards.catalog import BOARDS, check_board
from .cells import predicted_cells
from .targets import TARGETS, capacity_use, classify_cells

__all__ = ["BoardBuildConfig", "board_requested", "parse_board_args", "prepare_top",
           "run_board_build", "synthesize_top", "memory_fit_error", "BOARD_FORMAT", "main"]

BOARD_FORMAT = "dqt-hw-board-build"
BOARD_VERSION = 1


@dataclasses.dataclass(frozen=True)
class BoardBuildConfig:
    board: str
    model: Path
    out: Path | None = None
    clock_mhz: float | None = None
    baud: int | None = None
    cols: int | None = None
    seeds: int = 1
    allow_timing_fail: bool = False
    cycles: Path | None = None

    def __post_init__(self):
        check_board(self.board)
        if not Path(self.model).is_dir():
            raise ValueError(f"`--model` {self.model} is not a package folder "
                             f"(python -m dqt_hw.export makes one)")
        if not isinstance(self.seeds, int) or not 1 <= self.seeds <= 20:
            raise ValueError(f"`--seeds` must be an integer between 1 and 20, not {self.seeds!r}")
        if self.clock_mhz is not None and not self.clock_mhz > 0:
            raise ValueError(f"`--clock-mhz` must be positive, not {self.clock_mhz}")
        if self.baud is not None and self.baud < 1200:
            raise ValueError(f"`--baud` must be at least 1200, not {self.baud}")
        if self.cycles is not None and not Path(self.cycles).is_file():
            raise ValueError(f"`--cycles` {self.cycles} is not a file (python sim/board.py "
                             f"--json writes one)")

    @property
    def out_dir(self):
        return Path(self.out) if self.out else Path("build") / f"{self.board}-{Path(self.model).name}"


def board_requested(argv):
    return any(arg == "--board" or arg.startswith("--board=") for arg in argv)


def make_board_parser():
    parser = argparse.ArgumentParser(
        prog="python -m dqt_hw.build --board BOARD",
        description="Build a bitstream that runs one exported model on a board: the "
                    "accelerator with the model in its memories, a UART host link and status "
                    "LEDs; report utilisation, Fmax against the design clock and images/s.",
        epilog="Example: python -m dqt_hw.build --board icebreaker --model build/pkg-digits-dqt"
               "  (then: python -m dqt_hw.run --build build/icebreaker-pkg-digits-dqt "
               "--port /dev/ttyUSB1 --program)")
    parser.add_argument("--board", required=True,
                        help="; ".join(f"{name}: {board.description}"
                                       for name, board in BOARDS.items()))
    parser.add_argument("--model", type=Path, required=True,
                        help="an exported integer package (python -m dqt_hw.export)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default build/BOARD-PACKAGE)")
    parser.add_argument("--clock-mhz", type=float, default=None,
                        help="design clock (default: the board's, see docs/boards.md)")
    parser.add_argument("--baud", type=int, default=None,
                        help="UART baud rate (default 1000000)")
    parser.add_argument("--cols", type=int, default=None,
                        help="MAC array columns (default: the board's)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="place and route with seeds 1..N; the bitstream is the best "
                             "seed's (default %(default)s)")
    parser.add_argument("--allow-timing-fail", action="store_true",
                        help="write the bitstream even when Fmax is below the design clock")
    parser.add_argument("--cycles", type=Path, default=None,
                        help="cycles per image measured on the simulated board "
                             "(python sim/board.py --json FILE): adds images/s to the report")
    return parser


def parse_board_args(argv):
    args = make_board_parser().parse_args(argv)
    return BoardBuildConfig(board=args.board, model=args.model, out=args.out,
                            clock_mhz=args.clock_mhz, baud=args.baud, cols=args.cols,
                            seeds=args.seeds, allow_timing_fail=args.allow_timing_fail,
                            cycles=args.cycles)


class BoardBuildError(ValueError):
    """A model that does not fit the board, or a build that misses timing."""


def _memory_bits(config):
    """Bits of RAM the accelerator's memories hold (a lower bound of what the device needs)."""
    return (config.data_words * 64 + config.program_words * 32 + config.table_words * 32
            + config.wide_words * 32 + config.max_ops * 32 + config.cols * config.buffer_depth * 32)


#: RAM bits of each device: block RAM plus the UP5K's four 256-kbit SPRAMs.
RAM_BITS = {"ice40-up5k": 30 * 4096 + 4 * 262144, "ecp5-25f": 56 * 18432,
            "ecp5-85f": 208 * 18432}


def memory_fit_error(board, config):
    """The one-line refusal of an accelerator whose memories exceed the board's RAM, or None."""
    need, have = _memory_bits(config), RAM_BITS[board.target]
    if need > have:
        return (f"the model does not fit the {board.name}: its memories need {need} bits of "
                f"RAM, the {board.target} has {have}")
    return None


def _pack(board, staging, stem):
    """icepack or ecppack the chosen seed's placed design; return the bitstream file names."""
    if board.family == "ice40":
        tool, args, outputs = "icepack", [f"{stem}.asc", "top.bin"], ["top.bin"]
    else:
        tool, args, outputs = "ecppack", ["--compress", "--input", f"{stem}.config",
                                          "--bit", "top.bit", "--svf", "top.svf"], ["top.bit",
                                                                                    "top.svf"]
    argv = toolchain.find_tool(tool)
    done = subprocess.run(argv + args, cwd=staging, capture_output=True, text=True,
                          timeout=1800)
    for name in outputs:
        path = Path(staging) / name
        if done.returncode != 0 or not path.is_file() or path.stat().st_size == 0:
            reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            raise toolchain.ToolError(f"{tool} did not write {name}: {reason}")
    return outputs


def prepare_top(board, design, root):
    """Write the platform's preparation of `design` (a `BoardDesign`) to `root`: top.il and
    the pin constraints (top.pcf or top.lpf)."""
    plan = board.platform().prepare(design.top, name="top")
    for name in ("top.il", "top.pcf", "top.lpf"):
        if name in plan.files:
            text = plan.files[name]
            (Path(root) / name).write_bytes(text.encode() if isinstance(text, str) else text)


def synthesize_top(board, root):
    """Yosys on root/top.il: the netlist top.json and Yosys's cell counts (returned)."""
    target = TARGETS[board.target]
    toolchain.run_yosys(["read_rtlil top.il", target.synth_command("top", dsp=True),
                         "write_json top.json", "tee -q -o top.stat.json stat -json"],
                        root, log_name="top.yosys.log")
    return toolchain.read_yosys_stat(Path(root) / "top.stat.json")


def run_board_build(cfg, *, argv=None, progress=True):
    """Build `cfg` (a `BoardBuildConfig`); return the path of report.md."""
    from ..accel.compiler import CompileError
    from ..boards.top import board_design
    from ..package import PackageError, load_package
    from . import board_report

    board = BOARDS[cfg.board]
    target = TARGETS[board.target]
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if progress else (lambda t: 0)
    tools = {name: toolchain.tool_version(name)
             for name in ("yosys", f"nextpnr-{board.family}")}
    toolchain.find_tool("icepack" if board.family == "ice40" else "ecppack")
    try:
        graph, manifest = load_package(cfg.model)
    except PackageError as error:
        raise BoardBuildError(str(error)) from None
    try:
        design = board_design(board, graph, cols=cfg.cols,
                              clock_hz=cfg.clock_mhz * 1e6 if cfg.clock_mhz else None,
                              baud=cfg.baud)
    except CompileError as error:
        raise BoardBuildError(f"the model cannot run on the accelerator: {error}") from None
    config, model, clock, baud = design.config, design.model, design.clock, design.baud
    refusal = memory_fit_error(board, config)
    if refusal:
        raise BoardBuildError(refusal)
    need = _memory_bits(config)
    started = time.monotonic()
    stages = {}
    report = {
        "format": BOARD_FORMAT, "version": BOARD_VERSION,
        "command": "python -m dqt_hw.build " + " ".join(argv if argv is not None
                                                          else sys.argv[1:]),
        "board": board.name, "board_description": board.description, "target": target.name,
        "package": str(Path(cfg.model).resolve()), "dataset": manifest.get("metadata", {})
        .get("dataset"), "config": dataclasses.asdict(config),
        "clock": {"design_hz": clock.clock_hz, "source_hz": clock.source_hz,
                  "pll": clock.primitive, "pll_parameters": dict(clock.parameters),
                  "description": clock.describe()},
        "baud": baud, "memory_bits": need, "tools": tools,
        "data_memory": board.data_memory, "data_in_bitstream": board.data_in_bitstream,
        "model_words": {"program": len(model.program), "data_weights": int(model.data.size),
                        "data_used": model.data_words_used, "constants": len(model.constants),
                        "table": len(model.table)},
    }
    out_dir = cfg.out_dir
    if out_dir.exists() and not (out_dir / "board.json").is_file() and any(out_dir.iterdir()):
        raise BoardBuildError(f"`--out` {out_dir} exists and is not a board build folder; "
                              f"choose another --out")
    with atomic_dir(out_dir) as staging:
        try:
            say(f"board build: {board.name}, {config.describe()}, {clock.describe()}")
            t0 = time.monotonic()
            prepare_top(board, design, staging)
            stages["elaborate_s"] = round(time.monotonic() - t0, 1)
            say(f"yosys {target.synth_command('top', dsp=True)} (a few minutes)")
            t0 = time.monotonic()
            cells = synthesize_top(board, staging)
            stages["synthesis_s"] = round(time.monotonic() - t0, 1)
            resources = classify_cells(cells)
            if board.family == "ice40":
                resources["LC"] = predicted_cells(staging / "top.json")
            report["synthesis"] = {"resources": resources, "cells": cells}
            over = {key: use for key, use in capacity_use(target, resources).items()
                    if use[0] > use[1]}
            if over:
                raise BoardBuildError(
                    f"the model does not fit the {board.name}: " + ", ".join(
                        f"{key} {need} > {have} (by {need - have})"
                        for key, (need, have) in over.items())
                    + f" ({config.describe()}; "
                    + ("try a smaller --cols, " if config.cols > 1 else "")
                    + "a smaller model or a larger board)")
            constraints = (["--pcf", "top.pcf"] if board.family == "ice40"
                           else ["--lpf", "top.lpf"])
            results = []
            t0 = time.monotonic()
            for seed in range(1, cfg.seeds + 1):
                say(f"nextpnr-{board.family} seed {seed}/{cfg.seeds}")
                stem = f"pnr/seed{seed}"
                output = (["--asc", f"{stem}.asc"] if board.family == "ice40"
                          else ["--textcfg", f"{stem}.config"])
                try:
                    results.append(toolchain.run_nextpnr(
                        board.family, target.nextpnr_device, "top.json", staging, seed=seed,
                        freq_mhz=clock.clock_hz / 1e6, stem=stem,
                        extra_args=constraints + output))
                except toolchain.DeviceFull as full:
                    raise BoardBuildError(f"the model does not fit the {board.name}: " + ", ".join(
                        f"{cell} {used} > {available} (by {used - available})"
                        for cell, (used, available) in full.overflow.items())) from None
            stages["place_route_s"] = round(time.monotonic() - t0, 1)
            best = max(results, key=lambda r: r.worst_fmax_mhz)
            fmax = [r.worst_fmax_mhz for r in results]
            design_mhz = clock.clock_hz / 1e6
            report["place_route"] = {
                "seeds": {str(r.seed): {"fmax_mhz": r.fmax_mhz} for r in results},
                "fmax_mhz": {"min": min(fmax), "median": statistics.median(fmax),
                             "max": max(fmax)},
                "chosen_seed": best.seed, "design_mhz": design_mhz,
                "timing_met": best.worst_fmax_mhz >= design_mhz,
                "utilization": {cell: use for cell, use in best.utilization.items()
                                if use["used"]},
            }
            if not report["place_route"]["timing_met"] and not cfg.allow_timing_fail:
                raise BoardBuildError(
                    f"timing missed on the {board.name}: Fmax {best.worst_fmax_mhz:.1f} MHz "
                    f"(best of {cfg.seeds} seed(s)) < design clock {design_mhz:g} MHz; lower "
                    f"--clock-mhz, try more --seeds, or pass --allow-timing-fail")
            say(f"{'icepack' if board.family == 'ice40' else 'ecppack'}")
            t0 = time.monotonic()
            report["bitstreams"] = {name: (staging / name).stat().st_size
                                    for name in _pack(board, staging, f"pnr/seed{best.seed}")}
            stages["pack_s"] = round(time.monotonic() - t0, 1)
            stages["total_s"] = round(time.monotonic() - started, 1)
            report["stages"] = stages
            report["throughput"] = board_report.throughput(report, model, graph, cfg.cycles)
            (staging / "board.json").write_text(json.dumps({
                "format": BOARD_FORMAT, "version": BOARD_VERSION, "board": board.name,
                "package": report["package"], "config": report["config"],
                "clock_hz": clock.clock_hz, "baud": baud, "bitstream": board.bitstream,
                "data_in_bitstream": board.data_in_bitstream,
                "timing_met": report["place_route"]["timing_met"]}, indent=1) + "\n")
            (staging / "report.json").write_text(json.dumps(report, indent=1) + "\n")
            (staging / "report.md").write_text(board_report.render_markdown(report))
        except toolchain.ToolError as error:
            failed = out_dir.parent / f".{out_dir.name}.failed"
            shutil.rmtree(failed, ignore_errors=True)
            shutil.copytree(staging, failed)
            raise type(error)(str(error).replace(str(staging), str(failed))) from None
    return out_dir / "report.md"


def main(argv):
    try:
        cfg = parse_board_args(argv)
        report = run_board_build(cfg, argv=argv)
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        return 130
    except (ValueError, TypeError, toolchain.ToolError, OSError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(f"report: {report}")
    print((report.parent / "report.md").read_text().split("\n\n")[1])
    return 0
