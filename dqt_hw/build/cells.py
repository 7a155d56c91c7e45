"""Where an iCE40 design's logic cells go: nextpnr's LUT/FF/carry packing, predicted from a
Yosys netlist in seconds.

An iCE40 logic cell (ICESTORM_LC) holds one LUT4, one carry and one flip-flop, and the
flip-flop's D input comes only from that LUT. nextpnr-ice40 packs a flip-flop with the LUT4
whose output drives nothing but that flip-flop's D; every other flip-flop (loaded straight
from a port, a memory, a DSP, another flip-flop, or a LUT that also drives something else)
takes a cell of its own with a pass-through LUT. A carry packs with a LUT4 whose I1 and I2
are the carry's I0 and I1 (how Yosys maps adders); one without such a LUT takes a cell too.
nextpnr also places a cell driving constant 1 (always) and one driving constant 0 (when the
netlist uses it). So

    cells = LUT4s + flip-flops alone + carries alone + constant drivers

(nextpnr then adds a few cells to legalise carry chains and merges a few LUTs into carry-only
cells; this does not model either, and they nearly cancel). Yosys's LUT4 count is only a lower
bound. This module counts the terms from the flattened JSON netlist that `synth_ice40 -json`
writes, and names the registers whose flip-flops sit alone: each costs a cell per bit.

    python -m dqt_hw.build.cells build/up5k/synth/accelerator.json --registers 20
    python -m dqt_hw.build.cells --model PKG                      # synthesizes the accelerator
    python -m dqt_hw.build.cells --model PKG --board icebreaker   # ... or the board's top
"""

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CellCount", "count_cells", "predicted_cells", "main"]

_FF_PREFIX = "SB_DFF"
_HIDDEN = re.compile(r"\$")          # Yosys-made names ($auto$, $signal$...) say nothing


@dataclass
class CellCount:
    """The packing of one flattened iCE40 netlist."""
    luts: int = 0
    flip_flops: int = 0
    carries: int = 0
    ff_with_lut: int = 0           # flip-flops packed with their LUT
    ff_alone: int = 0
    carry_alone: int = 0
    constant_drivers: int = 1      # nextpnr-ice40 always places a constant-1 cell
    lone_registers: Counter = field(default_factory=Counter)   # register name -> lone FFs
    lone_by_block: Counter = field(default_factory=Counter)    # hierarchy -> lone FFs
    luts_by_block: Counter = field(default_factory=Counter)    # hierarchy -> LUT4s

    @property
    def cells(self):
        """Logic cells nextpnr needs, carry-chain legalisation not counted."""
        return self.luts + self.ff_alone + self.carry_alone + self.constant_drivers

    def as_dict(self, registers=20):
        return {"cells": self.cells, "luts": self.luts, "flip_flops": self.flip_flops,
                "carries": self.carries, "ff_with_lut": self.ff_with_lut,
                "ff_alone": self.ff_alone, "carry_alone": self.carry_alone,
                "constant_drivers": self.constant_drivers,
                "lone_registers": dict(self.lone_registers.most_common(registers)),
                "lone_by_block": dict(self.lone_by_block.most_common()),
                "luts_by_block": dict(self.luts_by_block.most_common())}


def _top_module(netlist, top):
    modules = netlist.get("modules")
    if not isinstance(modules, dict) or not modules:
        raise ValueError("not a Yosys JSON netlist: no modules")
    if top is not None:
        if top not in modules:
            raise ValueError(f"no module {top!r} in the netlist (modules: "
                             f"{', '.join(sorted(modules)[:8])})")
        return modules[top]
    tops = [m for m in modules.values() if int(str(m.get("attributes", {}).get("top", 0)), 2)]
    if len(tops) != 1:
        raise ValueError("the netlist does not mark one top module; give --top")
    return tops[0]


def _bit_names(module):
    """Net bit -> the most readable name that carries it (public before Yosys-made, then the
    shortest)."""
    names = {}
    for name, net in module.get("netnames", {}).items():
        rank = (bool(net.get("hide_name")) or bool(_HIDDEN.search(name)), len(name))
        for bit in net["bits"]:
            if not isinstance(bit, str) and (bit not in names or rank < names[bit][0]):
                names[bit] = (rank, name)
    return {bit: name for bit, (rank, name) in names.items()}


