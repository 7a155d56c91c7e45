"""cocotb testbench of the processing elements (rtl/pe_scalable.v: Bit Fusion,
rtl/pe_fixed.v: the fixed n x n MAC) against the golden model.

The PE takes operands already nested to b bits (the MAC array's nest units do that), so the
bench nests random master codes with `golden.nest` and puts them in the first
`products_per_cycle(b)` lanes (the other lanes get random junk, which the PE must ignore).
Each dot product runs at its own random b: its first beat has `clear`, and `enable` drops at
random between and within dot products (`clear` and the operands are junk then). Checked
against the golden model, by exact equality:

- `partial` `partial_latency` cycles after every enabled beat: golden.linear of that beat's
  lanes (one dot of products_per_cycle(b) terms);
- `acc` `latency` cycles after each dot product's last beat: golden.linear of the whole dot
  product; and on every idle cycle until the next dot product starts, `acc` must still hold it.

One operation = one checked `partial` or `acc`; the report also counts the products (MACs).
"""

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from dqt_hw import golden
from dqt_tb import Scoreboard, TestbenchEnv
from dqt_tb.packing import pack, port_shape

#: Dot products in the full regression (~36 cycles each with stalls).
FULL_DOT_PRODUCTS = 8_000
#: Share of them under Icarus (it interprets the PE's fusion logic at ~4000 cycles/s here,
#: Verilator's compiled model runs ~8000).
ICARUS_FACTOR = 0.5


def _dot_product(rng, design):
    """One random dot product: (bits, activation words, weight words, partials, acc, MACs)."""
    n, lanes = design.master_bits, design.lanes
    bits = int(rng.choice(design.supported_bits))
    per_cycle = design.products_per_cycle(bits)
    terms = int(rng.integers(1, 33)) if rng.random() < 0.9 else int(rng.integers(33, 300))
    beats = -(-terms // per_cycle)
    a_lo, a_hi = golden.code_range(n, signed=False)
    w_lo, w_hi = golden.code_range(n, signed=True)
    # Nested codes in the used lanes (code 0 pads the last beat), junk in the others.
    x = np.zeros(beats * per_cycle, dtype=np.int64)
    w = np.zeros(beats * per_cycle, dtype=np.int64)
    x[:terms] = golden.nest(rng.integers(a_lo, a_hi + 1, terms), master_bits=n, bits=bits,
                            signed=False)
    w[:terms] = golden.nest(rng.integers(w_lo, w_hi + 1, terms), master_bits=n, bits=bits,
                            signed=True)
    x, w = x.reshape(beats, per_cycle), w.reshape(beats, per_cycle)
    activations = rng.integers(a_lo, a_hi + 1, (beats, lanes))
    weights = rng.integers(w_lo, w_hi + 1, (beats, lanes))
    activations[:, :per_cycle], weights[:, :per_cycle] = x, w
    partials = np.diagonal(golden.linear(x, w)).copy()
    acc = int(golden.linear(x.reshape(1, -1), w.reshape(1, -1))[0, 0])
    return bits, activations, weights, partials, acc, terms


@cocotb.test()
async def random_dot_products(dut):
    """Random dot products at random b, with random idle cycles (enable low)."""
    env = TestbenchEnv(dut, "random_dot_products")
    design = env.design
    clock = await env.start_clock()
    activation_layout = port_shape(design, "activations")
    weight_layout = port_shape(design, "weights")
    stall = env.stall_policy()
    random = env.random
    n = design.master_bits
    a_lo, a_hi = golden.code_range(n, signed=False)
    w_lo, w_hi = golden.code_range(n, signed=True)
    junk_a = pack(activation_layout, env.rng.integers(a_lo, a_hi + 1, (64, design.lanes)))
    junk_w = pack(weight_layout, env.rng.integers(w_lo, w_hi + 1, (64, design.lanes)))

    partial_scoreboard = Scoreboard(f"{env.block}.partial", env.log)
    acc_scoreboard = Scoreboard(f"{env.block}.acc", env.log)
    hold_scoreboard = Scoreboard(f"{env.block}.acc_hold", env.log, required=False)
    total = env.budget(FULL_DOT_PRODUCTS, minimum=50, icarus=ICARUS_FACTOR)
    macs = 0
    dut.enable.value = 0
    dut.clear.value = 0
    edge = RisingEdge(clock)
    # Per driven cycle: the expected `partial` of its beat (None when idle) and what `acc` must
    # show once the cycle's beat has gone through (a dot product's sum, or the held one).
    partials, accs = [], []
    total_acc = 0
    for _ in range(total):
        bits, activations, weights, beat_sums, acc, terms = _dot_product(env.rng, design)
        a_words = pack(activation_layout, activations)
        w_words = pack(weight_layout, weights)
        beat = 0
        while beat < len(beat_sums):
            await edge
            dut.bits.value = bits
            if stall.stall():
                dut.enable.value = 0
                dut.clear.value = random.getrandbits(1)
                dut.activations.value = junk_a[random.randrange(64)]
                dut.weights.value = junk_w[random.randrange(64)]
                partials.append(None)
                # Between dot products the finished sum stays put.
                accs.append((total_acc, "held", beat == 0))
            else:
                dut.enable.value = 1
                dut.clear.value = int(beat == 0)
                dut.activations.value = a_words[beat]
                dut.weights.value = w_words[beat]
                partials.append((int(beat_sums[beat]), bits))
                total_acc = acc if beat == len(beat_sums) - 1 else None
                accs.append((total_acc, f"b = {bits}, {terms} terms", False))
                beat += 1
            await ReadOnly()
            _check(dut, design, partials, accs, partial_scoreboard, acc_scoreboard,
                   hold_scoreboard)
        macs += terms
    for _ in range(design.latency):                  # drain the pipeline
        await edge
        dut.enable.value = 0
        partials.append(None)
        accs.append((total_acc, "held", False))
        await ReadOnly()
        _check(dut, design, partials, accs, partial_scoreboard, acc_scoreboard,
               hold_scoreboard)
    env.report(partial_scoreboard, acc_scoreboard, hold_scoreboard, macs=macs)


def _check(dut, design, partials, accs, partial_scoreboard, acc_scoreboard, hold_scoreboard):
    """After the edge that follows the latest driven cycle: `partial` shows the beat driven
    `partial_latency` cycles before it and `acc` the state after the beat `latency` before."""
    current = len(partials) - 1
    beat = current - design.partial_latency
    if beat >= 0 and partials[beat] is not None:
        value, bits = partials[beat]
        partial_scoreboard.expect(value, f"b = {bits}")
        partial_scoreboard.check(dut.partial.value.to_signed())
    done = current - design.latency
    if done >= 0 and accs[done][0] is not None:
        value, context, idle = accs[done]
        scoreboard = hold_scoreboard if context == "held" else acc_scoreboard
        if context != "held" or idle:
            scoreboard.expect(value, context)
            scoreboard.check(dut.acc.value.to_signed())
