"""The iCE40 logic-cell prediction (dqt_hw.build.cells): hand-made netlists for each packing
rule, and a small Amaranth design through Yosys and nextpnr, whose cell count it predicts."""

import json

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from dqt_hw import toolchain
from dqt_hw.build.cells import count_cells, main
from dqt_hw.build.flow import _write_rtlil, synthesize
from dqt_hw.build.targets import TARGETS, capacity_use


def _cell(kind, **pins):
    outputs = {"O", "Q", "CO"}
    return {"type": kind, "connections": {p: [b] for p, b in pins.items()},
            "port_directions": {p: "output" if p in outputs else "input" for p in pins}}


def _netlist(cells, netnames, outputs=()):
    ports = {"in": {"direction": "input", "bits": [2, 3, 4, 5]}}
    if outputs:
        ports["out"] = {"direction": "output", "bits": list(outputs)}
    return {"modules": {"top": {"attributes": {"top": "00000000000000000000000000000001"},
                                "ports": ports, "cells": cells,
                                "netnames": {name: {"hide_name": 0, "bits": bits}
                                             for name, bits in netnames.items()}}}}


def test_each_packing_rule():
    cells = {
        # a LUT driving only a flip-flop's D: one cell
        "lut_a": _cell("SB_LUT4", I0=2, I1=3, I2=4, I3=5, O=10),
        "ff_a": _cell("SB_DFF", C=2, D=10, Q=11),
        # a LUT driving a flip-flop and a top output: the flip-flop is alone
        "lut_b": _cell("SB_LUT4", I0=2, I1=3, I2="0", I3="0", O=12),
        "ff_b": _cell("SB_DFFE", C=2, E=3, D=12, Q=13),
        # flip-flops loaded straight from a port and from another flip-flop: alone
        "ff_c": _cell("SB_DFFESR", C=2, E=3, R=4, D=5, Q=14),
        "ff_d": _cell("SB_DFF", C=2, D=14, Q=15),
        # a carry whose I0/I1 are lut_a's I1/I2 packs with it; the other is alone
        "carry_a": _cell("SB_CARRY", I0=3, I1=4, CI="0", CO=16),
        "carry_b": _cell("SB_CARRY", I0=4, I1=5, CI=16, CO=17),
    }
    netlist = _netlist(cells, {"acc": [11], "shadow": [13], "held.$x": [14],
                               "held": [14, 15], "$auto$1": [15]}, outputs=(12, 17))
    count = count_cells(netlist)
    assert (count.luts, count.flip_flops, count.carries) == (2, 4, 2)
    assert (count.ff_with_lut, count.ff_alone, count.carry_alone) == (1, 3, 1)
    assert count.constant_drivers == 2          # constant 1 always, constant 0 used here
    assert count.cells == 2 + 3 + 1 + 2
    # Flip-flops alone are named by the most readable public name of their Q net.
    assert count.lone_registers == {"shadow": 1, "held": 2}


def test_bad_input_is_one_line(tmp_path, capsys):
    path = tmp_path / "n.json"
    path.write_text("{}")
    assert main([str(path)]) == 2
    assert capsys.readouterr().err == "error: not a Yosys JSON netlist: no modules\n"
    path.write_text("{")
    assert main([str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {path} is not JSON: ")
    assert main([str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing.json'}: no such file\n"
    with pytest.raises(ValueError, match="no module 'x' in the netlist"):
        count_cells(_netlist({}, {}), top="x")
    for argv, message in (([], "give either a netlist or --model PKG"),
                          ([str(path), "--model", "pkg"], "give either a netlist or --model PKG"),
                          ([str(path), "--board", "icebreaker"],
                           "`--board` and `--cols` go with --model"),
                          (["--model", "pkg", "--board", "ulx3s-85f"],
                           "`--board` ulx3s-85f is not an iCE40 board"),
                          (["--model", "pkg", "--cols", "0"],
                           "`--cols` must be a positive integer, not 0")):
        assert main(argv) == 2
        assert capsys.readouterr().err == f"error: {message}\n"


def test_model_synthesizes_the_ice40_accelerator(tmp_path, capsys):
    # The accelerator `python -m dqt_hw.build --model PKG --target ice40-up5k` builds.
    from test_cli_help import _write_tiny_package
    _write_tiny_package(tmp_path / "pkg")
    assert main(["--model", str(tmp_path / "pkg"), "--json"]) == 0
    captured = capsys.readouterr()
    count = json.loads(captured.out)
    assert count["cells"] == (count["luts"] + count["ff_alone"] + count["carry_alone"]
                              + count["constant_drivers"])
    assert count["ff_with_lut"] + count["ff_alone"] == count["flip_flops"] > 0
    assert captured.err.startswith("synthesizing the iCE40 accelerator for ")


class _Probe(wiring.Component):
    """A register loaded from a port (a cell per bit), a counter (its LUTs carry the
    flip-flops), and a register that copies the counter (alone again)."""
    load: In(1)
    value: In(8)
    held: Out(8)
    count: Out(8)
    copy: Out(8)

    def elaborate(self, platform):
        m = Module()
        with m.If(self.load):
            m.d.sync += self.held.eq(self.value)
        m.d.sync += [self.count.eq(self.count + self.value), self.copy.eq(self.count)]
        return m


def test_prediction_matches_nextpnr(tmp_path):
    target = TARGETS["ice40-up5k"]
    rtlil = _write_rtlil(_Probe(), "probe", tmp_path)
    synthesize(rtlil, "probe", target, tmp_path, dsp=False, netlist=True)
    count = count_cells(json.loads((tmp_path / "synth" / "probe.json").read_text()))
    assert count.lone_registers == {"held": 8, "copy": 8}
    assert count.ff_with_lut == 8
    toolchain.run_nextpnr("ice40", target.nextpnr_device, "synth/probe.json", tmp_path,
                          seed=1, freq_mhz=12)
    placed = toolchain.device_utilisation((tmp_path / "pnr.log").read_text())
    assert placed["ICESTORM_LC"][0] == count.cells


def test_logic_cells_count_against_an_ice40_only_when_predicted():
    up5k, ecp5 = TARGETS["ice40-up5k"], TARGETS["ecp5-85f"]
    resources = {"LUT4": 5000, "carry": 900, "FF": 3000, "DSP": 5, "BRAM": 19, "SPRAM": 4}
    assert "LC" not in capacity_use(up5k, resources)
    assert capacity_use(up5k, resources | {"LC": 7300})["LC"] == (7300, 5280)
    assert "LC" not in capacity_use(ecp5, resources | {"SPRAM": 0, "LC": 7300})