def _block_of(name):
    return name.rsplit(".", 1)[0] if "." in name else "(top)"


def count_cells(netlist, top=None):
    """A parsed `synth_ice40 -json` netlist (flattened) -> `CellCount`."""
    module = _top_module(netlist, top)
    cells = module.get("cells", {})
    sinks = Counter()                  # net bit -> cell inputs and top outputs it drives
    driver = {}                        # net bit -> (cell name, port)
    uses_zero = False
    for name, cell in cells.items():
        directions = cell.get("port_directions", {})
        for port, bits in cell.get("connections", {}).items():
            for bit in bits:
                if isinstance(bit, str):
                    uses_zero |= bit == "0"
                    continue
                if directions.get(port) == "output":
                    driver[bit] = (name, port)
                else:
                    sinks[bit] += 1
    for port in module.get("ports", {}).values():
        if port.get("direction") != "input":
            for bit in port["bits"]:
                if not isinstance(bit, str):
                    sinks[bit] += 1

    names = _bit_names(module)
    count = CellCount(constant_drivers=1 + uses_zero)
    lut_inputs = set()                 # (I1, I2) of every LUT4, for the carry packing
    for name, cell in cells.items():
        kind, pins = cell["type"], cell.get("connections", {})
        if kind == "SB_LUT4":
            count.luts += 1
            lut_inputs.add((tuple(pins.get("I1", ())), tuple(pins.get("I2", ()))))
            count.luts_by_block[_block_of(names.get(pins["O"][0], name))] += 1
    for name, cell in cells.items():
        kind, pins = cell["type"], cell.get("connections", {})
        if kind.startswith(_FF_PREFIX):
            count.flip_flops += 1
            d = pins["D"][0]
            source = driver.get(d)
            if (source is not None and cells[source[0]]["type"] == "SB_LUT4"
                    and sinks[d] == 1):
                count.ff_with_lut += 1
                continue
            count.ff_alone += 1
            register = names.get(pins["Q"][0], name)
            count.lone_registers[register] += 1
            count.lone_by_block[_block_of(register)] += 1
        elif kind == "SB_CARRY":
            count.carries += 1
            if (tuple(pins.get("I0", ())), tuple(pins.get("I1", ()))) not in lut_inputs:
                count.carry_alone += 1
    return count


def predicted_cells(path):
    """The logic cells nextpnr-ice40 will need for the netlist at `path` (a JSON file)."""
    return count_cells(json.loads(Path(path).read_text())).cells


def render(count, registers=20, capacity=None):
    lines = [f"logic cells: {count.cells}"
             + (f" of {capacity} ({100 * count.cells / capacity:.0f} %)" if capacity else ""),
             f"  LUT4 {count.luts} ({count.ff_with_lut} with their flip-flop), "
             f"flip-flops alone {count.ff_alone} (of {count.flip_flops}), "
             f"carries alone {count.carry_alone} (of {count.carries}), "
             f"constant drivers {count.constant_drivers}; carry-chain legalisation is not "
             "counted", "",
             "| block | LUT4 | flip-flops alone |", "|---|---|---|"]
    blocks = sorted(set(count.luts_by_block) | set(count.lone_by_block),
                    key=lambda b: -(count.luts_by_block[b] + count.lone_by_block[b]))
    lines += [f"| `{b}` | {count.luts_by_block[b]} | {count.lone_by_block[b]} |" for b in blocks]
    lines += ["", f"Registers with the most flip-flops alone (top {registers}):", "",
              "| register | flip-flops alone |", "|---|---|"]
    lines += [f"| `{r}` | {n} |" for r, n in count.lone_registers.most_common(registers)]
    return "\n".join(lines) + "\n"


