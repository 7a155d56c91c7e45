"""A small first-in first-out queue in registers (no memory block).

The accelerator's queues are a few entries deep; as `lib.fifo.SyncFIFO` they would each take
block RAMs (an iCE40 EBR is 16 bits wide, so a 128-bit queue of depth 4 took eight). This one
is a ring of registers with the SyncFIFO port names and first-word-fall-through reads.
"""

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .arith import check_positive_int

__all__ = ["RegisterFIFO"]


class RegisterFIFO(wiring.Component):
    """`depth` entries of `width` bits. Ports as `lib.fifo.SyncFIFO`: `w_data`, `w_en`,
    `w_rdy` (room for one more), `w_level` (= `level`, entries held), `r_data` (the oldest
    entry, valid while `r_rdy`), `r_en` (take it), `r_rdy`. A write and a read may happen in
    the same cycle; a write to a full queue or a read of an empty one does nothing.

    With `bypass`, an empty queue passes a write straight to `r_data` in the same cycle (and
    keeps it only if it is not read then): one cycle less from producer to consumer."""

    def __init__(self, *, width, depth, bypass=False):
        check_positive_int("width", width)
        check_positive_int("depth", depth)
        self.width, self.depth, self.bypass = width, depth, bypass
        super().__init__({
            "w_data": In(width), "w_en": In(1), "w_rdy": Out(1),
            "w_level": Out(range(depth + 1)),
            "r_data": Out(width), "r_en": In(1), "r_rdy": Out(1),
        })

    @property
    def level(self):
        return self.w_level

    def elaborate(self, platform):
        m = Module()
        entries = Array(Signal(self.width, name=f"entry_{i}") for i in range(self.depth))
        write_at = Signal(range(self.depth))
        read_at = Signal(range(self.depth))
        level = self.w_level
        do_write, do_read = Signal(), Signal()
        passing = Signal()                    # a write read out in the same cycle, not kept
        empty = level == 0
        if self.bypass:
            m.d.comb += [self.r_rdy.eq(~empty | self.w_en),
                         self.r_data.eq(Mux(empty, self.w_data, entries[read_at])),
                         passing.eq(empty & self.w_en & self.r_en)]
        else:
            m.d.comb += [self.r_rdy.eq(~empty), self.r_data.eq(entries[read_at])]
        m.d.comb += [
            self.w_rdy.eq(level != self.depth),
            do_write.eq(self.w_en & self.w_rdy & ~passing),
            do_read.eq(self.r_en & self.r_rdy & ~passing),
        ]
        with m.If(do_write):
            m.d.sync += [entries[write_at].eq(self.w_data),
                         write_at.eq(_next(write_at, self.depth))]
        with m.If(do_read):
            m.d.sync += read_at.eq(_next(read_at, self.depth))
        m.d.sync += level.eq(level + do_write - do_read)
        return m


def _next(pointer, depth):
    """The pointer after `pointer`, wrapping at `depth`."""
    if depth & (depth - 1) == 0:
        return (pointer + 1)[:max(1, (depth - 1).bit_length())] if depth > 1 else 0
    return Mux(pointer == depth - 1, 0, pointer + 1)
