"""The sequencer: checks the program, then fetches and dispatches its instructions one by one.

On `start` it reads the program header (magic, version, op count, checksum) and sums every
instruction word; a program that is not this hardware's, or whose words do not add up (a
corrupt or half-loaded image), stops the run with an error code before anything executes.
Then, for each instruction: fetch its words into `instr`, check its fields, start the
engine of its opcode, wait for the engine's `done`, record the op's cycles. No host action is
needed between `start` and `done`.
"""

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..accel.program import (HEADER_WORDS, INSTRUCTION, INSTRUCTION_WORDS, Opcode,
                             PROGRAM_MAGIC, PROGRAM_VERSION)
from ..accel.regmap import ErrorCode

__all__ = ["Sequencer"]


class Sequencer(wiring.Component):
    """Ports: `start` (a pulse; ignored while busy), `busy`/`done`/`error`/`error_code` (state
    of the last run; `done` stays high from the end of a run to the next start), `cycles` and
    `ops_done` (counters of the last or current run), a read port of the program memory
    (`prog_addr` -> `prog_data` next cycle), `instr` (the current instruction), the engines'
    `start_*` and `done_*`, and the op-cycles memory write port (`opc_*`: CYCLES when each
    op ends)."""

    def __init__(self, config):
        self.config = config
        super().__init__({
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "error_code": Out(8),
            "cycles": Out(32),
            "ops_done": Out(16),
            "prog_addr": Out(range(config.program_words)),
            "prog_data": In(32),
            "instr": Out(INSTRUCTION),
            "start_window": Out(1),
            "start_elementwise": Out(1),
            "start_select": Out(1),
            "engine_done": In(1),
            "opc_addr": Out(range(config.max_ops)),
            "opc_data": Out(32),
            "opc_en": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        address = Signal(range(cfg.program_words + 1))
        m.d.comb += self.prog_addr.eq(address)
        op_count = Signal(range(cfg.max_ops + 1))
        word = Signal(range(INSTRUCTION_WORDS + 1))
        checksum, total = Signal(32), Signal(32)
        summing = Signal()            # prog_data holds a word to add this cycle
        # Only the instruction's bits are held: the words beyond them are never stored.
        raw = Signal(INSTRUCTION.size)
        m.d.comb += self.instr.eq(raw)
        ins = self.instr
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(summing):
            m.d.sync += total.eq(total + self.prog_data)

        def fail(code):
            m.d.sync += [self.busy.eq(0), self.done.eq(1), self.error.eq(1),
                         self.error_code.eq(code)]
            m.next = "IDLE"

        body_end = Signal(range(cfg.program_words + INSTRUCTION_WORDS * 256 + HEADER_WORDS + 1))
        m.d.comb += body_end.eq(HEADER_WORDS + op_count * INSTRUCTION_WORDS)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), self.done.eq(0), self.error.eq(0),
                                 self.error_code.eq(0), self.cycles.eq(0), self.ops_done.eq(0),
                                 address.eq(0)]
                    m.next = "MAGIC"
            with m.State("MAGIC"):            # prog_data: nothing yet; word 0 is being read
                m.d.sync += address.eq(1)
                m.next = "CHECK_MAGIC"
            with m.State("CHECK_MAGIC"):      # prog_data = word 0
                m.d.sync += address.eq(2)
                with m.If(self.prog_data != PROGRAM_MAGIC):
                    fail(ErrorCode.BAD_HEADER)
                with m.Else():
                    m.next = "CHECK_VERSION"
            with m.State("CHECK_VERSION"):    # prog_data = word 1
                m.d.sync += [address.eq(HEADER_WORDS), op_count.eq(self.prog_data[16:])]
                with m.If(self.prog_data[:16] != PROGRAM_VERSION):
                    fail(ErrorCode.BAD_HEADER)
                with m.Elif((self.prog_data[16:] > cfg.max_ops)
                            | (self.prog_data[16:] > (cfg.program_words - HEADER_WORDS)
                               // INSTRUCTION_WORDS)):
                    fail(ErrorCode.TOO_MANY_OPS)
                with m.Else():
                    m.next = "CHECKSUM"
            with m.State("CHECKSUM"):         # prog_data = word 2; word 4 is being read
                m.d.sync += [checksum.eq(self.prog_data), total.eq(0),
                             summing.eq(address < body_end), address.eq(address + 1)]
                m.next = "SUM"
            with m.State("SUM"):
                m.d.sync += [summing.eq(address < body_end), address.eq(address + 1)]
                with m.If(~summing):
                    with m.If(total != checksum):
                        fail(ErrorCode.BAD_CHECKSUM)
                    with m.Elif(op_count == 0):
                        m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [address.eq(HEADER_WORDS), word.eq(0), summing.eq(0)]
                        m.next = "FETCH"
            with m.State("FETCH"):
                # The word read last cycle (word - 1 of the instruction) goes to its place.
                for index in range(-(-INSTRUCTION.size // 32)):
                    with m.If(word == index + 1):
                        m.d.sync += raw[32 * index:32 * index + 32].eq(self.prog_data)
                with m.If(word == INSTRUCTION_WORDS):
                    m.next = "DISPATCH"
                with m.Else():
                    m.d.sync += [address.eq(address + 1), word.eq(word + 1)]
            with m.State("DISPATCH"):
                m.d.sync += word.eq(0)
                bad = self._bad_fields(m, ins)
                with m.If((ins.opcode == 0) | (ins.opcode > Opcode.SELECT)):
                    fail(ErrorCode.BAD_OPCODE)
                with m.Elif(bad):
                    fail(ErrorCode.BAD_INSTRUCTION)
                with m.Else():
                    with m.Switch(ins.opcode):
                        with m.Case(Opcode.CONV, Opcode.POOL):
                            m.d.comb += self.start_window.eq(1)
                        with m.Case(Opcode.ELEMENTWISE):
                            m.d.comb += self.start_elementwise.eq(1)
                        with m.Case(Opcode.SELECT):
                            m.d.comb += self.start_select.eq(1)
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(self.engine_done):
                    # The op's end on the run's clock (CYCLES after this cycle): one counter
                    # serves both, and the host takes differences.
                    m.d.comb += [self.opc_addr.eq(self.ops_done),
                                 self.opc_data.eq(self.cycles + 1), self.opc_en.eq(1)]
                    m.d.sync += self.ops_done.eq(self.ops_done + 1)
                    with m.If(self.ops_done + 1 == op_count):
                        m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "FETCH"
        return m

    def _bad_fields(self, m, ins):
        """An instruction whose fields would make an engine misbehave (never run it)."""
        cfg = self.config
        bad = Signal()
        window = ((ins.out_h == 0) | (ins.out_w == 0) | (ins.in_h == 0) | (ins.in_w == 0)
                  | (ins.kernel_h == 0) | (ins.kernel_w == 0) | (ins.stride == 0)
                  | (ins.in_cp == 0) | (ins.out_c == 0))
        supported = Const(sum(1 << b for b in cfg.supported_bits), 16)
        conv = (window | (ins.row_words < 2) | ins.row_words[0]
                | (ins.row_words > cfg.max_terms // 8)
                | (~ins.bits_select & ~supported.bit_select(ins.bits, 1)))
        with m.Switch(ins.opcode):
            with m.Case(Opcode.CONV):
                m.d.comb += bad.eq(conv)
            with m.Case(Opcode.POOL):
                m.d.comb += bad.eq(window)
            with m.Case(Opcode.ELEMENTWISE):
                m.d.comb += bad.eq(ins.count == 0)
            with m.Case(Opcode.SELECT):
                m.d.comb += bad.eq((ins.candidates == 0) | (ins.out_c == 0))
        return bad
