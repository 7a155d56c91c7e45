"""cocotb testbench of the residual adder (rtl/residual_adder.v) against `dqt_hw.golden.add`.

out = clip(round_shift(k1 (q1 << s1) + k2 (q2 << s2) + k3, shift), lo, hi). The constants
k1, k2, k3, shift, s1 = in_shift1 and s2 = in_shift2 are plain ports sampled with each
accepted pair, so every pair carries its own random constants (as sideband values).

Stimulus mixes realistic joins (operands nested to b bits with s = n - b, k1 and k2 from
`golden.quantize_multiplier` of scale ratios near 1) with uniform draws over every port's
full range. One operation = one output code compared with the golden model.
"""

import cocotb
import numpy as np

from dqt_hw import golden
from dqt_tb import Scoreboard, TestbenchEnv
from dqt_tb.bench import stream_exchange
from dqt_tb.packing import pack, port_shape, unpack

#: Operand pairs joined in the full regression.
FULL_OPERATIONS = 150_000
#: Words per stream exchange (bounds the memory of one batch).
BATCH = 25_000
#: The plain ports sampled with each pair, in the order of the sideband tuples.
CONSTANT_PORTS = ("k1", "k2", "k3", "shift", "in_shift1", "in_shift2")


def _port_range(design, name):
    """[lo, hi] of a plain input port, from the component's signature."""
    from amaranth.hdl import Shape
    shape = design.signature.members[name].shape
    if isinstance(shape, range):
        return shape.start, shape.stop - 1
    shape = Shape.cast(shape)
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


def _stimulus(rng, design, count):
    n = design.master_bits
    code_lo, code_hi = golden.code_range(n, signed=design.signed)
    ranges = {name: _port_range(design, name) for name in CONSTANT_PORTS}
    uniform = rng.random(count) < 0.3
    constants = {name: rng.integers(lo, hi + 1, count) for name, (lo, hi) in ranges.items()}
    q = {}
    for operand, in_shift in (("q1", "in_shift1"), ("q2", "in_shift2")):
        master = rng.integers(code_lo, code_hi + 1, count)
        # Realistic: a b-bit nested code with s = n - b (b >= MIN_BITS, so s <= n - 2).
        bits = rng.integers(golden.MIN_BITS, n + 1, count)
        nested = np.empty(count, dtype=np.int64)
        for b in range(golden.MIN_BITS, n + 1):
            chosen = bits == b
            nested[chosen] = golden.nest(master[chosen], master_bits=n, bits=b,
                                         signed=design.signed)
        q[operand] = np.where(uniform, master, nested)
        constants[in_shift] = np.where(uniform, constants[in_shift], n - bits)
    # Realistic constants: k / 2^shift ~ a scale ratio in [1/4, 4] for both terms (one shift
    # serves both), k3 a small offset.
    realistic = ~uniform
    ratios = 2.0 ** rng.uniform(-2, 2, (2, realistic.sum()))
    pairs = [golden.quantize_multiplier(r, multiplier_bits=design.constant_bits - 2)
             for r in ratios[0].tolist()]
    shift = np.array([r for _, r in pairs], dtype=np.int64)
    k_lo, k_hi = ranges["k2"]
    constants["k1"][realistic] = [m for m, _ in pairs]
    constants["k2"][realistic] = np.clip(np.round(ratios[1] * 2.0 ** shift), k_lo, k_hi)
    constants["shift"][realistic] = shift
    constants["k3"][realistic] = rng.integers(-(1 << 20), 1 << 20, realistic.sum())
    return q, constants


def _golden(q, constants, design):
    """golden.add per pair (its k-constants are scalars)."""
    expected = np.empty(len(q["q1"]), dtype=np.int64)
    for index in range(len(expected)):
        expected[index] = golden.add(
            q["q1"][index:index + 1], q["q2"][index:index + 1],
            k1=int(constants["k1"][index]), k2=int(constants["k2"][index]),
            k3=int(constants["k3"][index]), shift=int(constants["shift"][index]),
            in_shift1=int(constants["in_shift1"][index]),
            in_shift2=int(constants["in_shift2"][index]), lo=design.lo, hi=design.hi)[0]
    return expected


@cocotb.test()
async def random_pairs(dut):
    """Random operand pairs, each with its own constants, under random stalls."""
    env = TestbenchEnv(dut, "random_pairs")
    design = env.design
    await env.start_clock()
    layout = port_shape(design, "input", "payload")
    output_layout = port_shape(design, "output", "payload")
    scoreboard = Scoreboard(env.block, env.log)
    total = env.budget(FULL_OPERATIONS, minimum=500)
    for start in range(0, total, BATCH):
        count = min(BATCH, total - start)
        q, constants = _stimulus(env.rng, design, count)
        scoreboard.expect(_golden(q, constants, design), dict(q, **constants))
        sidebands = np.stack([constants[name] for name in CONSTANT_PORTS], axis=1).tolist()
        words = await stream_exchange(env, source="input", sink="output",
                                      words=pack(layout, q), sidebands=sidebands,
                                      sideband_ports=CONSTANT_PORTS, expected_outputs=count)
        scoreboard.check(unpack(output_layout, words))
    env.report(scoreboard)