def _synthesized_netlist(args, root):
    """Synthesize the accelerator for `args.model` on the UP5K (as `python -m dqt_hw.build
    --model` does), or with `args.board` that board's whole top; return the parsed netlist."""
    from types import SimpleNamespace
    from ..boards.catalog import check_board
    from ..package import load_package
    from .accelerator import accelerator_config, data_memory_for
    from .flow import _write_rtlil, synthesize
    from .targets import TARGETS
    board = check_board(args.board) if args.board else None
    if board and board.family != "ice40":
        raise ValueError(f"`--board` {args.board} is not an iCE40 board")
    graph, _ = load_package(args.model)
    what = f"the {args.board} top" if board else "the iCE40 accelerator"
    print(f"synthesizing {what} for {args.model} (about a minute)", file=sys.stderr, flush=True)
    if board:
        from ..boards.top import board_design
        from .board import prepare_top, synthesize_top
        prepare_top(board, board_design(board, graph, cols=args.cols), root)
        synthesize_top(board, root)
        return json.loads((root / "top.json").read_text())
    from ..hdl.accelerator import Accelerator
    target = TARGETS["ice40-up5k"]
    config, _ = accelerator_config(SimpleNamespace(cols=args.cols or 1, model=args.model),
                                   target, graph)
    source = _write_rtlil(Accelerator(config, data_memory=data_memory_for(target)),
                          "accelerator", root)
    synthesize(source, "accelerator", target, root, dsp=True, netlist=True)
    return json.loads((root / "synth" / "accelerator.json").read_text())


def _parse(argv):
    parser = argparse.ArgumentParser(
        prog="python -m dqt_hw.build.cells",
        description="Predict nextpnr-ice40's logic-cell count from a flattened `synth_ice40 "
                    "-json` netlist (LUT4s + flip-flops that cannot share a LUT's cell + "
                    "carries without their LUT + constant drivers) and name the registers that "
                    "cost a cell per bit. With --model, synthesize the netlist first.",
        epilog="Examples: python -m dqt_hw.build.cells build/up5k/synth/accelerator.json; "
               "python -m dqt_hw.build.cells --model PKG --board icebreaker")
    parser.add_argument("netlist", type=Path, nargs="?",
                        help="Yosys JSON netlist (synth_ice40 -json); or give --model")
    parser.add_argument("--model", type=Path, default=None,
                        help="an exported package: synthesize its iCE40 accelerator (the one "
                             "`python -m dqt_hw.build --model PKG --target ice40-up5k` builds)")
    parser.add_argument("--board", default=None,
                        help="with --model: synthesize this iCE40 board's whole top instead "
                             "(e.g. icebreaker)")
    parser.add_argument("--cols", type=int, default=None,
                        help="with --model: array columns (default 1, or the board's)")
    parser.add_argument("--top", default=None,
                        help="top module (default: the one the netlist marks as top)")
    parser.add_argument("--registers", type=int, default=20,
                        help="registers to list (default 20)")
    parser.add_argument("--capacity", type=int, default=5280,
                        help="logic cells of the device, for the percentage (default 5280, "
                             "the UP5K)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    if (args.netlist is None) == (args.model is None):
        raise ValueError("give either a netlist or --model PKG")
    if args.model is None and (args.board or args.cols is not None):
        raise ValueError("`--board` and `--cols` go with --model")
    for name in ("registers", "capacity", "cols"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"`--{name}` must be a positive integer, not {value}")
    return args


def main(argv=None):
    from .. import toolchain
    try:
        args = _parse(sys.argv[1:] if argv is None else list(argv))
        if args.model is not None:
            started = time.monotonic()
            with tempfile.TemporaryDirectory(prefix="dqt-cells-") as tmp:
                netlist = _synthesized_netlist(args, Path(tmp))
            print(f"synthesized in {time.monotonic() - started:.0f} s", file=sys.stderr)
        else:
            if not args.netlist.is_file():
                raise ValueError(f"{args.netlist}: no such file")
            try:
                netlist = json.loads(args.netlist.read_text())
            except json.JSONDecodeError as error:
                raise ValueError(f"{args.netlist} is not JSON: {error.msg} at line "
                                 f"{error.lineno}") from None
        count = count_cells(netlist, args.top)
    except (ValueError, OSError, toolchain.ToolError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(count.as_dict(args.registers), indent=1))
    else:
        print(render(count, args.registers, args.capacity), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
