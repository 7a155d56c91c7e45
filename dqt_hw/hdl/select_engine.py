"""The select engine: runs SELECT instructions, the `select_bits` op of the controller.

For each controlled layer i of the op it reads the layer's K candidate scores (32-bit logits
of the controller's last linear layer, in the wide memory at in_a + i K + k), keeps the first
maximum (ties go to the lowest candidate, as `dqt_hw.golden` does), and writes the choice and
its bit-width (from the controller table) to the choice memory at slot + i. Later CONV
instructions of that slot look the choice up; the host reads the bit-widths.
"""

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..accel.program import INSTRUCTION

__all__ = ["SelectEngine"]


class SelectEngine(wiring.Component):
    """One SELECT instruction per `start` pulse, `done` pulses at the end. Ports: a read port
    of the wide memory (`wide_addr` -> `wide_data` next cycle), of the controller table
    (`table_*`), and a write port of the choice memory (`choice_*`: candidate index in bits
    3..0, bit-width in bits 7..4)."""

    def __init__(self, config):
        self.config = config
        super().__init__({
            "instr": In(INSTRUCTION),
            "start": In(1),
            "done": Out(1),
            "wide_addr": Out(range(config.wide_words)),
            "wide_data": In(32),
            "table_addr": Out(range(config.table_words)),
            "table_data": In(32),
            "choice_addr": Out(range(config.slots)),
            "choice_data": Out(8),
            "choice_en": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        ins = self.instr
        layer = Signal(6)
        candidate = Signal(4)
        base = Signal(16)              # wide index of the layer's first score
        row = Signal(10)               # table row of the layer's first candidate
        best, best_index = Signal(signed(32)), Signal(4)
        compare, compare_index = Signal(), Signal(4)
        m.d.comb += self.wide_addr.eq(base + candidate)
        # A read issued in READ is compared in the next cycle (the memory's latency).
        value = self.wide_data.as_signed()
        with m.If(compare):
            with m.If((compare_index == 0) | (value > best)):
                m.d.sync += [best.eq(value), best_index.eq(compare_index)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [layer.eq(0), candidate.eq(0), base.eq(ins.in_a),
                                 row.eq(ins.table_row)]
                    m.next = "READ"
            with m.State("READ"):
                m.d.sync += [compare.eq(1), compare_index.eq(candidate)]
                with m.If(candidate == ins.candidates - 1):
                    m.next = "LAST"
                with m.Else():
                    m.d.sync += candidate.eq(candidate + 1)
            with m.State("LAST"):            # the last score is compared in this cycle
                m.d.sync += compare.eq(0)
                m.next = "TABLE"
            with m.State("TABLE"):
                m.d.comb += self.table_addr.eq(row + best_index)
                m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += [self.table_addr.eq(row + best_index),
                             self.choice_addr.eq(ins.slot + layer),
                             self.choice_data.eq(Cat(best_index, self.table_data[:4])),
                             self.choice_en.eq(1)]
                m.d.sync += [candidate.eq(0), base.eq(base + ins.candidates),
                             row.eq(row + ins.candidates)]
                with m.If(layer + 1 == ins.out_c):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += layer.eq(layer + 1)
                    m.next = "READ"
        return m
