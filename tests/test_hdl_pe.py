# amaranth: UnusedElaboratable=no
"""ProcessingElement in the Amaranth simulator against the golden model.

Exhaustive products at small widths (every lane of every mode for n = 4; n = 8 at b <= 4 per
lane, and 8x8 with every activation against a weight sample, all 8x8 pairs with DQT_LONG=1);
seeded random fused sums at every b; accumulate/clear/latency; parameter validation.
"""

import os

import numpy as np
import pytest

from dqt_hw import golden
from dqt_hw.hdl import ProcessingElement, mode_bits
from dqt_hw.hdl.sim import rng_for, simulate, test_seed

LONG = os.environ.get("DQT_LONG") == "1"
#: Scalable PE configurations: Bit Fusion bricks alone; a DSP multiplier for the n x n mode
#: and bricks for the narrower ones; a DSP lane beside the bricks' n x n product.
KINDS = {"fused": {}, "dsp": {"dsp_lanes": 1, "fuse_wide": False},
         "hybrid": {"dsp_lanes": 1}, "fixed": {"scalable": False},
         "fixed-dsp": {"scalable": False, "dsp_lanes": 1}}


def expected_sum(a, w):
    """The golden dot product of one cycle's lanes (already nested b-bit codes)."""
    return int(golden.linear(np.array([a]), np.array([w]))[0, 0])


def check_partials(dut, cases):
    """Drive (bits, activations, weights) cases one per cycle; `partial` shows each case's sum
    `partial_latency` clock edges later. Return the mismatches."""
    mismatches = []
    cases = list(cases)

    async def testbench(ctx):
        for index in range(len(cases) + dut.partial_latency - 1):
            if index < len(cases):
                bits, a, w = cases[index]
                ctx.set(dut.bits, bits)
                ctx.set(dut.activations, list(a) + [0] * (dut.lanes - len(a)))
                ctx.set(dut.weights, list(w) + [0] * (dut.lanes - len(w)))
            await ctx.tick()
            done = index - (dut.partial_latency - 1)
            if done >= 0:
                bits, a, w = cases[done]
                got, want = ctx.get(dut.partial), expected_sum(a, w)
                if got != want:
                    mismatches.append((bits, a, w, got, want))

    simulate(dut, testbench)
    return mismatches


def single_products(dut, bits, lane, a_codes, w_codes):
    """Cases that put each (a, w) pair in `lane` with every other lane zero."""
    used = dut.products_per_cycle(bits)
    for a in a_codes:
        for w in w_codes:
            a_lanes, w_lanes = [0] * used, [0] * used
            a_lanes[lane], w_lanes[lane] = a, w
            yield bits, a_lanes, w_lanes


def all_codes(bits, signed):
    lo, hi = golden.code_range(bits, signed=signed)
    return range(lo, hi + 1)


@pytest.mark.parametrize("scalable", [True, False], ids=["scalable", "fixed"])
def test_pe_products_exhaustive_n4(scalable):
    """n = 4: every activation x weight code pair at every b, in every lane the mode uses."""
    dut = ProcessingElement(master_bits=4, scalable=scalable)
    cases = []
    for bits in dut.supported_bits:
        for lane in range(dut.products_per_cycle(bits)):
            cases += single_products(dut, bits, lane, all_codes(bits, False),
                                     all_codes(bits, True))
    assert check_partials(dut, cases) == []


@pytest.mark.parametrize("kind", ["fused", "dsp"])
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_pe_products_exhaustive_n8_narrow(bits, kind):
    """n = 8 at b <= 4 (2x2 and 4x4 modes): every pair in every lane."""
    dut = ProcessingElement(master_bits=8, **KINDS[kind])
    cases = []
    for lane in range(dut.products_per_cycle(bits)):
        cases += single_products(dut, bits, lane, all_codes(bits, False), all_codes(bits, True))
    assert check_partials(dut, cases) == []


@pytest.mark.parametrize("kind", list(KINDS))
def test_pe_products_n8_full_width(kind):
    """n = 8 at b = 8, in every lane of the mode: every activation against a weight sample
    (extremes, signs, powers of two, seeded random); every pair with DQT_LONG=1."""
    dut = ProcessingElement(master_bits=8, **KINDS[kind])
    if LONG:
        weights = all_codes(8, True)
    else:
        rng = rng_for(test_seed("pe 8x8 weights"), kind)
        weights = sorted({-127, -64, -63, -2, -1, 0, 1, 2, 63, 64, 127}
                         | {rng.randrange(-127, 128) for _ in range(5)})
    cases = [case for lane in range(dut.products_per_cycle(8))
             for case in single_products(dut, 8, lane, all_codes(8, False), weights)]
    assert check_partials(dut, cases) == []


@pytest.mark.parametrize("master_bits, kind", [(4, "fused"), (8, "fused"), (8, "dsp"),
                                               (8, "hybrid"), (4, "hybrid")])
def test_pe_fused_sums_random(master_bits, kind):
    """All lanes busy: random nested codes at every b, the sum over the mode's products."""
    seed = test_seed(f"pe fused sums n={master_bits} {kind}")
    dut = ProcessingElement(master_bits=master_bits, **KINDS[kind])
    rng = rng_for(seed, master_bits, kind)
    cases = []
    for bits in dut.supported_bits:
        used = dut.products_per_cycle(bits)
        for _ in range(60 if not LONG else 2000):
            a_lo, a_hi = golden.code_range(bits, signed=False)
            w_lo, w_hi = golden.code_range(bits, signed=True)
            cases.append((bits, [rng.randint(a_lo, a_hi) for _ in range(used)],
                          [rng.randint(w_lo, w_hi) for _ in range(used)]))
    assert check_partials(dut, cases) == []


