"""Amaranth-simulator helpers for the compute blocks' tests: a runner, stream drivers with
random stalls, and the seed convention of the randomized tests.

Randomized tests take their seed from `DQT_SEED` (default 2026) and print it, so a failure can
be replayed with `DQT_SEED=<seed> python -m pytest tests/test_hdl_<block>.py`.
"""

import os
import random

from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.sim import Simulator

__all__ = ["CLOCK_PERIOD", "DEFAULT_SEED", "test_seed", "rng_for", "simulate", "send", "receive",
           "latency_of", "run_stream", "WishboneTransport"]

CLOCK_PERIOD = 1e-8
DEFAULT_SEED = 2026


def test_seed(label):
    """The seed of a randomized test (env `DQT_SEED`, default 2026), printed with `label`."""
    seed = int(os.environ.get("DQT_SEED", DEFAULT_SEED))
    print(f"{label}: seed {seed} (replay with DQT_SEED={seed})")
    return seed


test_seed.__test__ = False   # not a pytest test despite its name


def simulate(dut, *testbenches, clocked=True, background=()):
    """Run async testbenches on `dut` to completion (with a `sync` clock when `clocked`);
    `background` testbenches (monitors) run beside them and are stopped with them."""
    sim = Simulator(dut)
    if clocked:
        sim.add_clock(CLOCK_PERIOD)
    for testbench in testbenches:
        sim.add_testbench(testbench)
    for testbench in background:
        sim.add_testbench(testbench, background=True)
    sim.run()


async def _stall(ctx, rng, stall):
    while rng is not None and rng.random() < stall:
        await ctx.tick()


async def send(ctx, stream, payload, *, rng=None, stall=0.0):
    """Offer `payload` on a stream sink of the DUT until it is accepted.

    With `rng`, first idles (valid low) for a geometric number of cycles, P(idle) = `stall`.
    """
    await _stall(ctx, rng, stall)
    ctx.set(stream.payload, payload)
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def receive(ctx, stream, *, rng=None, stall=0.0):
    """Take one payload from a stream source of the DUT, first holding ready low for a
    geometric number of cycles (P = `stall`) to apply back-pressure."""
    await _stall(ctx, rng, stall)
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


def rng_for(seed, *salt):
    """A `random.Random` derived from the test seed and a per-case salt."""
    return random.Random(f"{seed}:{':'.join(map(str, salt))}")


async def latency_of(ctx, sink, source, payload):
    """Cycles from the clock edge that accepts `payload` on `sink` to the edge after which
    `source.valid` is high (1 = the output is valid right after the accepting edge). The block
    must be idle with an empty output; `source.ready` is left high."""
    ctx.set(source.ready, 1)
    ctx.set(sink.payload, payload)
    ctx.set(sink.valid, 1)
    await ctx.tick().until(sink.ready)
    ctx.set(sink.valid, 0)
    cycles = 1
    while not ctx.get(source.valid):
        await ctx.tick()
        cycles += 1
    return cycles


class _Harness(Elaboratable):
    """`dut` plus a free-running cycle counter, simulated together."""

    def __init__(self, dut):
        self.dut = dut
        self.cycle = Signal(32)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        m.d.sync += self.cycle.eq(self.cycle + 1)
        return m


def run_stream(dut, items, *, rng=None, stall=0.0, sink="input", source="output"):
    """Stream `items` through a one-in, one-out block; return (outputs, cycles).

    `items` is a list of (ports, payload): `ports` maps the block's configuration ports to the
    values they hold while `payload` is offered on `sink`. With `rng`, both sides stall with
    probability `stall` per cycle. `cycles` counts clock edges from the one accepting the first
    item to the one delivering the last output: items + latency - 1 at full throughput.
    """
    sink_port, source_port = getattr(dut, sink), getattr(dut, source)
    harness = _Harness(dut)
    outputs, first, last = [], [], []

    async def producer(ctx):
        for ports, payload in items:
            for name, value in ports.items():
                ctx.set(getattr(dut, name), value)
            await send(ctx, sink_port, payload, rng=rng, stall=stall)
            if not first:
                first.append(ctx.get(harness.cycle))

    async def consumer(ctx):
        for _ in items:
            outputs.append(await receive(ctx, source_port, rng=rng, stall=stall))
        last.append(ctx.get(harness.cycle))

    simulate(harness, producer, consumer)
    return outputs, last[0] - first[0]


class WishboneTransport:
    """The `dqt_hw.accel.driver` transport over a Wishbone classic bus in the Amaranth
    simulator (one access at a time, from an async testbench's `ctx`)."""

    def __init__(self, ctx, bus):
        self.ctx, self.bus = ctx, bus

    async def _start(self, address, write, value=0):
        ctx, bus = self.ctx, self.bus
        ctx.set(bus.adr, address >> 2)
        ctx.set(bus.we, write)
        ctx.set(bus.dat_w, value)
        ctx.set(bus.cyc, 1)
        ctx.set(bus.stb, 1)

    def _end(self):
        for signal in (self.bus.cyc, self.bus.stb, self.bus.we):
            self.ctx.set(signal, 0)

    async def write(self, address, value):
        await self._start(address, 1, value)
        await self.ctx.tick().until(self.bus.ack)
        self._end()

    async def read(self, address):
        await self._start(address, 0)
        value, = await self.ctx.tick().sample(self.bus.dat_r).until(self.bus.ack)
        self._end()
        return value

    async def wait(self, cycles):
        await self.ctx.tick().repeat(cycles)
