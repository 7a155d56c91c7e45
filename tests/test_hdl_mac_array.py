# amaranth: UnusedElaboratable=no
"""MacArray in the Amaranth simulator: seeded random dot products at every b with random
stalls on both streams, compared with golden.linear(golden.nest(...)); latency, throughput and
cycles per mode measured; parameter validation."""

import os

import numpy as np
import pytest

from dqt_hw import golden
from dqt_hw.hdl import MacArray
from dqt_hw.hdl.cycles import dot_product_cycles
from dqt_hw.hdl.sim import latency_of, receive, rng_for, send, simulate, test_seed

LONG = os.environ.get("DQT_LONG") == "1"


def golden_accumulators(x, w, bits, master_bits):
    return golden.linear(golden.nest(x, master_bits=master_bits, bits=bits, signed=False),
                         golden.nest(w, master_bits=master_bits, bits=bits, signed=True))


def random_job(rng, dut, bits, terms):
    n = dut.master_bits
    a_lo, a_hi = golden.code_range(n, signed=False)
    w_lo, w_hi = golden.code_range(n, signed=True)
    x = np.array([[rng.randint(a_lo, a_hi) for _ in range(terms)] for _ in range(dut.rows)])
    w = np.array([[rng.randint(w_lo, w_hi) for _ in range(terms)] for _ in range(dut.cols)])
    return bits, x, w


def run_jobs(dut, jobs, rng, stall):
    results = []

    async def producer(ctx):
        for bits, x, w in jobs:
            ctx.set(dut.bits, bits)        # between dot products: every beat before was taken
            for beat in dut.operand_beats(bits, x, w):
                await send(ctx, dut.operands, beat, rng=rng, stall=stall)

    async def consumer(ctx):
        for _ in jobs:
            payload = await receive(ctx, dut.results, rng=rng, stall=stall)
            results.append([[payload[r][c] for c in range(dut.cols)] for r in range(dut.rows)])

    simulate(dut, producer, consumer)
    return results


@pytest.mark.parametrize("rows, cols, master_bits, kwargs", [
    (2, 2, 8, {}), (1, 3, 8, {"scalable": False}), (3, 1, 4, {}),
    (1, 2, 8, {"supported_bits": (2, 5, 8)}),
    (2, 2, 8, {"dsp_lanes": 1}), (1, 2, 8, {"dsp_lanes": 1, "fuse_wide": False}),
    (1, 3, 8, {"dsp_lanes": 1, "fuse_wide": False, "nest_weights": False}),
    (2, 1, 8, {"scalable": False, "dsp_lanes": 1}),
], ids=["2x2-n8-scalable", "1x3-n8-fixed", "3x1-n4-scalable", "1x2-n8-bits-2-5-8",
        "2x2-n8-hybrid", "1x2-n8-dsp", "1x3-n8-dsp-prenested", "2x1-n8-fixed-dsp"])
def test_mac_array_random_dot_products(rows, cols, master_bits, kwargs):
    seed = test_seed(f"mac array {rows}x{cols} n={master_bits} {kwargs}")
    rng = rng_for(seed, rows, cols, master_bits, sorted(kwargs.items()))
    max_terms = 40
    dut = MacArray(rows=rows, cols=cols, master_bits=master_bits, max_terms=max_terms,
                   **kwargs)
    jobs = []
    for _ in range(4 if LONG else 1):
        for bits in dut.supported_bits:
            for terms in (1, rng.randint(2, max_terms), max_terms):
                jobs.append(random_job(rng, dut, bits, terms))
    rng.shuffle(jobs)
    sent = jobs
    if not dut.nest_weights:             # the weight lanes carry codes nested to b bits
        sent = [(bits, x, golden.nest(w, master_bits=master_bits, bits=bits, signed=True))
                for bits, x, w in jobs]
    results = run_jobs(dut, sent, rng, stall=0.3)
    assert len(results) == len(jobs)
    for (bits, x, w), got in zip(jobs, results):
        want = golden_accumulators(x, w, bits, master_bits)
        assert got == want.tolist(), f"b={bits} K={x.shape[1]}"


