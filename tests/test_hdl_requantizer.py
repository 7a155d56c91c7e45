# amaranth: UnusedElaboratable=no
"""Requantizer in the Amaranth simulator: seeded random accumulators and per-channel constants
at every b, with stalls, compared with golden.requantize; latency; validation."""

import os

import numpy as np
import pytest

from dqt_hw import golden
from dqt_hw.hdl import Requantizer
from dqt_hw.hdl.sim import latency_of, rng_for, run_stream, simulate, test_seed

LONG = os.environ.get("DQT_LONG") == "1"


def random_items(rng, dut, count):
    """(ports, payload, expected) triples: a b-bit accumulator of up to max_terms products at a
    random b with either layer-like constants (quantize_multiplier of a ratio that maps it into
    [lo, hi]) or arbitrary M, r and bias (mostly saturating)."""
    n, terms = dut.master_bits, dut.max_terms
    items = []
    for _ in range(count):
        bits = rng.randint(golden.MIN_BITS, n)
        acc_bits = golden.accumulator_bits(bits, bits, terms)
        # |acc| <= K (2^b - 1)(2^(b-1) - 1) < 2^(acc_bits - 1): a symmetric range.
        reach = (1 << (acc_bits - 1)) - 1
        acc = rng.randint(-reach, reach)
        half = 1 << (dut.acc_width - 1)
        if rng.random() < 0.6:
            # A layer-like case: scale (M, r) maps this accumulator into the output range.
            acc = abs(acc)
            bias = rng.randint(-999, 999)
            master_acc = (acc << (2 * (n - bits))) + bias
            ratio = rng.uniform(0.1, 1.0) * dut.hi / max(master_acc, 1)
            multiplier, shift = golden.quantize_multiplier(ratio)
            shift = min(max(shift, 0), 63)
        else:                                                  # any port values at all
            multiplier, shift = rng.randint(0, (1 << 15) - 1), rng.randint(0, 63)
            bias = rng.randint(-half, half - 1)
        want = golden.requantize(np.array([[acc]]), multiplier=multiplier, shift=shift,
                                 bias=bias, acc_shift=2 * (n - bits), lo=dut.lo, hi=dut.hi)
        items.append(({"bits": bits},
                      {"acc": acc, "multiplier": multiplier, "shift": shift, "bias": bias},
                      int(want[0, 0])))
    return items


@pytest.mark.parametrize("master_bits, max_terms, lo, hi", [
    (8, 4608, None, None), (8, 9, -128, 127), (4, 100, 0, 15),
], ids=["n8-K4608", "n8-K9-signed-out", "n4-K100"])
def test_requantizer_random(master_bits, max_terms, lo, hi):
    seed = test_seed(f"requantizer n={master_bits} K={max_terms}")
    rng = rng_for(seed, master_bits, max_terms)
    dut = Requantizer(master_bits=master_bits, max_terms=max_terms, lo=lo, hi=hi)
    items = random_items(rng, dut, 3000 if LONG else 300)
    outputs, _ = run_stream(dut, [(ports, payload) for ports, payload, _ in items],
                            rng=rng, stall=0.25)
    expected = [want for _, _, want in items]
    assert outputs == expected
    inside = sum(dut.lo < value < dut.hi for value in expected)
    assert inside > len(expected) // 4      # many results are not saturated


def test_requantizer_latency_and_throughput():
    dut = Requantizer(master_bits=8, max_terms=64)
    rng = rng_for(0, "requantizer throughput")
    items = random_items(rng, dut, 50)
    outputs, cycles = run_stream(dut, [(ports, payload) for ports, payload, _ in items])
    assert outputs == [want for _, _, want in items]
    assert cycles == len(items) + dut.latency - 1          # one accumulator per cycle
    measured = []

    async def testbench(ctx):
        ctx.set(dut.bits, 8)
        measured.append(await latency_of(ctx, dut.input, dut.output,
                                         {"acc": 5, "multiplier": 1, "shift": 0, "bias": 0}))

    simulate(dut, testbench)
    assert measured == [dut.latency] == [6]


def test_requantizer_widths():
    dut = Requantizer(master_bits=8, max_terms=4608)
    assert dut.acc_width == 29 and dut.product_width == golden.requantizer_bits(8, 4608)
    assert len(dut.output.payload) == 8 and not dut.output.payload.shape().signed


@pytest.mark.parametrize("kwargs, error, message", [
    ({"max_terms": 0}, ValueError, "`max_terms` must be a positive integer, not 0"),
    ({"master_bits": 20}, ValueError, "`master_bits` must be between 2 and 16, not 20"),
    ({"multiplier_bits": 32}, ValueError,
     "`multiplier_bits` must be an integer between 2 and 31, not 32"),
    ({"lo": 10, "hi": 5}, ValueError, "output range [`lo`, `hi`] must have lo <= hi, not [10, 5]"),
    ({"lo": 0, "hi": 256}, ValueError, "`hi` must be an 8-bit code in [-128, 255], not 256"),
    ({"lo": 0.0, "hi": 255}, TypeError, "`lo` must be an integer, not 0.0"),
])
def test_requantizer_rejects(kwargs, error, message):
    params = dict(master_bits=8, max_terms=64)
    params.update(kwargs)
    with pytest.raises(error) as info:
        Requantizer(**params)
    assert str(info.value) == message
