"""RegisterFIFO against a Python deque under random pushes and pops (depths 1, 3, 4)."""

import collections

import pytest

from dqt_hw.hdl.register_fifo import RegisterFIFO
from dqt_hw.hdl.sim import rng_for, simulate, test_seed


@pytest.mark.parametrize("depth", [1, 3, 4])
def test_register_fifo_behaves_like_a_queue(depth):
    seed = test_seed(f"register fifo depth {depth}")
    rng = rng_for(seed, depth)
    dut = RegisterFIFO(width=8, depth=depth)
    model = collections.deque()

    async def bench(ctx):
        for step in range(400):
            write, read = rng.random() < 0.5, rng.random() < 0.5
            value = rng.randrange(256)
            assert ctx.get(dut.w_rdy) == (len(model) < depth)
            assert ctx.get(dut.r_rdy) == (len(model) > 0)
            assert ctx.get(dut.level) == len(model)
            if model:
                assert ctx.get(dut.r_data) == model[0]
            ctx.set(dut.w_en, write)
            ctx.set(dut.w_data, value)
            ctx.set(dut.r_en, read)
            took = read and bool(model)
            if write and len(model) < depth:
                model.append(value)
            if took:
                model.popleft()
            await ctx.tick()

    simulate(dut, bench)
