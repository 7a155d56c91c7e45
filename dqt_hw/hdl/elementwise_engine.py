"""The elementwise engine: runs ELEMENTWISE instructions (residual `add`, and `clip`).

Tensors of one elementwise op share their layout (the compiler gives them one storage
channel count), so the engine walks the output group by group: it reads the 16 codes of
input A (and of input B for an add) as two nibble words each, forms k1 a + k2 b lane after
lane (two multipliers; signed and unsigned codes are both held as 9-bit signed values) and
sends it to the shared `RequantizeStage` as a request with bias k3, M = 1 and shift r, which
gives clip(round_shift(k1 a + k2 b + k3, r), lo, hi), the golden `add`; a clip is k1 = 1,
k2 = 0, r = 0. The tensor writer stores each group with one flush.

Two ways to get the operands (`buffered`): hold the group's four 64-bit words in registers and
send one lane per cycle (about 22 cycles per group), or, where flip-flops are scarce (iCE40),
read the words again for every lane and keep only that lane's four nibbles (6 cycles per lane
for an add, 4 for a clip; 256 flip-flops fewer).
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..accel.program import INSTRUCTION
from .data_memory import DATA_WORD_BITS, data_port_signature
from .requantize_stage import request_layout

__all__ = ["ElementwiseEngine"]

GROUP_LANES = 16


class ElementwiseEngine(wiring.Component):
    """Executes one ELEMENTWISE instruction (`instr`, constant while it runs) per `start`
    pulse; `done` pulses once the last group is written. Ports: `port` (data memory client),
    `requests` (to the shared `RequantizeStage`, whose values are `acc_width` bits), `drained`
    (the stage and the writer have finished). `buffered`: hold a group's operand words (see the
    module docstring)."""

    def __init__(self, *, acc_width, buffered=True):
        if not isinstance(buffered, bool):
            raise TypeError(f"`buffered` must be a bool, not {buffered!r}")
        self.acc_width, self.buffered = acc_width, buffered
        super().__init__({
            "instr": In(INSTRUCTION),
            "start": In(1),
            "done": Out(1),
            "port": Out(data_port_signature()),
            "requests": Out(stream.Signature(request_layout(acc_width))),
            "drained": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        ins = self.instr
        group = Signal(16)
        word = Signal(range(4))            # next word to read: A hi, A lo, B hi, B lo
        lane = Signal(range(GROUP_LANES))      # wraps to 0 after the last lane
        last_word = Signal(range(4))
        m.d.comb += last_word.eq(Mux(ins.single, 1, 3))
        addr = Mux(word[1], ins.in_b, ins.in_a) + (group << 1) + word[0]
        granted = Signal()
        arrive, arrive_index = Signal(), Signal(range(4))
        m.d.sync += [arrive.eq(granted), arrive_index.eq(word)]
        if self.buffered:
            # The whole words are kept; each lane takes its nibbles from them.
            words = [Signal(DATA_WORD_BITS, name=f"word_{i}") for i in range(4)]
            nibbles = [w.word_select(lane, 4) for w in words]
            arriving = self.port.rdata
        else:
            # Only the current lane's nibble of each word is kept.
            words = nibbles = [Signal(4, name=f"nibble_{i}") for i in range(4)]
            arriving = self.port.rdata.word_select(lane, 4)
        with m.If(arrive):
            with m.Switch(arrive_index):
                for i in range(4):
                    with m.Case(i):
                        m.d.sync += words[i].eq(arriving)

        def operand(high, low, is_signed):
            code = Cat(low, high)
            return Mux(is_signed, code.as_signed(), code.as_unsigned())

        # The sum of a lane is registered (one request register); it is sent while the next
        # lane's is formed. The request's constants are the instruction's, fixed during the
        # op: they are wired, not registered.
        request = self.requests.payload
        acc, out_addr = Signal.like(request.acc), Signal.like(request.addr)
        out_lane, flush = Signal.like(request.lane), Signal()
        m.d.comb += [request.acc.eq(acc), request.multiplier.eq(1), request.shift.eq(ins.shift),
                     request.bias.eq(ins.k3), request.wide.eq(0), request.addr.eq(out_addr),
                     request.lane.eq(out_lane), request.flush.eq(flush)]
        sending = Signal()
        free = Signal()
        m.d.comb += [free.eq(~sending | self.requests.ready),
                     self.requests.valid.eq(sending)]
        with m.If(self.requests.ready):
            m.d.sync += sending.eq(0)
        a = operand(nibbles[0], nibbles[1], ins.a_signed)
        b = Mux(ins.single, 0, operand(nibbles[2], nibbles[3], ins.b_signed))
        total = Signal(signed(16 + 9 + 1))
        m.d.comb += total.eq(ins.k1 * a + ins.k2 * b)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [group.eq(0), lane.eq(0)]
                    m.next = "READ"
            with m.State("READ"):
                m.d.comb += [self.port.addr.eq(addr), self.port.read.eq(1),
                             granted.eq(self.port.grant)]
                with m.If(self.port.grant):
                    with m.If(word == last_word):
                        m.d.sync += word.eq(0)
                        m.next = "WAIT"
                    with m.Else():
                        m.d.sync += word.eq(word + 1)
            with m.State("WAIT"):                 # the last word arrives this cycle
                m.next = "FEED"
            with m.State("FEED"):
                # Buffered, the group's lanes go out back to back; otherwise every lane reads
                # its words again first.
                with m.If(free):
                    m.d.sync += [sending.eq(1), acc.eq(total),
                                 out_addr.eq(ins.out + (group << 1)), out_lane.eq(lane),
                                 flush.eq(lane == GROUP_LANES - 1), lane.eq(lane + 1)]
                    with m.If(lane == GROUP_LANES - 1):
                        with m.If(group + 1 == ins.count):
                            m.next = "FINISH"
                        with m.Else():
                            m.d.sync += group.eq(group + 1)
                            m.next = "READ"
                    if not self.buffered:
                        with m.Else():
                            m.next = "READ"
            with m.State("FINISH"):
                with m.If(~sending & self.drained):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
        return m
