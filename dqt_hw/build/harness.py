"""A four-pin wrapper that lets nextpnr time any block on any device, whatever its port count.

A compute block has hundreds of port bits; the iCE40 UP5K has 39 I/O pins, and a purely
combinational block (the nest unit) has no clocked path for nextpnr to time at all. The
harness fixes both: every input of the block is a bit of a shift register fed from one pin,
every output is captured in a register and folded into a multiple-input signature register
(MISR) whose last bit drives one pin. So every path through the block runs register to
register, no logic is unobservable (nothing is optimized away), and the only harness logic on
a timed path is the capture register itself. The harness is used for place and route only;
area figures come from synthesizing the block alone.
"""

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["TimingHarness"]


class TimingHarness(wiring.Component):
    """Registers around `block` (a `wiring.Component` in the sync domain).

    Ports: ``serial_in`` (1 bit, shifted into the input register chain every cycle) and
    ``serial_out`` (1 bit, the MISR's last bit). Adds one input-register bit per block input
    bit and two flip-flops plus one LUT per block output bit.
    """

    serial_in: In(1)
    serial_out: Out(1)

    def __init__(self, block):
        if not isinstance(block, wiring.Component):
            raise TypeError(f"`block` must be an Amaranth wiring.Component, not {block!r}")
        self._block = block
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.block = block = self._block
        inputs, outputs = [], []
        for _path, member, value in block.signature.flatten(block):
            (inputs if member.flow == In else outputs).append(Value.cast(value))
        in_width = sum(len(value) for value in inputs)
        out_width = sum(len(value) for value in outputs)
        if out_width == 0:
            raise ValueError(f"block {type(block).__name__} has no outputs to time")
        if in_width:
            chain = Signal(in_width)
            m.d.sync += chain.eq(Cat(self.serial_in, chain[:-1]))
            start = 0
            for value in inputs:
                m.d.comb += value.eq(chain[start:start + len(value)])
                start += len(value)
            feed = chain[-1]
        else:
            feed = self.serial_in
        capture = Signal(out_width)
        signature = Signal(out_width)
        m.d.sync += [
            capture.eq(Cat(*outputs)),
            signature.eq(capture ^ Cat(feed, signature[:-1])),
        ]
        m.d.comb += self.serial_out.eq(signature[-1])
        return m
