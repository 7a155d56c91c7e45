"""cocotb testbench of the requantizer (rtl/requantizer.v) against `dqt_hw.golden.requantize`.

Every accumulator travels with its own constants (M, r, bias) and its own `bits` (sampled with
the accepted word), so each word is a one-channel layer at a random bit-width:
out = clip(round_shift(((acc << 2(n - b)) + bias) * M, r), lo, hi).

Stimulus mixes realistic constants (M, r from `golden.quantize_multiplier` of a random ratio,
accumulators inside the b-bit K-term range) with uniform draws over the full port ranges and
the corner values (largest accumulators, M = 0, r = 0, the extreme biases).
One operation = one output code compared with the golden model.
"""

import cocotb
import numpy as np

from dqt_hw import golden
from dqt_tb import Scoreboard, TestbenchEnv
from dqt_tb.bench import stream_exchange
from dqt_tb.packing import pack, port_shape, unpack

#: Accumulators requantized in the full regression.
FULL_OPERATIONS = 150_000
#: Words per stream exchange (bounds the memory of one batch).
BATCH = 25_000


def _stimulus(rng, design, count):
    """(fields of the input words, b per word) for `count` random words."""
    n, terms = design.master_bits, design.max_terms
    bits = rng.integers(golden.MIN_BITS, n + 1, count)
    # |acc| of a K-term b-bit dot product: K (2^b - 1)(2^(b-1) - 1); shifted left by
    # 2(n - b) it stays below 2^(A-1) (the requantizer's input contract).
    limit = terms * ((1 << bits) - 1) * ((1 << (bits - 1)) - 1)
    # 0, 1: realistic (mostly positive, so the output lands inside the code range and the
    # rounding is exercised); 2: uniform over the port ranges; 3: corners.
    kind = rng.choice(4, count, p=[0.35, 0.35, 0.15, 0.15])
    acc = np.round(rng.uniform(-1, 1, count) * limit).astype(np.int64)
    realistic = kind <= 1
    acc[realistic] = np.abs(acc[realistic]) * rng.choice(np.array([-1, 1, 1, 1]), realistic.sum())
    small = kind == 0                          # typical accumulators are far below the limit
    acc[small] = np.round(acc[small] * 2.0 ** -rng.integers(0, 16, small.sum())).astype(np.int64)
    corner = kind == 3
    acc[corner] = rng.choice(np.array([-1, 0, 1]), corner.sum()) * limit[corner]

    bias_limit = 1 << (design.acc_width - 1)
    bias = np.round(rng.normal(0, 1, count) * limit * 2.0 ** (2 * (n - bits)) / 8)
    bias = np.clip(bias, -bias_limit, bias_limit - 1).astype(np.int64)

    # Realistic constants put the output inside the code range: ratio ~ target / |scaled|.
    scaled = np.abs((acc << (2 * (n - bits))) + bias).astype(np.float64)
    ratios = rng.uniform(0.1, 1.2 * design.hi, count) / np.maximum(scaled, 1.0)
    constants = np.array([golden.quantize_multiplier(r, multiplier_bits=design.multiplier_bits)
                          for r in ratios.tolist()])
    multiplier, shift = constants[:, 0].copy(), constants[:, 1].copy()
    uniform = kind >= 2
    multiplier[uniform] = rng.integers(0, 1 << design.multiplier_bits, uniform.sum())
    shift_limit = 1 << port_shape(design, "input", "payload")["shift"].width
    shift[uniform] = rng.integers(0, shift_limit, uniform.sum())
    multiplier[corner & (rng.random(count) < 0.2)] = 0
    shift = np.clip(shift, 0, shift_limit - 1)
    bias[uniform] = rng.integers(-bias_limit, bias_limit, uniform.sum())
    bias[corner] = rng.choice(np.array([-bias_limit, 0, bias_limit - 1]), corner.sum())
    return {"acc": acc, "multiplier": multiplier, "shift": shift, "bias": bias}, bits


def _golden(fields, bits, design):
    """golden.requantize with each word as its own channel (axis 1)."""
    return golden.requantize(fields["acc"][None, :], multiplier=fields["multiplier"],
                             shift=fields["shift"], bias=fields["bias"],
                             acc_shift=2 * (design.master_bits - bits),
                             lo=design.lo, hi=design.hi)[0]


@cocotb.test()
async def random_words(dut):
    """Random accumulators, constants and bit-widths under random stalls on both streams."""
    env = TestbenchEnv(dut, "random_words")
    design = env.design
    await env.start_clock()
    layout = port_shape(design, "input", "payload")
    output_layout = port_shape(design, "output", "payload")
    scoreboard = Scoreboard(env.block, env.log)
    total = env.budget(FULL_OPERATIONS, minimum=500)
    for start in range(0, total, BATCH):
        count = min(BATCH, total - start)
        fields, bits = _stimulus(env.rng, design, count)
        scoreboard.expect(_golden(fields, bits, design), dict(fields, bits=bits))
        words = await stream_exchange(env, source="input", sink="output",
                                      words=pack(layout, fields),
                                      sidebands=[(b,) for b in bits.tolist()],
                                      sideband_ports=("bits",), expected_outputs=count)
        scoreboard.check(unpack(output_layout, words))
    env.report(scoreboard)
