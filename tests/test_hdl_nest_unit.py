# amaranth: UnusedElaboratable=no
"""NestUnit in the Amaranth simulator: exhaustive over every master code, every b and both
signednesses for every n <= 8, compared with dqt_hw.golden.nest by integer equality."""

import numpy as np
import pytest

from dqt_hw import golden
from dqt_hw.hdl import NestUnit
from dqt_hw.hdl.sim import simulate


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("master_bits", range(2, 9))
def test_nest_unit_exhaustive(master_bits, signed):
    dut = NestUnit(master_bits=master_bits, signed=signed)
    lo, hi = golden.code_range(master_bits, signed=signed)
    codes = np.arange(lo, hi + 1)
    mismatches = []

    async def testbench(ctx):
        for bits in range(golden.MIN_BITS, master_bits + 1):
            expected = golden.nest(codes, master_bits=master_bits, bits=bits, signed=signed)
            ctx.set(dut.bits, bits)
            for code, want in zip(codes.tolist(), expected.tolist()):
                ctx.set(dut.master, code)
                got = ctx.get(dut.nested)
                if got != want:
                    mismatches.append((bits, code, got, want))

    simulate(dut, testbench, clocked=False)
    assert mismatches == []
    assert dut.latency == 0


@pytest.mark.parametrize("supported_bits", [(2,), (2, 3, 4), (5, 8)])
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_nest_unit_restricted_widths(supported_bits, signed):
    """A nest unit built for some b (the MAC array's upper lanes): exact for those b, and the
    master code passes through for the others."""
    dut = NestUnit(master_bits=8, signed=signed, supported_bits=supported_bits)
    lo, hi = golden.code_range(8, signed=signed)
    codes = np.arange(lo, hi + 1)
    mismatches = []

    async def testbench(ctx):
        for bits in range(golden.MIN_BITS, 9):
            if bits in supported_bits:
                expected = golden.nest(codes, master_bits=8, bits=bits, signed=signed)
            else:
                expected = codes
            ctx.set(dut.bits, bits)
            for code, want in zip(codes.tolist(), expected.tolist()):
                ctx.set(dut.master, code)
                if ctx.get(dut.nested) != want:
                    mismatches.append((bits, code, ctx.get(dut.nested), want))

    simulate(dut, testbench, clocked=False)
    assert mismatches == []


def test_nest_unit_ports():
    dut = NestUnit(master_bits=8, signed=True)
    assert dut.master.shape().signed and len(dut.master) == 8
    assert dut.nested.shape().signed and len(dut.nested) == 8
    assert len(dut.bits) == 4


@pytest.mark.parametrize("kwargs, error, message", [
    ({"master_bits": 1, "signed": False}, ValueError,
     "`master_bits` must be between 2 and 16, not 1"),
    ({"master_bits": 8.0, "signed": False}, TypeError, "`master_bits` must be an integer"),
    ({"master_bits": 8, "signed": 1}, TypeError, "`signed` must be a bool, not 1"),
    ({"master_bits": 8, "signed": True, "supported_bits": (2, 9)}, ValueError,
     "`bits` must be at most `master_bits` (8), not 9"),
    ({"master_bits": 8, "signed": True, "supported_bits": []}, ValueError,
     "`supported_bits` must name at least one bit-width"),
])
def test_nest_unit_rejects(kwargs, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        NestUnit(**kwargs)
