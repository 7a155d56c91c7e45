"""cocotb testbench of the MAC arrays (rtl/mac_array.v: Bit Fusion PEs,
rtl/mac_array_fixed.v: fixed n x n MACs) against the golden model.

Each dot product runs at its own random bit-width b (the `bits` port changes only between dot
products, as the array's contract asks): random master codes x (rows x K, unsigned) and w
(cols x K, signed narrow range) are cut into beats of `products_per_beat(b)` lanes; the array
nests them itself, so the expected accumulators are
golden.linear(golden.nest(x, b, unsigned), golden.nest(w, b, signed)).
Lanes beyond products_per_beat(b) carry random junk (the array must ignore them); the tail
of the last beat is padded with activation code 0 (with a zero or a random weight: code 0 is
exact at every b). `extreme_dot_products` runs K = max_terms products of the largest codes
at the narrowest and the widest b, the accumulator's worst case (shorter in quick runs).

One operation = one accumulator compared with the golden model; the report also counts the
multiply-accumulates (MACs) behind them.
"""

import cocotb
import numpy as np

from dqt_hw import golden
from dqt_tb import Scoreboard, TestbenchEnv
from dqt_tb.bench import stream_exchange
from dqt_tb.packing import pack, port_shape, unpack

#: Dot products in the full regression's random test (~36 cycles each with stalls).
FULL_DOT_PRODUCTS = 6_000
#: Share of the random dot products run under Icarus, by `scalable`: Icarus interprets the
#: Bit Fusion array's wide fusion logic at ~100 cycles/s here (Verilator: ~3000).
ICARUS_FACTOR = {True: 0.02, False: 0.2}
#: Dot products per stream exchange.
BATCH = 2_000
#: Length of the extreme dot products in quick runs (the full run uses max_terms).
QUICK_EXTREME_TERMS = 256


def _beats(rng, design, x, w, bits):
    """Operand beats of one dot product: dict of (beats, rows|cols, lanes) arrays + last."""
    n, lanes = design.master_bits, design.lanes
    per_beat = design.products_per_beat(bits)
    terms = x.shape[1]
    beats = -(-terms // per_beat)
    padded = beats * per_beat
    a_lo, a_hi = golden.code_range(n, signed=False)
    w_lo, w_hi = golden.code_range(n, signed=True)
    # Random junk everywhere first (lanes >= per_beat keep it), then the real operands.
    activations = rng.integers(a_lo, a_hi + 1, (beats, design.rows, lanes))
    weights = rng.integers(w_lo, w_hi + 1, (beats, design.cols, lanes))
    x_padded = np.zeros((design.rows, padded), dtype=np.int64)
    x_padded[:, :terms] = x
    w_padded = np.zeros((design.cols, padded), dtype=np.int64)
    w_padded[:, :terms] = w
    if rng.random() < 0.5:                    # a random weight against activation 0
        w_padded[:, terms:] = rng.integers(w_lo, w_hi + 1, (design.cols, padded - terms))
    activations[:, :, :per_beat] = x_padded.reshape(design.rows, beats, per_beat).transpose(1, 0, 2)
    weights[:, :, :per_beat] = w_padded.reshape(design.cols, beats, per_beat).transpose(1, 0, 2)
    last = np.zeros(beats, dtype=np.int64)
    last[-1] = 1
    return {"activations": activations, "weights": weights, "last": last}


def _expected(design, x, w, bits):
    n = design.master_bits
    return golden.linear(golden.nest(x, master_bits=n, bits=bits, signed=False),
                         golden.nest(w, master_bits=n, bits=bits, signed=True))


async def _run_dot_products(env, scoreboard, problems, stalls=True):
    """Stream the dot products `problems` [(x, w, b)], compare, return the MAC count."""
    design = env.design
    layout = port_shape(design, "operands", "payload")
    results_layout = port_shape(design, "results", "payload")
    # `bits` is registered inside the array: drive it before the first beat is offered.
    env.dut.bits.value = problems[0][2]
    beats, sidebands, expected = [], [], []
    macs = 0
    for x, w, bits in problems:
        dot = _beats(env.rng, design, x, w, bits)
        beats.append(dot)
        sidebands += [(bits,)] * len(dot["last"])
        expected.append(_expected(design, x, w, bits))
        macs += design.rows * design.cols * x.shape[1]
    fields = {key: np.concatenate([dot[key] for dot in beats]) for key in beats[0]}
    expected = np.stack(expected)
    # Per accumulator: the b and the length K of its dot product, for a mismatch report.
    shape = expected.shape
    scoreboard.expect(expected, {
        "bits": np.broadcast_to(np.array([b for _, _, b in problems])[:, None, None], shape),
        "terms": np.broadcast_to(np.array([x.shape[1] for x, _, _ in problems])[:, None, None],
                                 shape)})
    words = await stream_exchange(env, source="operands", sink="results",
                                  words=pack(layout, fields), sidebands=sidebands,
                                  sideband_ports=("bits",), junk_sideband=False,
                                  expected_outputs=len(problems), stalls=stalls)
    scoreboard.check(unpack(results_layout, words))
    return macs


def _random_problem(rng, design):
    n = design.master_bits
    bits = int(rng.choice(design.supported_bits))
    # Mostly short dot products (many results per cycle), sometimes long ones.
    terms = int(rng.integers(1, 49)) if rng.random() < 0.9 else int(rng.integers(49, 400))
    a_lo, a_hi = golden.code_range(n, signed=False)
    w_lo, w_hi = golden.code_range(n, signed=True)
    x = rng.integers(a_lo, a_hi + 1, (design.rows, terms))
    w = rng.integers(w_lo, w_hi + 1, (design.cols, terms))
    return x, w, bits


@cocotb.test()
async def random_dot_products(dut):
    """Random lengths, codes and bit-widths, back to back, under random stalls."""
    env = TestbenchEnv(dut, "random_dot_products")
    await env.start_clock()
    scoreboard = Scoreboard(env.block, env.log)
    total = env.budget(FULL_DOT_PRODUCTS, minimum=50,
                       icarus=ICARUS_FACTOR[env.design.scalable])
    macs = 0
    for start in range(0, total, BATCH):
        problems = [_random_problem(env.rng, env.design)
                    for _ in range(min(BATCH, total - start))]
        macs += await _run_dot_products(env, scoreboard, problems)
    env.report(scoreboard, macs=macs)


@cocotb.test()
async def extreme_dot_products(dut):
    """K = max_terms products of the largest codes at the narrowest and widest b: the
    accumulator's worst case (largest positive and negative sums). Quick runs (scale < 1) use
    K = QUICK_EXTREME_TERMS."""
    env = TestbenchEnv(dut, "extreme_dot_products")
    design = env.design
    await env.start_clock()
    scoreboard = Scoreboard(env.block, env.log)
    n = design.master_bits
    terms = design.max_terms if env.scale == 1 else min(design.max_terms, QUICK_EXTREME_TERMS)
    _, a_hi = golden.code_range(n, signed=False)
    w_lo, w_hi = golden.code_range(n, signed=True)
    problems = []
    for bits in sorted({min(design.supported_bits), max(design.supported_bits)}):
        x = np.full((design.rows, terms), a_hi)
        # Even columns get the largest positive weight, odd ones the most negative.
        w = np.where(np.arange(design.cols)[:, None] % 2 == 0, w_hi, w_lo) * np.ones(terms, int)
        problems.append((x, w, bits))
    # Full rate: thousands of beats whose point is the sum, not the handshake.
    macs = await _run_dot_products(env, scoreboard, problems, stalls=False)
    env.report(scoreboard, macs=macs, terms=terms)
