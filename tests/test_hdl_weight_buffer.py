"""WeightBuffer: rows loaded from the data memory come out nested and packed by mode."""

import numpy as np
import pytest
from amaranth.hdl import Module

from dqt_hw.accel.layout import pack_groups
from dqt_hw.golden import nest
from dqt_hw.hdl.data_memory import DataMemory
from dqt_hw.hdl.pe import mode_bits
from dqt_hw.hdl.sim import rng_for, simulate, test_seed
from dqt_hw.hdl.weight_buffer import WeightBuffer, unpack_beat, words_per_group


@pytest.mark.parametrize("narrow", [False, True])
@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
def test_loaded_rows_are_nested_and_packed(bits, narrow):
    seed = test_seed(f"weight buffer b={bits}" + (" narrow" if narrow else ""))
    rng = np.random.default_rng([seed, bits])
    cols, groups = 4, 3
    columns = int(rng.integers(1, cols + 1))
    rows = rng.integers(-127, 128, size=(columns, groups * 16))
    base = 6
    words = [0] * base + [int(w) for w in pack_groups(rows.reshape(-1), signed=True)]
    dut = WeightBuffer(cols=cols, depth=groups * 4, supported_bits=range(2, 9), narrow=narrow)
    m = Module()
    m.submodules.dut = dut
    m.submodules.memory = memory = DataMemory(depth=len(words), init=words)
    grant_rng = rng_for(seed, "grant", bits)
    m.d.comb += [memory.port.addr.eq(dut.port.addr), memory.port.read.eq(dut.port.read),
                 dut.port.rdata.eq(memory.port.rdata)]
    width = mode_bits(bits)
    lanes = (8 // width) ** 2
    read = {}

    async def bench(ctx):
        ctx.set(dut.row_base, base)
        ctx.set(dut.row_words, 2 * groups)
        ctx.set(dut.columns, columns)
        ctx.set(dut.bits, bits)
        ctx.set(dut.both, int(bits >= 4))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for _ in range(400):
            ctx.set(dut.port.grant, int(grant_rng.random() < 0.7))
            await ctx.tick()
            if ctx.get(dut.idle):
                break
        assert ctx.get(dut.idle)
        for address in range(groups * words_per_group(width)):
            ctx.set(dut.read_addr, address)
            ctx.set(dut.read_en, 1)
            await ctx.tick()
            read[address] = ctx.get(dut.read_data)

    simulate(m, bench)
    nested = nest(rows, master_bits=8, bits=bits, signed=True)
    beats_per_word = 32 // (width * lanes)
    for column in range(columns):
        got = []
        for address in sorted(read):
            word = (read[address] >> (32 * column)) & 0xFFFFFFFF
            for beat in range(beats_per_word):
                got += unpack_beat(word, beat, width, lanes)
        assert got == list(nested[column])
