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


def expected_sum(a, w):
    """The golden dot product of one cycle's lanes (already nested b-bit codes)."""
    return int(golden.linear(np.array([a]), np.array([w]))[0, 0])


def check_partials(dut, cases):
    """Drive (bits, activations, weights) cases combinationally; return the mismatches."""
    mismatches = []

    async def testbench(ctx):
        for bits, a, w in cases:
            ctx.set(dut.bits, bits)
            ctx.set(dut.activations, list(a) + [0] * (dut.lanes - len(a)))
            ctx.set(dut.weights, list(w) + [0] * (dut.lanes - len(w)))
            got = ctx.get(dut.partial)
            want = expected_sum(a, w)
            if got != want:
                mismatches.append((bits, a, w, got, want))

    simulate(dut, testbench, clocked=False)
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


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_pe_products_exhaustive_n8_narrow(bits):
    """n = 8 at b <= 4 (2x2 and 4x4 modes): every pair in every lane."""
    dut = ProcessingElement(master_bits=8)
    cases = []
    for lane in range(dut.products_per_cycle(bits)):
        cases += single_products(dut, bits, lane, all_codes(bits, False), all_codes(bits, True))
    assert check_partials(dut, cases) == []


@pytest.mark.parametrize("scalable", [True, False], ids=["scalable", "fixed"])
def test_pe_products_n8_full_width(scalable):
    """n = 8 at b = 8: every activation against a weight sample (extremes, signs, powers of
    two, seeded random); every pair of the 8x8 product with DQT_LONG=1."""
    dut = ProcessingElement(master_bits=8, scalable=scalable)
    if LONG:
        weights = all_codes(8, True)
    else:
        rng = rng_for(test_seed("pe 8x8 weights"), scalable)
        weights = sorted({-127, -64, -63, -2, -1, 0, 1, 2, 63, 64, 127}
                         | {rng.randrange(-127, 128) for _ in range(5)})
    cases = list(single_products(dut, 8, 0, all_codes(8, False), weights))
    assert check_partials(dut, cases) == []


@pytest.mark.parametrize("master_bits", [4, 8])
def test_pe_fused_sums_random(master_bits):
    """All lanes busy: random nested codes at every b, the sum over the mode's products."""
    seed = test_seed(f"pe fused sums n={master_bits}")
    dut = ProcessingElement(master_bits=master_bits)
    rng = rng_for(seed, master_bits)
    cases = []
    for bits in dut.supported_bits:
        used = dut.products_per_cycle(bits)
        for _ in range(60 if not LONG else 2000):
            a_lo, a_hi = golden.code_range(bits, signed=False)
            w_lo, w_hi = golden.code_range(bits, signed=True)
            cases.append((bits, [rng.randint(a_lo, a_hi) for _ in range(used)],
                          [rng.randint(w_lo, w_hi) for _ in range(used)]))
    assert check_partials(dut, cases) == []


@pytest.mark.parametrize("scalable", [True, False], ids=["scalable", "fixed"])
def test_pe_accumulates_with_latency_one(scalable):
    seed = test_seed("pe accumulate")
    rng = rng_for(seed, scalable)
    dut = ProcessingElement(master_bits=8, scalable=scalable, acc_width=24)
    bits = 4
    used = dut.products_per_cycle(bits)
    beats = [([rng.randint(0, 15) for _ in range(used)], [rng.randint(-7, 7) for _ in range(used)],
              rng.random() < 0.7) for _ in range(40)]
    observed = []

    async def testbench(ctx):
        ctx.set(dut.bits, bits)
        total = 0
        for index, (a, w, enable) in enumerate(beats):
            clear = index in (0, 20)
            ctx.set(dut.activations, a + [0] * (dut.lanes - used))
            ctx.set(dut.weights, w + [0] * (dut.lanes - used))
            ctx.set(dut.enable, enable)
            ctx.set(dut.clear, clear)
            if enable:
                total = (0 if clear else total) + expected_sum(a, w)
            await ctx.tick()
            observed.append((ctx.get(dut.acc), total))   # one cycle after the inputs

    simulate(dut, testbench)
    assert dut.latency == 1
    assert [got for got, _ in observed] == [want for _, want in observed]


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
