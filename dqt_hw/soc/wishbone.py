"""Wishbone classic (B4) interconnect of the SoC: the bus signature, an address decoder and an
arbiter. 32-bit data, word addresses, one outstanding access; a slave acknowledges with a
one-cycle `ack` while `cyc & stb` (registered feedback, as the accelerator does)."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["bus_signature", "Decoder", "Arbiter"]


def bus_signature(address_bits):
    """A Wishbone classic bus with `address_bits` word-address bits, as the master drives it."""
    if not isinstance(address_bits, int) or not 1 <= address_bits <= 30:
        raise ValueError(f"`address_bits` must be an integer between 1 and 30, "
                         f"not {address_bits!r}")
    return wiring.Signature({
        "cyc": Out(1), "stb": Out(1), "we": Out(1), "sel": Out(4),
        "adr": Out(address_bits), "dat_w": Out(32),
        "dat_r": In(32), "ack": In(1),
    })


class Decoder(wiring.Component):
    """One master (`bus`, 30-bit word addresses) to the slaves of an address map.

    `regions` is a list of (name, base, address_bits): slave `name` answers the
    2**address_bits words from word address `base` (a multiple of its size) and sees the
    offset in the region on its own `adr`. An access to no region is acknowledged with
    `dat_r` 0 one cycle later and raises `unmapped` for that cycle, so the bus never hangs.
    """

    def __init__(self, regions):
        self.regions = []
        spans = []
        for name, base, bits in regions:
            if not isinstance(base, int) or base < 0 or base % (1 << bits):
                raise ValueError(f"region {name!r}: `base` must be a multiple of its size "
                                 f"{1 << bits} words, not {base!r}")
            for other, start, end in spans:
                if base < end and start < base + (1 << bits):
                    raise ValueError(f"region {name!r} overlaps {other!r}")
            spans.append((name, base, base + (1 << bits)))
            self.regions.append((name, base, bits))
        members = {"bus": In(bus_signature(30)), "unmapped": Out(1)}
        for name, _, bits in self.regions:
            members[name] = Out(bus_signature(bits))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        hit_any = Signal()
        for name, base, bits in self.regions:
            slave = getattr(self, name)
            hit = Signal(name=f"hit_{name}")
            m.d.comb += [
                hit.eq(bus.adr[bits:] == base >> bits),
                slave.adr.eq(bus.adr[:bits]), slave.dat_w.eq(bus.dat_w),
                slave.sel.eq(bus.sel), slave.we.eq(bus.we),
                slave.cyc.eq(bus.cyc & hit), slave.stb.eq(bus.stb & hit),
            ]
            with m.If(hit):
                m.d.comb += [hit_any.eq(1), bus.dat_r.eq(slave.dat_r), bus.ack.eq(slave.ack)]
        error_ack = Signal()
        m.d.sync += error_ack.eq(bus.cyc & bus.stb & ~hit_any & ~error_ack)
        with m.If(~hit_any):
            m.d.comb += bus.ack.eq(error_ack)
        m.d.comb += self.unmapped.eq(error_ack)
        return m


class Arbiter(wiring.Component):
    """Two or more masters to one bus, round robin per access: the granted master keeps the
    bus until its access is acknowledged (or it drops `cyc`), then the next requesting master
    in turn gets it. So a CPU's instruction fetches cannot starve its data accesses, even when
    the fetch bus holds `cyc` high from one access to the next."""

    def __init__(self, masters, address_bits=30):
        if not isinstance(masters, int) or masters < 2:
            raise ValueError(f"`masters` must be an integer >= 2, not {masters!r}")
        self.masters = masters
        members = {"bus": Out(bus_signature(address_bits))}
        for i in range(masters):
            members[f"m{i}"] = In(bus_signature(address_bits))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        masters = [getattr(self, f"m{i}") for i in range(self.masters)]
        granted = Signal(range(self.masters))
        with m.Switch(granted):
            for i, master in enumerate(masters):
                with m.Case(i):
                    m.d.comb += [
                        self.bus.cyc.eq(master.cyc), self.bus.stb.eq(master.stb),
                        self.bus.we.eq(master.we), self.bus.sel.eq(master.sel),
                        self.bus.adr.eq(master.adr), self.bus.dat_w.eq(master.dat_w),
                        master.ack.eq(self.bus.ack),
                    ]
                    # Hand over after this master's access (or while it is idle).
                    with m.If(~master.cyc | self.bus.ack):
                        for offset in reversed(range(1, self.masters)):
                            other = (i + offset) % self.masters
                            with m.If(masters[other].cyc):
                                m.d.sync += granted.eq(other)
        for master in masters:
            m.d.comb += master.dat_r.eq(self.bus.dat_r)
        return m
