"""The elementwise engine: runs ELEMENTWISE instructions (residual `add`, and `clip`).

Tensors of one elementwise op share their layout (the compiler gives them one storage
channel count), so the engine walks the output group by group: it reads the 16 codes of
input A (and of input B for an add) as two nibble words each, passes lane after lane through
the `ResidualAdder` (clip(round_shift(k1 a + k2 b + k3, r), lo, hi); a clip is k1 = 1, k2 = 0,
r = 0) and hands each result to the tensor writer, which writes the group back with one
flush. Signed and unsigned operands are both held as 9-bit signed codes.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..accel.program import INSTRUCTION
from .data_memory import DATA_WORD_BITS, data_port_signature
from .residual_adder import ResidualAdder
from .tensor_writer import output_layout
from .register_fifo import RegisterFIFO

__all__ = ["ElementwiseEngine"]

GROUP_LANES = 16


class ElementwiseEngine(wiring.Component):
    """Executes one ELEMENTWISE instruction (`instr`, constant while it runs) per `start`
    pulse; `done` pulses once the last group is written. Ports: `port` (data memory client),
    `output` (to the tensor writer), `writer_idle`."""

    def __init__(self):
        super().__init__({
            "instr": In(INSTRUCTION),
            "start": In(1),
            "done": Out(1),
            "port": Out(data_port_signature()),
            "output": Out(stream.Signature(output_layout())),
            "writer_idle": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        ins = self.instr
        m.submodules.adder = adder = ResidualAdder(master_bits=9, signed=True,
                                                   constant_bits=16, offset_bits=32,
                                                   range_ports=True)
        m.submodules.tags = tags = RegisterFIFO(width=output_layout().size, depth=4)
        group = Signal(16)
        words = [Signal(DATA_WORD_BITS, name=f"word_{i}") for i in range(4)]   # A hi, lo, B hi, lo
        word = Signal(range(5))            # next word to read
        arrived = Signal(range(5))         # words arrived
        lane = Signal(range(GROUP_LANES + 1))
        granted = Signal()
        last_word = Signal(range(4))
        m.d.comb += last_word.eq(Mux(ins.single, 1, 3))
        addr = Mux(word[1], ins.in_b, ins.in_a) + (group << 1) + word[0]
        arrive, arrive_index = Signal(), Signal(range(4))
        m.d.sync += [arrive.eq(granted), arrive_index.eq(word)]
        with m.If(arrive):
            with m.Switch(arrive_index):
                for i in range(4):
                    with m.Case(i):
                        m.d.sync += words[i].eq(self.port.rdata)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += group.eq(0)
                    m.next = "READ"
            with m.State("READ"):
                m.d.comb += [self.port.addr.eq(addr), self.port.read.eq(1),
                             granted.eq(self.port.grant)]
                with m.If(self.port.grant):
                    with m.If(word == last_word):
                        m.d.sync += [word.eq(0), lane.eq(0)]
                        m.next = "WAIT"
                    with m.Else():
                        m.d.sync += word.eq(word + 1)
            with m.State("WAIT"):                 # the last word arrives this cycle
                m.next = "FEED"
            with m.State("FEED"):
                m.d.comb += [adder.input.valid.eq(tags.w_rdy),
                             tags.w_en.eq(adder.input.ready & tags.w_rdy)]
                with m.If(adder.input.ready & tags.w_rdy):
                    with m.If(lane == GROUP_LANES - 1):
                        with m.If(group + 1 == ins.count):
                            m.next = "FINISH"
                        with m.Else():
                            m.d.sync += group.eq(group + 1)
                            m.next = "READ"
                    m.d.sync += lane.eq(lane + 1)
            with m.State("FINISH"):
                with m.If(~tags.r_rdy & ~adder.output.valid & self.writer_idle):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"

        def operand(high, low, signed):
            code = Cat(low.word_select(lane[:4], 4), high.word_select(lane[:4], 4))
            return Mux(signed, code.as_signed(), code.as_unsigned())

        pair = adder.input.payload
        m.d.comb += [
            adder.k1.eq(ins.k1), adder.k2.eq(ins.k2), adder.k3.eq(ins.k3),
            adder.shift.eq(ins.shift), adder.in_shift1.eq(0), adder.in_shift2.eq(0),
            adder.lo.eq(ins.lo), adder.hi.eq(ins.hi),
            pair.q1.eq(operand(words[0], words[1], ins.a_signed)),
            pair.q2.eq(Mux(ins.single, 0, operand(words[2], words[3], ins.b_signed))),
        ]
        tag = data.View(output_layout(), tags.w_data)
        m.d.comb += [tag.addr.eq(ins.out + (group << 1)), tag.lane.eq(lane[:4]),
                     tag.flush.eq(lane == GROUP_LANES - 1)]
        out = data.View(output_layout(), tags.r_data)
        m.d.comb += [
            self.output.valid.eq(adder.output.valid & tags.r_rdy),
            self.output.payload.eq(out),
            self.output.payload.value.eq(adder.output.payload),
            adder.output.ready.eq(self.output.ready & tags.r_rdy),
            tags.r_en.eq(adder.output.valid & self.output.ready),
        ]
        return m