def test_mac_array_extreme_accumulators():
    """max_terms products of the largest magnitude at b = n fill the accumulator exactly."""
    max_terms = 33
    dut = MacArray(rows=1, cols=2, master_bits=8, max_terms=max_terms)
    x = np.full((1, max_terms), 255)
    w = np.array([[127] * max_terms, [-127] * max_terms])
    jobs = [(8, x, w), (2, x, w)]
    results = run_jobs(dut, jobs, None, 0.0)
    for (bits, x, w), got in zip(jobs, results):
        assert got == golden_accumulators(x, w, bits, 8).tolist()
    assert dut.acc_width == golden.accumulator_bits(8, 8, max_terms) == 22


def measure_cycles(dut, bits, terms):
    """`cycles.dot_product_cycles` on random operands, checking the accumulators too."""
    _, x, w = random_job(rng_for(0, "cycles", bits, terms), dut, bits, terms)
    cycles, got = dot_product_cycles(dut, bits, x, w)
    assert got == golden_accumulators(x, w, bits, dut.master_bits).tolist()
    return cycles


@pytest.mark.parametrize("scalable", [True, False], ids=["scalable", "fixed"])
def test_mac_array_cycles_per_mode(scalable):
    """Throughput per mode, measured: a K-term dot product takes ceil(K / P(b)) beats at one
    beat per cycle, then latency - 1 = 5 more cycles; P(b) = 1, 4, 16 at b = 8, 4, 2 for the
    scalable array."""
    dut = MacArray(rows=2, cols=2, master_bits=8, max_terms=64, scalable=scalable)
    terms = 64
    measured = {bits: measure_cycles(dut, bits, terms) for bits in (8, 4, 2)}
    print(f"cycles for a {terms}-term dot product, scalable={scalable}: {measured}")
    for bits, cycles in measured.items():
        assert cycles == dut.beats(terms, bits) + dut.latency - 1
    if scalable:
        assert measured == {8: 69, 4: 21, 2: 9}
        assert [dut.macs_per_cycle(b) for b in (8, 4, 2)] == [4, 16, 64]
    else:
        assert measured == {8: 69, 4: 69, 2: 69}


def test_mac_array_latency_and_back_to_back():
    dut = MacArray(rows=2, cols=2, master_bits=8, max_terms=16)
    lane = [1] + [0] * (dut.lanes - 1)
    beat = {"activations": [lane, lane], "weights": [lane, lane], "last": 1}
    measured = []

    async def testbench(ctx):
        ctx.set(dut.bits, 8)
        measured.append(await latency_of(ctx, dut.operands, dut.results, beat))
        # With results.ready high, one single-beat dot product per cycle: ready never drops,
        # and once the pipeline is full a result leaves every cycle.
        await ctx.tick()
        ctx.set(dut.operands.payload, beat)
        ctx.set(dut.operands.valid, 1)
        stalls = 0
        for cycle in range(12):
            stalls += not ctx.get(dut.operands.ready)
            await ctx.tick()
            assert ctx.get(dut.results.valid) == (cycle >= dut.latency - 1)
        measured.append(stalls)

    simulate(dut, testbench)
    assert measured == [dut.latency, 0]
    assert dut.latency == 6 and dut.beats_per_cycle == 1


