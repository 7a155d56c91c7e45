"""The timed status LEDs of a board: `link` (a byte went over the host link lately) and `alive`
(blinks while the design clock runs and the reset is released).

`StatusLights(clock_hz)` counts one tick every TICK_SECONDS, and both lights run off that one
counter (an iCE40 cell per counter bit is what they cost): `link` lights at an `activity` pulse
and goes out at the second tick after the last one, so it stays lit 1 to 2 ticks; `alive`
toggles every BLINK_TICKS ticks.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..hdl.arith import check_int_at_least

__all__ = ["StatusLights", "TICK_SECONDS", "BLINK_TICKS"]

#: The lights' time step: a single byte keeps `link` lit for one to two of them.
TICK_SECONDS = 0.05
#: Ticks per half period of `alive`: it blinks at 1 / (2 * 10 * 0.05 s) = 1 Hz.
BLINK_TICKS = 10


class StatusLights(wiring.Component):
    """See the module docstring. `clock_hz`: the design clock (Hz)."""

    activity: In(1)
    link: Out(1)
    alive: Out(1)

    def __init__(self, clock_hz):
        check_int_at_least("clock_hz", clock_hz, 1, "a positive integer (Hz)")
        #: Cycles per tick.
        self.tick_cycles = max(1, round(clock_hz * TICK_SECONDS))
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        cycle = Signal(range(self.tick_cycles))
        ticks = Signal(range(BLINK_TICKS))
        tick = cycle == self.tick_cycles - 1
        recent, earlier = Signal(), Signal()     # activity in this tick, and in the one before
        m.d.sync += cycle.eq(cycle + 1)
        with m.If(tick):
            m.d.sync += [cycle.eq(0), ticks.eq(ticks + 1), recent.eq(0), earlier.eq(recent)]
            with m.If(ticks == BLINK_TICKS - 1):
                m.d.sync += [ticks.eq(0), self.alive.eq(~self.alive)]
        with m.If(self.activity):
            m.d.sync += recent.eq(1)
        m.d.comb += self.link.eq(recent | earlier)
        return m
