"""RegisterFIFO against a Python deque under random pushes and pops (depths 1, 3, 4)."""

import collections

import pytest

from dqt_hw.hdl.register_fifo import RegisterFIFO
from dqt_hw.hdl.sim import rng_for, simulate, test_seed


@pytest.mark.parametrize("depth", [1, 3, 4])
@pytest.mark.parametrize("bypass", [False, True])
def test_register_fifo_behaves_like_a_queue(depth, bypass):
    seed = test_seed(f"register fifo depth {depth} bypass {bypass}")
    rng = rng_for(seed, depth, bypass)
    dut = RegisterFIFO(width=8, depth=depth, bypass=bypass)
    model = collections.deque()

    async def bench(ctx):
        for step in range(400):
            write, read = rng.random() < 0.5, rng.random() < 0.5
            value = rng.randrange(256)
            ctx.set(dut.w_en, write)
            ctx.set(dut.w_data, value)
            ctx.set(dut.r_en, read)
            await ctx.delay(1e-10)
            assert ctx.get(dut.w_rdy) == (len(model) < depth)
            assert ctx.get(dut.level) == len(model)
            passing = bypass and write and not model
            assert ctx.get(dut.r_rdy) == (len(model) > 0 or passing)
            if model or passing:
                assert ctx.get(dut.r_data) == (model[0] if model else value)
            if not (passing and read):              # else straight through, not kept
                took = read and bool(model)
                if write and len(model) < depth:
                    model.append(value)
                if took:
                    model.popleft()
            await ctx.tick()

    simulate(dut, bench)
