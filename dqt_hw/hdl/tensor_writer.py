"""The tensor writer: output codes to the data memory (nibble-split groups) or the wide memory.

Producers (the conv drain, the pool and elementwise units) send one output value per
transfer, with where it goes: for a narrow tensor the group (the word address of its
high-nibble word) and the lane, for a wide tensor the wide-memory index. Narrow codes of one
group collect in a staging register; the transfer marked `flush` writes the group's high and
low nibble words with a write mask covering exactly the lanes received, so no group is ever
read back (the iCE40 SPRAM's nibble mask does this in hardware). Unstaged (`staged=False`,
where flip-flops are scarce) every narrow code is written at once, its two nibbles with a
one-lane mask: two writes per code instead of two per group, and no 128-bit staging register.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .data_memory import ADDRESS_BITS, NIBBLES, data_port_signature

__all__ = ["output_layout", "TensorWriter"]


def output_layout():
    """One output value and its place (see the module docstring)."""
    return data.StructLayout({
        "wide": unsigned(1),
        "addr": unsigned(ADDRESS_BITS),
        "lane": unsigned(4),
        "value": signed(32),
        "flush": unsigned(1),
    })


class TensorWriter(wiring.Component):
    """Ports: `input` (stream of `output_layout()`), `port` (data memory client), `wide_addr`,
    `wide_data`, `wide_en` (a write port of the wide memory), `idle`.

    A narrow flush (unstaged: every narrow code) costs two data-memory writes (high word, then
    low word) during which `input` is not ready; a wide value is written in the cycle it is
    accepted.
    """

    def __init__(self, *, wide_depth, staged=True):
        if not isinstance(staged, bool):
            raise TypeError(f"`staged` must be a bool, not {staged!r}")
        self.wide_depth, self.staged = wide_depth, staged
        super().__init__({
            "input": In(stream.Signature(output_layout())),
            "port": Out(data_port_signature()),
            "wide_addr": Out(range(wide_depth)),
            "wide_data": Out(32),
            "wide_en": Out(1),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        item = self.input.payload
        address = Signal(ADDRESS_BITS)
        writing, phase = Signal(), Signal()
        accept = Signal()
        m.d.comb += [
            self.input.ready.eq(~writing),
            accept.eq(self.input.valid & ~writing),
            self.wide_addr.eq(item.addr),
            self.wide_data.eq(item.value),
            self.wide_en.eq(accept & item.wide),
        ]
        with m.If(accept & ~item.wide):
            m.d.sync += address.eq(item.addr)
            with m.If(item.flush if self.staged else 1):
                m.d.sync += [writing.eq(1), phase.eq(0)]
        mask = Signal(NIBBLES)
        if self.staged:
            # One register per lane and nibble, loaded with that lane's enable: no shifters.
            high = [Signal(4, name=f"high_{lane}") for lane in range(NIBBLES)]
            low = [Signal(4, name=f"low_{lane}") for lane in range(NIBBLES)]
            with m.If(accept & ~item.wide):
                with m.Switch(item.lane):
                    for lane in range(NIBBLES):
                        with m.Case(lane):
                            m.d.sync += [high[lane].eq(item.value[4:8]),
                                         low[lane].eq(item.value[:4]),
                                         mask[lane].eq(1)]
            with m.If(writing & self.port.grant & phase):
                m.d.sync += mask.eq(0)
            wdata = Mux(phase, Cat(*low), Cat(*high))
        else:
            code, lane = Signal(8), Signal(4)
            with m.If(accept & ~item.wide):
                m.d.sync += [code.eq(item.value[:8]), lane.eq(item.lane)]
            m.d.comb += mask.eq(1 << lane)
            wdata = Mux(phase, code[:4], code[4:]).replicate(NIBBLES)
        m.d.comb += [
            self.port.addr.eq(address + phase),
            self.port.write.eq(writing),
            self.port.wdata.eq(wdata),
            self.port.wmask.eq(mask),
        ]
        with m.If(writing & self.port.grant):
            with m.If(phase):
                m.d.sync += writing.eq(0)
            with m.Else():
                m.d.sync += phase.eq(1)
        m.d.comb += self.idle.eq(~writing)
        return m