def test_mac_array_back_pressure_holds_result():
    """While results.ready is low the array refuses operands and holds its payload."""
    dut = MacArray(rows=1, cols=1, master_bits=8, max_terms=4)
    lane = [3] + [0] * (dut.lanes - 1)
    beat = {"activations": [lane], "weights": [[-5] + [0] * (dut.lanes - 1)], "last": 1}
    seen = []

    async def testbench(ctx):
        ctx.set(dut.bits, 8)
        await send(ctx, dut.operands, beat)
        ctx.set(dut.operands.payload, beat)
        ctx.set(dut.operands.valid, 1)
        for _ in range(dut.latency - 1):           # the pipeline fills
            await ctx.tick()
        for _ in range(5):
            await ctx.tick()
            seen.append((ctx.get(dut.operands.ready), ctx.get(dut.results.valid),
                         ctx.get(dut.results.payload)[0][0]))
        ctx.set(dut.results.ready, 1)
        await ctx.tick()
        seen.append(ctx.get(dut.results.payload)[0][0])

    simulate(dut, testbench)
    assert seen[:5] == [(0, 1, -15)] * 5
    assert seen[5] == -15      # the next beat started a new sum, which is -15 again


@pytest.mark.parametrize("kwargs, error, message", [
    ({"rows": 0}, ValueError, "`rows` must be a positive integer, not 0"),
    ({"rows": 2.0}, TypeError, "`rows` must be a positive integer, not 2.0"),
    ({"cols": -1}, ValueError, "`cols` must be a positive integer, not -1"),
    ({"master_bits": 1}, ValueError, "`master_bits` must be between 2 and 16, not 1"),
    ({"master_bits": 6}, ValueError,
     "`master_bits` must be a power of two for a scalable PE, not 6"),
    ({"max_terms": 0}, ValueError, "`max_terms` must be a positive integer, not 0"),
    ({"acc_width": 28}, ValueError,
     "`acc_width` must be at least 29 (accumulator_bits(8, 8, 4608)) to hold 4608 products, "
     "not 28"),
    ({"acc_width": "32"}, TypeError, "`acc_width` must be an integer, not '32'"),
    ({"supported_bits": (4, 9)}, ValueError, "`bits` must be at most `master_bits` (8), not 9"),
])
def test_mac_array_rejects(kwargs, error, message):
    params = dict(rows=2, cols=2, master_bits=8, max_terms=4608)
    params.update(kwargs)
    with pytest.raises(error) as info:
        MacArray(**params)
    assert str(info.value) == message


def test_mac_array_rejects_bits_it_cannot_run():
    dut = MacArray(rows=2, cols=2, master_bits=8, max_terms=64, supported_bits=(2, 4, 8))
    assert dut.lanes == 16
    with pytest.raises(ValueError, match=r"`bits` must be one of \[2, 4, 8\] for this "
                                         r"configuration, not 5"):
        dut.beats(64, 5)
    wide = MacArray(rows=1, cols=1, master_bits=8, max_terms=64, acc_width=40)
    assert wide.acc_width == 40


def test_operand_beats_layout_and_errors():
    dut = MacArray(rows=2, cols=1, master_bits=8, max_terms=40)
    x, w = np.arange(40).reshape(2, 20), -np.arange(20).reshape(1, 20)
    beats = dut.operand_beats(4, x, w)
    assert len(beats) == 5 and [beat["last"] for beat in beats] == [0, 0, 0, 0, 1]
    assert beats[1]["activations"][1][:4] == [24, 25, 26, 27]
    assert beats[1]["activations"][1][4:] == [0] * 12
    assert beats[4]["weights"][0][:4] == [-16, -17, -18, -19]
    packed = dut.operands.payload.shape().const(beats[0]).as_value().value
    assert packed & 0xFF == 0 and (packed >> 8) & 0xFF == 1 and packed >> 512 == 0
    assert len(dut.operand_beats(2, x[:, :0], w[:, :0])) == 1          # K = 0: one zero beat
    with pytest.raises(ValueError, match=r"`weights` must have shape \(1, 20\), not \(2, 20\)"):
        dut.operand_beats(4, x, np.zeros((2, 20), int))
    with pytest.raises(ValueError, match=r"`activations` must have shape \(2, K\), not \(20,\)"):
        dut.operand_beats(4, x[0], w)
