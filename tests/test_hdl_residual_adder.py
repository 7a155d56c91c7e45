# amaranth: UnusedElaboratable=no
"""ResidualAdder in the Amaranth simulator: seeded random k-constants and codes (master and
nested operands), with stalls, compared with golden.add; latency; validation."""

import os

import numpy as np
import pytest

from dqt_hw import golden
from dqt_hw.hdl import ResidualAdder
from dqt_hw.hdl.sim import latency_of, rng_for, run_stream, simulate, test_seed

LONG = os.environ.get("DQT_LONG") == "1"


def random_items(rng, dut, layers, per_layer):
    n = dut.master_bits
    lo, hi = golden.code_range(n, signed=dut.signed)
    k_max = (1 << (dut.constant_bits - 1)) - 1
    items = []
    for _ in range(layers):
        # Typical joins (k ~ 2^shift, ratios near 1) and arbitrary port values.
        shift = rng.randint(0, 63) if rng.random() < 0.3 else rng.randint(8, 15)
        if rng.random() < 0.3:
            k1, k2 = rng.randint(-k_max - 1, k_max), rng.randint(-k_max - 1, k_max)
        else:
            k1, k2 = (min(k_max, int(rng.uniform(0.3, 1.5) * 2 ** min(shift, 14)))
                      for _ in range(2))
        k3 = rng.randint(-(1 << (dut.offset_bits - 1)), (1 << (dut.offset_bits - 1)) - 1) \
            if rng.random() < 0.2 else rng.randint(-(1 << 12), 1 << 12)
        bits1, bits2 = rng.randint(golden.MIN_BITS, n), rng.randint(golden.MIN_BITS, n)
        ports = {"k1": k1, "k2": k2, "k3": k3, "shift": shift,
                 "in_shift1": n - bits1, "in_shift2": n - bits2}
        q1 = golden.nest(np.array([rng.randint(lo, hi) for _ in range(per_layer)]),
                         master_bits=n, bits=bits1, signed=dut.signed)
        q2 = golden.nest(np.array([rng.randint(lo, hi) for _ in range(per_layer)]),
                         master_bits=n, bits=bits2, signed=dut.signed)
        want = golden.add(q1, q2, k1=k1, k2=k2, k3=k3, shift=shift, lo=dut.lo, hi=dut.hi,
                          in_shift1=n - bits1, in_shift2=n - bits2)
        for a, b, out in zip(q1.tolist(), q2.tolist(), want.tolist()):
            items.append((ports, {"q1": a, "q2": b}, out))
    return items


@pytest.mark.parametrize("master_bits, signed, lo, hi", [
    (8, False, None, None), (8, True, -127, 127), (4, False, 0, 15),
], ids=["n8-unsigned", "n8-signed", "n4-unsigned"])
def test_residual_adder_random(master_bits, signed, lo, hi):
    seed = test_seed(f"residual adder n={master_bits} signed={signed}")
    rng = rng_for(seed, master_bits, signed)
    dut = ResidualAdder(master_bits=master_bits, signed=signed, lo=lo, hi=hi)
    items = random_items(rng, dut, 40 if LONG else 12, 100 if LONG else 25)
    outputs, _ = run_stream(dut, [(ports, payload) for ports, payload, _ in items],
                            rng=rng, stall=0.25)
    expected = [want for _, _, want in items]
    assert outputs == expected
    inside = sum(dut.lo < value < dut.hi for value in expected)
    assert inside > len(expected) // 8      # not everything saturates


def test_residual_adder_latency_and_throughput():
    dut = ResidualAdder(master_bits=8)
    items = random_items(rng_for(0, "adder throughput"), dut, 2, 20)
    outputs, cycles = run_stream(dut, [(ports, payload) for ports, payload, _ in items])
    assert outputs == [want for _, _, want in items]
    assert cycles == len(items) + dut.latency - 1
    measured = []

    async def testbench(ctx):
        ctx.set(dut.k1, 1)
        measured.append(await latency_of(ctx, dut.input, dut.output, {"q1": 1, "q2": 2}))

    simulate(dut, testbench)
    assert measured == [dut.latency] == [5]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"signed": 0}, TypeError, "`signed` must be a bool, not 0"),
    ({"constant_bits": 1}, ValueError, "`constant_bits` must be an integer >= 2, not 1"),
    ({"offset_bits": None}, TypeError, "`offset_bits` must be an integer >= 2, not None"),
    ({"lo": 3, "hi": 2}, ValueError, "output range [`lo`, `hi`] must have lo <= hi, not [3, 2]"),
    ({"master_bits": 0}, ValueError, "`master_bits` must be between 2 and 16, not 0"),
])
def test_residual_adder_rejects(kwargs, error, message):
    with pytest.raises(error) as info:
        ResidualAdder(**kwargs)
    assert str(info.value) == message
