"""cocotb testbench of the dequantize/requantize unit (rtl/dequant_requant_{unsigned,signed}.v).

The unit is the conventional float32 switch: clip(rint(float32(q) * scale), b-bit range). The
golden model has no float path, so the checker is the block's NumPy float32 emulation
`dqt_hw.hdl.dequant_requant.dequant_requant_reference` (IEEE float32 multiply, round half to
even, clip to `golden.code_range`). `bits` and `scale` (a float32 bit pattern) are sampled with
each accepted code, so every code carries its own.

Scales mix realistic ratios (2^u, u in [-10, 10]), exact ties (q * scale = k + 1/2), powers of
two, negative scales, subnormals and huge values, and uniform bit patterns (every finite
float32: the unit does not support NaN or infinite scales). One operation = one output code.
"""

import cocotb
import numpy as np

from dqt_hw import golden
from dqt_hw.hdl.dequant_requant import dequant_requant_reference, float32_bits
from dqt_tb import Scoreboard, TestbenchEnv
from dqt_tb.bench import stream_exchange
from dqt_tb.packing import pack, port_shape, unpack

#: Codes converted in the full regression.
FULL_OPERATIONS = 150_000
#: Words per stream exchange (bounds the memory of one batch).
BATCH = 25_000


def _scales(rng, count):
    """float32 scales as bit patterns (uint32 as int64)."""
    kind = rng.integers(0, 5, count)
    values = (2.0 ** rng.uniform(-10, 10, count)).astype(np.float32)
    ties = kind == 1                               # halves and quarters: q * scale hits k + 1/2
    values[ties] = rng.choice(np.array([0.5, 1.5, 2.5, 0.25, 0.75, 0.125], np.float32),
                              ties.sum())
    powers = kind == 2
    values[powers] = (2.0 ** rng.integers(-30, 30, powers.sum())).astype(np.float32)
    values *= np.where(rng.random(count) < 0.2, -1, 1).astype(np.float32)
    patterns = values.view(np.uint32).astype(np.int64)
    uniform = kind == 3
    patterns[uniform] = rng.integers(0, 1 << 32, uniform.sum())
    extreme = kind == 4                            # subnormal, smallest normal, largest finite
    specials = np.array([float32_bits(v) for v in
                         (1e-45, 1e-40, 1.1754944e-38, 3.4028235e38, -3.4028235e38, 0.0, -0.0)])
    patterns[extreme] = rng.choice(specials, extreme.sum())
    # Exponent 255 (NaN, infinity) is outside the unit's contract: make it 254.
    exponent = (patterns >> 23) & 0xFF
    patterns = np.where(exponent == 0xFF, patterns - (1 << 23), patterns)
    return patterns


def _golden(codes, bits, scales, design):
    expected = np.empty(len(codes), dtype=np.int64)
    floats = scales.astype(np.uint32).view(np.float32)
    for index in range(len(codes)):
        expected[index] = dequant_requant_reference(
            codes[index:index + 1], scale=floats[index], bits=int(bits[index]),
            signed=design.signed)[0]
    return expected


@cocotb.test()
async def random_codes(dut):
    """Random codes, output widths and float32 scales under random stalls."""
    env = TestbenchEnv(dut, "random_codes")
    design = env.design
    await env.start_clock()
    layout = port_shape(design, "input", "payload")
    output_layout = port_shape(design, "output", "payload")
    lo, hi = golden.code_range(design.master_bits, signed=design.signed)
    scoreboard = Scoreboard(env.block, env.log)
    total = env.budget(FULL_OPERATIONS, minimum=500)
    for start in range(0, total, BATCH):
        count = min(BATCH, total - start)
        codes = env.rng.integers(lo, hi + 1, count)
        bits = env.rng.integers(golden.MIN_BITS, design.master_bits + 1, count)
        scales = _scales(env.rng, count)
        scoreboard.expect(_golden(codes, bits, scales, design),
                          {"code": codes, "bits": bits, "scale_bits": scales})
        words = await stream_exchange(env, source="input", sink="output",
                                      words=pack(layout, codes),
                                      sidebands=np.stack([bits, scales], axis=1).tolist(),
                                      sideband_ports=("bits", "scale"), expected_outputs=count)
        scoreboard.check(unpack(output_layout, words))
    env.report(scoreboard)
