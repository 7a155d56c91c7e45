# amaranth: UnusedElaboratable=no
"""Requantizer in the Amaranth simulator: seeded random accumulators and per-channel constants
at every b, with stalls, compared with golden.requantize; latency; validation."""

import os

import numpy as np
import pytest

from dqt_hw import golden
from dqt_hw.hdl import Requantizer
from dqt_hw.hdl.requantizer import FULL_RANGE
from dqt_hw.hdl.sim import latency_of, rng_for, run_stream, simulate, test_seed

LONG = os.environ.get("DQT_LONG") == "1"


def random_items(rng, dut, count, lo=None, hi=None):
    """(ports, payload, expected) triples: a b-bit accumulator of up to max_terms products at a
    random b with either layer-like constants (quantize_multiplier of a ratio that maps it into
    [lo, hi]) or arbitrary M, r and bias (mostly saturating). The range defaults to the dut's."""
    n, terms = dut.master_bits, dut.max_terms
    lo, hi = (dut.lo, dut.hi) if lo is None else (lo, hi)
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
            ratio = rng.uniform(0.1, 1.0) * hi / max(master_acc, 1)
            multiplier, shift = golden.quantize_multiplier(ratio)
            shift = min(max(shift, 0), 63)
        else:                                                  # any port values at all
            multiplier, shift = rng.randint(0, (1 << 15) - 1), rng.randint(0, 63)
            bias = rng.randint(-half, half - 1)
        want = golden.requantize(np.array([[acc]]), multiplier=multiplier, shift=shift,
                                 bias=bias, acc_shift=2 * (n - bits), lo=lo, hi=hi)
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


@pytest.mark.parametrize("lo, hi", [(0, 255), (-128, 127), (-512, 511), FULL_RANGE],
                         ids=["relu", "signed", "widest-bounds", "int32"])
def test_requantizer_run_time_range(lo, hi):
    """The accelerator's requantizer: the range comes from ports, bounds of RANGE_BOUND_BITS
    or the int32 limits (`full_range`), and the output is a signed 32-bit value."""
    seed = test_seed(f"requantizer range ports {lo} {hi}")
    rng = rng_for(seed, lo, hi)
    dut = Requantizer(master_bits=8, max_terms=1024, range_ports=True)
    full = (lo, hi) == FULL_RANGE
    ports = {"lo": 0, "hi": 0, "full_range": 1} if full else {"lo": lo, "hi": hi,
                                                              "full_range": 0}
    items = random_items(rng, dut, 300, lo, hi)
    if full:     # products near the int32 limits: both clips and the largest values inside
        # (2^32 - 1 = 21845 * 196611; r = 1 rounds its half up to 2^31, one past the limit)
        for acc in (196611, -196611, 196610):
            want = golden.requantize(np.array([[acc]]), multiplier=21845, shift=1, bias=0,
                                     acc_shift=0, lo=lo, hi=hi)
            items.append(({"bits": 8}, {"acc": acc, "multiplier": 21845, "shift": 1,
                                        "bias": 0}, int(want[0, 0])))
        for _ in range(60):
            acc = rng.randint(-(1 << 20), 1 << 20)
            target = rng.choice([hi, lo]) + rng.randint(-3, 3)
            multiplier, shift = golden.quantize_multiplier(abs(target / acc) if acc else 1.0)
            shift = min(max(shift, 0), 63)
            want = golden.requantize(np.array([[acc]]), multiplier=multiplier, shift=shift,
                                     bias=0, acc_shift=0, lo=lo, hi=hi)
            items.append(({"bits": 8}, {"acc": acc, "multiplier": multiplier, "shift": shift,
                                        "bias": 0}, int(want[0, 0])))
    outputs, _ = run_stream(dut, [(dict(item, **ports), payload)
                                  for item, payload, _ in items], rng=rng, stall=0.25)
    expected = [want for _, _, want in items]
    assert outputs == expected
    assert min(expected) == lo and max(expected) == hi     # both clips happen
    assert sum(lo < value < hi for value in expected) > len(expected) // 4


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


def test_requantizer_supported_bits():
    """acc_shift is built for `supported_bits` only; those b are exact."""
    seed = test_seed("requantizer supported bits")
    rng = rng_for(seed, "supported")
    dut = Requantizer(master_bits=8, max_terms=576, supported_bits=(2, 4, 8))
    items = [item for item in random_items(rng, Requantizer(master_bits=8, max_terms=576), 600)
             if item[0]["bits"] in (2, 4, 8)]
    outputs, _ = run_stream(dut, [(ports, payload) for ports, payload, _ in items],
                            rng=rng, stall=0.3)
    assert outputs == [want for _, _, want in items] and len(items) > 200


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
