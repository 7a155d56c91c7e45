"""Board clocks: PLL settings for iCE40 and ECP5, and the `sync` domain with its power-on reset.

`plan_clock(family, source_hz, want_hz)` picks the PLL dividers whose output is closest to
`want_hz` (the rules of the icepll and ecppll tools; the data sheets' VCO and phase-detector
ranges), or no PLL when the board's oscillator already runs at `want_hz`. `ClockReset(board,
plan)` builds the `sync` domain's clock and reset from it: the board's clock pin drives the PLL (SB_PLL40_PAD on
iCE40, EHXPLLL on ECP5) or a global buffer; `sync` is held in reset until the PLL is locked
and then for 15 us more (iCE40 block RAMs read zeros for about 3 us after configuration).
"""

import dataclasses

from amaranth.hdl import (ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module,
                          ResetSignal, Signal)
from amaranth.lib import io

__all__ = ["ClockPlan", "plan_clock", "ClockReset", "POR_SECONDS"]

#: Reset held after the clock is stable (the iCE40 BRAM erratum needs > 3 us).
POR_SECONDS = 15e-6

_ICE40 = dict(pfd=(10e6, 133e6), vco=(533e6, 1066e6), out=(16e6, 275e6))
_ECP5 = dict(pfd=(3.125e6, 400e6), vco=(400e6, 800e6), out=(3.125e6, 400e6))


@dataclasses.dataclass(frozen=True)
class ClockPlan:
    """How the design clock is made: `clock_hz` is what the design runs at (the PLL's
    achieved output, or the oscillator itself when `primitive` is None)."""
    family: str
    source_hz: int
    clock_hz: float
    primitive: str | None = None
    parameters: tuple = ()           # (name, value) pairs of the PLL instance

    @property
    def params(self):
        return dict(self.parameters)

    def describe(self):
        if self.primitive is None:
            return f"{self.clock_hz / 1e6:g} MHz straight from the board oscillator"
        settings = ", ".join(f"{k}={v}" for k, v in self.parameters)
        return (f"{self.clock_hz / 1e6:.4g} MHz from the {self.source_hz / 1e6:g} MHz "
                f"oscillator through {self.primitive} ({settings})")


def _ice40_filter_range(pfd):
    for limit, value in ((17e6, 1), (26e6, 2), (44e6, 3), (66e6, 4), (101e6, 5)):
        if pfd < limit:
            return value
    return 6


def _ice40_pll(source_hz, want_hz):
    best = None
    for divr in range(16):
        pfd = source_hz / (divr + 1)
        if not _ICE40["pfd"][0] <= pfd <= _ICE40["pfd"][1]:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not _ICE40["vco"][0] <= vco <= _ICE40["vco"][1]:
                continue
            for divq in range(1, 7):
                out = vco / (1 << divq)
                if _ICE40["out"][0] <= out <= _ICE40["out"][1]:
                    if best is None or abs(out - want_hz) < abs(best[0] - want_hz):
                        best = (out, divr, divf, divq, _ice40_filter_range(pfd))
    if best is None:
        return None
    out, divr, divf, divq, filter_range = best
    return ClockPlan("ice40", source_hz, out, "SB_PLL40_PAD", (
        ("FEEDBACK_PATH", "SIMPLE"), ("DIVR", divr), ("DIVF", divf), ("DIVQ", divq),
        ("FILTER_RANGE", filter_range)))


def _ecp5_pll(source_hz, want_hz):
    best = None
    for clki_div in range(1, 129):
        pfd = source_hz / clki_div
        if not _ECP5["pfd"][0] <= pfd <= _ECP5["pfd"][1]:
            continue
        for clkfb_div in range(1, 81):
            out = pfd * clkfb_div
            if not _ECP5["out"][0] <= out <= _ECP5["out"][1]:
                continue
            # The VCO nearest the middle of its range (as ecppll does).
            clkop_div = min(128, max(1, round(sum(_ECP5["vco"]) / 2 / out)))
            if not _ECP5["vco"][0] <= out * clkop_div <= _ECP5["vco"][1]:
                continue
            if best is None or abs(out - want_hz) < abs(best[0] - want_hz):
                best = (out, clki_div, clkfb_div, clkop_div)
    if best is None:
        return None
    out, clki_div, clkfb_div, clkop_div = best
    return ClockPlan("ecp5", source_hz, out, "EHXPLLL", (
        ("CLKI_DIV", clki_div), ("CLKFB_DIV", clkfb_div), ("CLKOP_DIV", clkop_div),
        ("CLKOP_CPHASE", clkop_div - 1), ("CLKOP_FPHASE", 0)))


