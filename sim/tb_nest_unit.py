"""cocotb testbench of the nest unit (rtl/nest_unit_{unsigned,signed}.v) against
`dqt_hw.golden.nest`.

The nest unit is combinational (latency 0, no clock): the bench applies (master, bits), lets
the logic settle for one time step and reads `nested`. `exhaustive` covers every master code at
every b in [2, n]; `random_codes` applies random (code, b) pairs back to back, so each check
starts from the previous input (the transitions a table-driven sweep never makes).
One operation = one nested code compared with the golden model.
"""

import cocotb
import numpy as np
from cocotb.triggers import Timer

from dqt_hw import golden
from dqt_tb import Scoreboard, TestbenchEnv

#: Random (code, b) pairs in the full regression.
FULL_RANDOM_OPERATIONS = 300_000


def _golden_nested(codes, bits, design):
    """golden.nest of each (code, b) pair; b varies per element, so one call per b."""
    expected = np.empty_like(codes)
    for b in np.unique(bits).tolist():
        chosen = bits == b
        expected[chosen] = golden.nest(codes[chosen], master_bits=design.master_bits,
                                       bits=b, signed=design.signed)
    return expected


async def _apply(dut, codes, bits, design):
    """Drive each pair, wait a time step, read `nested` (two's complement when signed)."""
    mask = (1 << design.master_bits) - 1
    nested = np.empty(len(codes), dtype=np.int64)
    settle = Timer(1, unit="ns")
    for index, (code, b) in enumerate(zip(codes.tolist(), bits.tolist())):
        dut.master.value = code & mask
        dut.bits.value = b
        await settle
        value = dut.nested.value
        nested[index] = value.to_signed() if design.signed else value.to_unsigned()
    return nested


def _codes(rng, design, count):
    lo, hi = golden.code_range(design.master_bits, signed=design.signed)
    return rng.integers(lo, hi + 1, count)


@cocotb.test()
async def exhaustive(dut):
    """Every master code of the range at every b in [MIN_BITS, n]."""
    env = TestbenchEnv(dut, "exhaustive")
    design = env.design
    lo, hi = golden.code_range(design.master_bits, signed=design.signed)
    widths = np.arange(golden.MIN_BITS, design.master_bits + 1)
    codes, bits = np.meshgrid(np.arange(lo, hi + 1), widths, indexing="ij")
    codes, bits = codes.ravel(), bits.ravel()
    scoreboard = Scoreboard(env.block, env.log)
    scoreboard.expect(_golden_nested(codes, bits, design), {"master": codes, "bits": bits})
    scoreboard.check(await _apply(dut, codes, bits, design))
    env.report(scoreboard, random=False)


@cocotb.test()
async def random_codes(dut):
    """Random (code, b) pairs, uniform over the code range and over b."""
    env = TestbenchEnv(dut, "random_codes")
    design = env.design
    count = env.budget(FULL_RANDOM_OPERATIONS, minimum=1000)
    scoreboard = Scoreboard(env.block, env.log)
    # Chunks keep a mismatch report short and the memory flat.
    for start in range(0, count, 10_000):
        size = min(10_000, count - start)
        codes = _codes(env.rng, design, size)
        bits = env.rng.integers(golden.MIN_BITS, design.master_bits + 1, size)
        scoreboard.expect(_golden_nested(codes, bits, design), {"master": codes, "bits": bits})
        scoreboard.check(await _apply(dut, codes, bits, design))
    env.report(scoreboard, random=True)