@pytest.mark.parametrize("kind", list(KINDS))
def test_pe_accumulates_with_latency_four(kind):
    seed = test_seed("pe accumulate")
    rng = rng_for(seed, kind)
    dut = ProcessingElement(master_bits=8, acc_width=24, **KINDS[kind])
    beats = []
    for index in range(60):
        bits = 4 if index < 30 else 8        # both the bricks and the n x n mode
        used = dut.products_per_cycle(bits)
        lo, hi = golden.code_range(bits, signed=True)
        beats.append((bits, [rng.randint(0, (1 << bits) - 1) for _ in range(used)],
                      [rng.randint(lo, hi) for _ in range(used)], rng.random() < 0.7))
    observed, totals = [], []

    async def testbench(ctx):
        total = 0
        for index, (bits, a, w, enable) in enumerate(beats + [(8, [], [], False)] * 4):
            clear = index in (0, 20, 30, 45)
            ctx.set(dut.bits, bits)
            ctx.set(dut.activations, a + [0] * (dut.lanes - len(a)))
            ctx.set(dut.weights, w + [0] * (dut.lanes - len(w)))
            ctx.set(dut.enable, enable)
            ctx.set(dut.clear, clear)
            if enable:
                total = (0 if clear else total) + expected_sum(a, w)
            totals.append(total)
            await ctx.tick()
            observed.append(ctx.get(dut.acc))

    simulate(dut, testbench)
    assert dut.latency == 4 and dut.partial_latency == 3
    # After the edge of cycle t the accumulator holds the beats up to cycle t - 3.
    assert observed[3:] == totals[:-3]


def test_pe_products_per_cycle():
    scalable = ProcessingElement(master_bits=8)
    assert [scalable.products_per_cycle(b) for b in range(2, 9)] == [16, 4, 4, 1, 1, 1, 1]
    assert [mode_bits(b) for b in range(2, 9)] == [2, 4, 4, 8, 8, 8, 8]
    assert scalable.lanes == 16 and scalable.modes == (2, 4, 8)
    fixed = ProcessingElement(master_bits=8, scalable=False)
    assert [fixed.products_per_cycle(b) for b in range(2, 9)] == [1] * 7
    assert fixed.lanes == 1
    narrow = ProcessingElement(master_bits=8, supported_bits=(4, 8))
    assert narrow.modes == (4, 8) and narrow.lanes == 4
    hybrid = ProcessingElement(master_bits=8, dsp_lanes=1)
    assert [hybrid.products_per_cycle(b) for b in range(2, 9)] == [16, 4, 4, 2, 2, 2, 2]
    assert hybrid.geometry.dsp_lane == 1 and hybrid.geometry.brick_modes == (2, 4, 8)
    dsp = ProcessingElement(master_bits=8, dsp_lanes=1, fuse_wide=False)
    assert [dsp.products_per_cycle(b) for b in range(2, 9)] == [16, 4, 4, 1, 1, 1, 1]
    assert dsp.geometry.dsp_lane == 0 and dsp.geometry.brick_modes == (2, 4)
    wide_only = ProcessingElement(master_bits=8, supported_bits=(8,), dsp_lanes=1)
    assert wide_only.lanes == 2 and wide_only.products_per_cycle(8) == 2


@pytest.mark.parametrize("kwargs, error, message", [
    ({"master_bits": 6}, ValueError,
     "`master_bits` must be a power of two for a scalable PE, not 6"),
    ({"master_bits": 17}, ValueError, "`master_bits` must be between 2 and 16, not 17"),
    ({"scalable": "yes"}, TypeError, "`scalable` must be a bool, not 'yes'"),
    ({"acc_width": 15}, ValueError, "`acc_width` must be an integer >= 16, not 15"),
    ({"acc_width": 20.0}, TypeError, "`acc_width` must be an integer >= 16, not 20.0"),
    ({"supported_bits": (2, 9)}, ValueError,
     "`bits` must be at most `master_bits` (8), not 9"),
    ({"supported_bits": (1,)}, ValueError, "`bits` must be at least 2, not 1"),
    ({"supported_bits": ()}, ValueError, "`supported_bits` must name at least one bit-width"),
    ({"supported_bits": 8}, TypeError, "`supported_bits` must be a collection of bit-widths"),
    ({"dsp_lanes": 2}, ValueError, "`dsp_lanes` must be 0 or 1, not 2"),
    ({"fuse_wide": 0}, TypeError, "`fuse_wide` must be a bool, not 0"),
    ({"fuse_wide": False}, ValueError,
     "`fuse_wide` may only be False with `dsp_lanes` = 1 (the n x n mode needs the bricks or "
     "a DSP lane)"),
])
def test_pe_rejects(kwargs, error, message):
    with pytest.raises(error) as info:
        ProcessingElement(**kwargs)
    assert message in str(info.value)


def test_pe_rejects_unsupported_bits_at_run_time_query():
    dut = ProcessingElement(master_bits=8, supported_bits=(2, 4, 8))
    with pytest.raises(ValueError, match=r"`bits` must be one of \[2, 4, 8\] for this "
                                         r"configuration, not 3"):
        dut.products_per_cycle(3)
    with pytest.raises(ValueError, match=r"`bits` must be at most `master_bits` \(8\), not 9"):
        ProcessingElement(master_bits=8, scalable=False).products_per_cycle(9)