def plan_clock(family, source_hz, want_hz):
    """The `ClockPlan` for a design clock of `want_hz` from a `source_hz` oscillator.

    Raises ValueError when no PLL setting comes within 1 % of `want_hz`.
    """
    if family not in ("ice40", "ecp5"):
        raise ValueError(f"`family` must be 'ice40' or 'ecp5', not {family!r}")
    if not isinstance(want_hz, (int, float)) or want_hz <= 0:
        raise ValueError(f"the design clock must be a positive frequency, not {want_hz!r}")
    if abs(want_hz - source_hz) <= 1e-6 * source_hz:
        return ClockPlan(family, source_hz, float(source_hz))
    plan = (_ice40_pll if family == "ice40" else _ecp5_pll)(source_hz, want_hz)
    limits = _ICE40["out"] if family == "ice40" else _ECP5["out"]
    if plan is None or abs(plan.clock_hz - want_hz) > 0.01 * want_hz:
        raise ValueError(f"no {family} PLL setting makes {want_hz / 1e6:g} MHz from "
                         f"{source_hz / 1e6:g} MHz within 1 % (PLL outputs "
                         f"{limits[0] / 1e6:g}..{limits[1] / 1e6:g} MHz, or exactly the "
                         f"oscillator's {source_hz / 1e6:g} MHz)")
    return plan


class ClockReset(Elaboratable):
    """Drives the clock and reset of the `sync` domain of a board design from `plan` (a
    `ClockPlan`) and the board's clock resource `resource` (name, number); `locked` is high
    once the clock is stable.

    An Elaboratable without ports: the top level defines `sync` (`m.domains.sync =
    ClockDomain()`, as Amaranth 0.6 will require) and adds this as a submodule.
    """

    def __init__(self, plan, resource):
        if not isinstance(plan, ClockPlan):
            raise TypeError(f"`plan` must be a ClockPlan, not {plan!r}")
        self.plan = plan
        self.resource = resource
        self.locked = Signal()

    def elaborate(self, platform):
        m = Module()
        plan = self.plan
        pin = platform.request(*self.resource, dir="-")
        clock = Signal()
        if plan.primitive is None:
            m.submodules.clock_buffer = buffer = io.Buffer("i", pin)
            m.d.comb += [clock.eq(buffer.i), self.locked.eq(1)]
        elif plan.primitive == "SB_PLL40_PAD":
            m.submodules.pll = Instance(
                "SB_PLL40_PAD", i_PACKAGEPIN=pin.io, i_RESETB=Const(1), i_BYPASS=Const(0),
                o_PLLOUTGLOBAL=clock, o_LOCK=self.locked,
                **{f"p_{name}": value for name, value in plan.parameters})
        else:
            m.submodules.clock_buffer = buffer = io.Buffer("i", pin)
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=f"{plan.source_hz / 1e6:g}",
                a_FREQUENCY_PIN_CLKOP=f"{plan.clock_hz / 1e6:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA",
                p_OUTDIVIDER_MUXB="DIVB", p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
                p_CLKOP_ENABLE="ENABLED", p_FEEDBK_PATH="CLKOP",
                **{f"p_{name}": value for name, value in plan.parameters},
                i_RST=Const(0), i_STDBY=Const(0), i_CLKI=buffer.i, o_CLKOP=clock,
                i_CLKFB=clock, i_PHASESEL0=Const(0), i_PHASESEL1=Const(0),
                i_PHASEDIR=Const(1), i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1),
                i_PLLWAKESYNC=Const(0), i_ENCLKOP=Const(0), o_LOCK=self.locked)
        if plan.primitive is not None:
            platform.add_clock_constraint(clock, plan.clock_hz)

        # Power-on reset: a counter in a reset-less domain on the same clock.
        delay = max(1, int(POR_SECONDS * plan.clock_hz))
        m.domains.por = ClockDomain("por", reset_less=True, local=True)
        timer = Signal(range(delay + 1))
        ready = Signal()
        m.d.comb += [ClockSignal("por").eq(clock), ClockSignal("sync").eq(clock),
                     ResetSignal("sync").eq(~ready)]
        with m.If(~self.locked):
            m.d.por += [timer.eq(0), ready.eq(0)]
        with m.Elif(timer == delay):
            m.d.por += ready.eq(1)
        with m.Else():
            m.d.por += timer.eq(timer + 1)
        return m
