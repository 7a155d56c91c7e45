"""The select engine: runs SELECT instructions, the `select_bits` op of the controller.

For each controlled layer i of the op it reads the layer's K candidate scores (32-bit logits
of the controller's last linear layer, in the wide memory at in_a + i K + k), keeps the index
of the first maximum (ties go to the lowest candidate, as `dqt_hw.golden` does), and writes the
choice and its bit-width (from the controller table) to the choice memory at slot + i. The best
score is not held: a second read port re-reads it (`best_addr`), so a candidate takes two
cycles (a read, then the compare) and no 32-bit register. Later CONV
instructions of that slot look the choice up; the host reads the bit-widths.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..accel.program import INSTRUCTION

__all__ = ["SelectEngine"]


class SelectEngine(wiring.Component):
    """One SELECT instruction per `start` pulse, `done` pulses at the end. Ports: two read
    ports of the wide memory (`wide_addr` -> `wide_data` next cycle for the candidates,
    `best_addr` -> `best_data` for the best score so far), one of the controller table
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
            "best_addr": Out(range(config.wide_words)),
            "best_data": In(32),
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
        best_index = Signal(4)
        m.d.comb += [self.wide_addr.eq(base + candidate), self.best_addr.eq(base + best_index)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [layer.eq(0), candidate.eq(0), base.eq(ins.in_a),
                                 row.eq(ins.table_row)]
                    m.next = "READ"
            with m.State("READ"):            # the candidate's score and the best one so far
                m.next = "COMPARE"
            with m.State("COMPARE"):
                with m.If((candidate == 0)
                          | (self.wide_data.as_signed() > self.best_data.as_signed())):
                    m.d.sync += best_index.eq(candidate)
                m.next = "READ"
                with m.If(candidate == ins.candidates - 1):
                    m.next = "TABLE"
                with m.Else():
                    m.d.sync += candidate.eq(candidate + 1)
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
