# amaranth: UnusedElaboratable=no
"""python -m dqt_hw.build --board: an iCEBreaker bitstream of a small digits model end to end
(YoWASP Yosys, nextpnr-ice40, icepack), and the refusals and bad-input messages."""

import json
import re

import pytest

from dqt_hw import toolchain
from dqt_hw.build import board as board_build
from dqt_hw.build.__main__ import main

from board_package import small_digits_package


def _need(*tools):
    for tool in tools:
        try:
            toolchain.find_tool(tool)
        except toolchain.ToolMissing as missing:
            pytest.skip(str(missing))


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    pytest.importorskip("torch")
    return small_digits_package(tmp_path_factory)[0]


def test_icebreaker_bitstream_of_a_small_digits_model(package, tmp_path, capsys):
    _need("yosys", "nextpnr-ice40", "icepack")
    out = tmp_path / "icebreaker"
    argv = ["--board", "icebreaker", "--model", str(package), "--out", str(out)]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 0, err
    bitstream = out / "top.bin"
    assert bitstream.is_file() and bitstream.stat().st_size > 100_000   # a UP5K image: 104 kB
    report = json.loads((out / "report.json").read_text())
    assert report["command"] == "python -m dqt_hw.build " + " ".join(argv)
    pr = report["place_route"]
    assert pr["timing_met"] and pr["fmax_mhz"]["max"] >= pr["design_mhz"] == 12.0
    assert pr["utilization"]["ICESTORM_LC"]["used"] <= 5280
    info = json.loads((out / "board.json").read_text())
    assert info["board"] == "icebreaker" and info["bitstream"] == "top.bin"
    assert info["config"]["cols"] == 1 and info["baud"] == 1_000_000
    text = (out / "report.md").read_text()
    assert "Timing met" in text and "UART link per image" in text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_top_over_the_device_is_refused_after_synthesis(package, tmp_path, capsys,
                                                          monkeypatch):
    # As if the netlist needed 6000 iCE40 logic cells: one line with the amounts, before place
    # and route, and nothing left behind.
    _need("yosys")
    monkeypatch.setattr(board_build, "predicted_cells", lambda netlist: 6000)
    out = tmp_path / "icebreaker"
    assert main(["--board", "icebreaker", "--model", str(package), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]                # after the progress lines
    assert re.fullmatch(r"error: the model does not fit the icebreaker: LC 6000 > 5280 "
                        r"\(by 720\) \(1x1 array, .*; a smaller model or a larger board\)",
                        last), err
    assert err.count("error:") == 1 and "nextpnr" not in err and not out.exists()
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv,message", [
    (["--board", "arty", "--model", "."],
     "error: `--board` must be one of icebreaker, ulx3s-85f, ulx3s-25f, not 'arty'"),
    (["--board", "icebreaker", "--model", "/nonexistent"],
     "error: `--model` /nonexistent is not a package folder"),
    (["--board", "icebreaker", "--model", ".", "--seeds", "0"],
     "error: `--seeds` must be an integer between 1 and 20, not 0"),
])
def test_bad_board_arguments_are_one_line_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_memories_larger_than_the_device_are_refused_before_synthesis():
    from dqt_hw.accel.config import AcceleratorConfig
    from dqt_hw.boards.catalog import BOARDS
    from dqt_hw.build.board import memory_fit_error
    assert memory_fit_error(BOARDS["icebreaker"], AcceleratorConfig(data_words=4096)) is None
    message = memory_fit_error(BOARDS["icebreaker"], AcceleratorConfig(data_words=1 << 15))
    assert message == ("the model does not fit the icebreaker: its memories need 2181120 bits "
                       "of RAM, the ice40-up5k has 1171456")


def test_an_8_bit_only_model_gets_an_8_bit_only_accelerator_that_elaborates():
    # A static 8-bit package needs no nesting lanes beyond a b = 8 beat's four codes.
    from amaranth.back import rtlil
    from dqt_hw.accel.sizing import fitted_config
    from dqt_hw.hdl.accelerator import Accelerator
    from test_export_package import random_graph
    graph = random_graph(2, dynamic=False)
    graph = dict(graph, ops=[dict(op, bits=8) if op["op"] in ("conv2d", "linear") else op
                             for op in graph["ops"]])
    config, model = fitted_config(graph, cols=2)
    assert config.supported_bits == (8,)
    accelerator = Accelerator(config, program=model.program, data=model.data,
                              table=model.table)
    assert "module" in rtlil.convert(accelerator, name="accelerator")


@pytest.mark.parametrize("board", ["icebreaker", "ulx3s-85f"])
def test_every_board_top_prepares_with_pins_pll_and_constraints(board):
    # The platform's own preparation (pins, PLL, constraints), warnings as errors.
    from types import SimpleNamespace
    from dqt_hw.boards.catalog import BOARDS
    from dqt_hw.boards.top import board_design
    from dqt_hw.build.accelerator import accelerator_config
    from dqt_hw.build.targets import TARGETS
    from dqt_hw.hdl.data_memory import ICE40SPRAMDataMemory
    from test_export_package import random_graph
    spec, graph = BOARDS[board], random_graph(4, dynamic=True)
    design = board_design(spec, graph)
    # One sizing for `--board` and `--model`: the iCEBreaker's accelerator is the one whose
    # area `python -m dqt_hw.build --model PKG --target ice40-up5k` reports.
    built, _ = accelerator_config(SimpleNamespace(cols=spec.cols, model="pkg"),
                                  TARGETS[spec.target], graph)
    assert design.config == built
    if board == "icebreaker":
        assert (built.pool_lanes, built.dsp_wide, built.fetch_queue, built.fetch_groups,
                built.fetch_bypass, built.data_words) == (1, True, 2, 1, False,
                                                          ICE40SPRAMDataMemory.DEPTH)
    plan = spec.platform().prepare(design.top, name="top")
    rtlil = plan.files["top.il"]
    constraints = plan.files["top.pcf" if board == "icebreaker" else "top.lpf"]
    if board == "icebreaker":
        assert "SB_GB_IO" in rtlil and "SB_SPRAM256KA" in rtlil
        assert "set_io uart_0__rx__io 6" in constraints and "set_io led_g_0__io 37" in constraints
    else:
        assert "EHXPLLL" in rtlil and "CLKOP_DIV" in rtlil
        assert 'LOCATE COMP "uart_0__tx__io" SITE "L4"' in constraints

