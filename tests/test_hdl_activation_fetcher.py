"""ActivationFetcher: every beat of random window walks against a Python walk of the layout."""

import numpy as np
import pytest
from amaranth.hdl import Module

from dqt_hw.accel.layout import pack_groups, storage_channels
from dqt_hw.hdl.activation_fetcher import ActivationFetcher
from dqt_hw.hdl.data_memory import DataMemory
from dqt_hw.hdl.sim import rng_for, simulate, test_seed


def window_fields(h, w, cp, kernel, stride, pad, base):
    from dqt_hw.accel.compiler import window_fields as fields
    out_h = (h + 2 * pad - kernel) // stride + 1
    out_w = (w + 2 * pad - kernel) // stride + 1
    return dict(fields(h, w, cp, kernel, kernel, stride, pad), in_a=base, out_h=out_h,
                out_w=out_w)


def expected_beats(elements, f, lanes):
    """(codes of lanes < `lanes`, index, last) of every beat of the walk."""
    beats = []
    chunks = f["in_cp"] // lanes
    for oy in range(f["out_h"]):
        for ox in range(f["out_w"]):
            index = 0
            for ty in range(f["kernel_h"]):
                for tx in range(f["kernel_w"]):
                    iy, ix = oy * f["stride"] - f["pad"] + ty, ox * f["stride"] - f["pad"] + tx
                    for c in range(chunks):
                        last = (ty == f["kernel_h"] - 1 and tx == f["kernel_w"] - 1
                                and c == chunks - 1)
                        if 0 <= iy < f["in_h"] and 0 <= ix < f["in_w"]:
                            e = (iy * f["in_w"] + ix) * f["in_cp"] + c * lanes
                            codes = [int(v) for v in elements[e:e + lanes]]
                        else:
                            codes = [0] * lanes
                        beats.append((codes, index, int(last)))
                        index += 1
    return beats


def run_walk(elements, fields, lanes_log2, both, *, base, stall, seed, queues=(3, 2, True)):
    words = [0] * base + [int(w) for w in pack_groups(elements, signed=False)] + [0] * 4
    dut = ActivationFetcher(queue_depth=queues[0], group_depth=queues[1], bypass=queues[2])
    m = Module()
    m.submodules.dut = dut
    m.submodules.memory = memory = DataMemory(depth=len(words), init=words)
    # A competing client (the tensor writer) that steals the port at random.
    steal_rng = rng_for(seed, "steal")
    m.d.comb += [memory.port.addr.eq(dut.port.addr), memory.port.read.eq(dut.port.read),
                 dut.port.rdata.eq(memory.port.rdata)]
    got = []
    lanes = 1 << lanes_log2

    async def bench(ctx):
        for name, value in fields.items():
            ctx.set(getattr(dut.window, name), value)
        ctx.set(dut.window.chunks, fields["in_cp"] // lanes)
        ctx.set(dut.window.step, lanes)
        ctx.set(dut.window.lanes_log2, lanes_log2)
        ctx.set(dut.window.both, both)
        rng = rng_for(seed, "ready")
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        total = len(expected)
        while len(got) < total:
            ctx.set(dut.beats.ready, int(rng.random() >= stall))
            ctx.set(dut.port.grant, int(steal_rng.random() >= stall))
            await ctx.delay(1e-10)
            if ctx.get(dut.beats.valid) and ctx.get(dut.beats.ready):
                beat = ctx.get(dut.beats.payload)
                got.append(([int(beat.codes[l]) for l in range(lanes)], int(beat.index),
                            int(beat.last)))
            await ctx.tick()
        for _ in range(8):
            await ctx.tick()
        assert ctx.get(dut.idle)

    expected = expected_beats(elements, fields, lanes)
    simulate(m, bench)
    return got, expected


@pytest.mark.parametrize("queues", [(3, 2, True), (2, 1, True), (2, 1, False)],
                         ids=["default", "short", "ice40"])
@pytest.mark.parametrize("case", range(6))
def test_fetcher_walks_every_window(case, queues):
    seed = test_seed(f"activation fetcher {case}")
    rng = np.random.default_rng([seed, case])
    lanes_log2 = [0, 2, 4, 4, 2, 0][case]
    lanes = 1 << lanes_log2
    channels = int(rng.choice([1, 3, 16, 32])) if lanes == 1 else int(rng.choice([4, 16, 32]))
    cp = storage_channels(channels, lanes)
    h, w = int(rng.integers(3, 7)), int(rng.integers(3, 7))
    kernel = int(rng.integers(1, 4))
    stride, pad = int(rng.integers(1, 3)), int(rng.integers(0, 2))
    if kernel > h + 2 * pad or kernel > w + 2 * pad:
        kernel = 1
    codes = rng.integers(0, 256, size=(h, w, channels))
    elements = np.zeros((h, w, cp), dtype=np.int64)
    elements[..., :channels] = codes
    elements = elements.reshape(-1)
    base = 2 * int(rng.integers(0, 4))
    fields = window_fields(h, w, cp, kernel, stride, pad, base)
    both = int(case % 2 == 0 or lanes < 16)
    got, expected = run_walk(elements, fields, lanes_log2, both, base=base,
                             stall=[0.0, 0.3][case % 2], seed=seed + case, queues=queues)
    if not both:   # only high nibbles were read: the codes' low nibbles are 0
        expected = [([c & 0xF0 for c in codes], i, l) for codes, i, l in expected]
    assert got == expected


@pytest.mark.parametrize("lanes_log2, both, queues", [(4, 0, (3, 2)), (2, 1, (3, 2)),
                                                      (0, 1, (3, 2)), (4, 0, (2, 1))])
def test_fetcher_streams_one_beat_per_cycle(lanes_log2, both, queues):
    """With the port always granted and the consumer always ready, a walk of N beats takes
    N cycles plus a fixed pipeline fill: the reads of the next group overlap the beats. At
    b = 2 (a group per beat) one group in flight is enough: a read starts in the cycle the
    previous group leaves the queue."""
    channels = 64
    elements = np.arange(4 * 4 * channels) % 256
    fields = window_fields(4, 4, channels, 3, 1, 1, 0)
    words = [int(w) for w in pack_groups(elements, signed=False)] + [0] * 4
    dut = ActivationFetcher(queue_depth=queues[0], group_depth=queues[1])
    m = Module()
    m.submodules.dut = dut
    m.submodules.memory = memory = DataMemory(depth=len(words), init=words)
    m.d.comb += [memory.port.addr.eq(dut.port.addr), memory.port.read.eq(dut.port.read),
                 dut.port.rdata.eq(memory.port.rdata), dut.port.grant.eq(1)]
    lanes = 1 << lanes_log2
    total = len(expected_beats(elements, fields, lanes))
    cycles = []

    async def bench(ctx):
        for name, value in fields.items():
            ctx.set(getattr(dut.window, name), value)
        ctx.set(dut.window.chunks, channels // lanes)
        ctx.set(dut.window.step, lanes)
        ctx.set(dut.window.lanes_log2, lanes_log2)
        ctx.set(dut.window.both, both)
        ctx.set(dut.beats.ready, 1)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        count = elapsed = 0
        while count < total:
            await ctx.tick()
            elapsed += 1
            count += ctx.get(dut.beats.valid)
        cycles.append(elapsed)

    simulate(m, bench)
    assert cycles[0] <= total + 6, (cycles[0], total)
