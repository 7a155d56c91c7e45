# amaranth: UnusedElaboratable=no
"""The board's timed status lights in the Amaranth simulator: `link` stays lit one to two ticks
after a byte, `alive` blinks with a period of 2 * BLINK_TICKS ticks."""

import pytest
from amaranth.sim import Simulator

from dqt_hw.boards.lights import BLINK_TICKS, TICK_SECONDS, StatusLights

CLOCK_HZ = 200                     # 10 cycles per tick


def _trace(cycles, pulses):
    """(link, alive) after each of `cycles` cycles, with `activity` high in cycles `pulses`."""
    dut = StatusLights(CLOCK_HZ)
    levels = []

    async def bench(ctx):
        for cycle in range(cycles):
            ctx.set(dut.activity, cycle in pulses)
            await ctx.tick()
            levels.append((ctx.get(dut.link), ctx.get(dut.alive)))

    sim = Simulator(dut)
    sim.add_clock(1 / CLOCK_HZ)
    sim.add_testbench(bench)
    sim.run()
    return dut.tick_cycles, levels


def test_tick_is_the_documented_time_step():
    assert StatusLights(CLOCK_HZ).tick_cycles == round(CLOCK_HZ * TICK_SECONDS) == 10
    assert StatusLights(12_000_000).tick_cycles == 600_000


@pytest.mark.parametrize("at", [0, 3, 9, 25])
def test_link_stays_lit_one_to_two_ticks_after_a_byte(at):
    tick, levels = _trace(at + 4 * 10, {at})
    link = [lit for lit, _ in levels]
    assert not any(link[:at])
    lit = link[at:]
    on = lit.index(False)
    assert all(lit[:on]) and not any(lit[on:])
    assert tick <= on <= 2 * tick


def test_link_follows_a_stream_of_bytes():
    _, levels = _trace(200, set(range(5, 120, 7)))
    link = [lit for lit, _ in levels]
    assert all(link[5:120]) and not any(link[145:])


def test_alive_blinks_once_per_two_blink_intervals():
    tick, levels = _trace(5 * BLINK_TICKS * 10, set())
    alive = [light for _, light in levels]
    edges = [i for i in range(1, len(alive)) if alive[i] != alive[i - 1]]
    assert edges[0] == BLINK_TICKS * tick - 1
    assert all(b - a == BLINK_TICKS * tick for a, b in zip(edges, edges[1:]))
    assert len(edges) >= 4


def test_clock_is_validated():
    with pytest.raises(ValueError, match="clock_hz"):
        StatusLights(0)
