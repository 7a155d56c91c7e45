"""The weight buffer: one 32-bit word per array column and beat slot, loaded with nested codes.

Before the MAC array computes a group of output channels, the loader reads each channel's
weight row (master codes, nibble-split groups; the high nibbles only at b <= 3), nests every
code to the layer's b bits (`NestUnit`, signed) and packs the nested codes densely by fusion
mode w = `mode_bits(b)`: one beat of 16 two-bit codes per word at w = 2, two beats of four
4-bit codes at w = 4, four 8-bit codes at w = 8. The buffer then serves every output pixel of
the layer from on-chip memory, one word per column per beat at any b: this reuse is what lets
the array take 16 x cols weight codes per cycle at b = 2 while the data memory delivers 16
codes per cycle in all. The array's weight lanes read these nested codes directly
(`MacArray(nest_weights=False)`).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .arith import check_positive_int
from .data_memory import ADDRESS_BITS, DATA_WORD_BITS, data_port_signature
from .layouts import bits_shape
from .nest_unit import NestUnit
from .pe import mode_bits

__all__ = ["BUFFER_WORD_BITS", "GROUP_LANES", "WeightBuffer", "words_per_group",
           "unpack_beat"]

BUFFER_WORD_BITS = 32
GROUP_LANES = 16
#: Codes a narrow loader nests per cycle (`WeightBuffer(narrow=True)`).
NARROW_CODES = 4


def words_per_group(width):
    """Buffer words that 16 codes nested in mode `width` fill: 1, 2, 4 for w = 2, 4, 8."""
    return GROUP_LANES * width // BUFFER_WORD_BITS


def unpack_beat(word, beat, width, lanes):
    """Python model: the signed codes of beat `beat` (its index in its word) of a buffer word
    packed in mode `width` with `lanes` codes per beat."""
    codes = []
    for lane in range(lanes):
        field = (word >> (width * (beat * lanes + lane))) & ((1 << width) - 1)
        codes.append(field - (1 << width) if field >> (width - 1) else field)
    return codes


class WeightBuffer(wiring.Component):
    """Loader plus buffer memory, `cols` x 32 bits wide and `depth` words deep.

    Load: with `start` (a pulse while `idle`) the loader reads `columns` weight rows of
    `row_words` words each, the first at `row_base` and each next one `row_words` further,
    and writes column j's nested codes to column j of the buffer, from word 0 on, at bit-width
    `bits` (`both`: read the low nibbles too; set it for b >= 4). Columns >= `columns` keep
    their old contents.
    Read: `read_addr`/`read_en` -> `read_data` (cols x 32 bits) the next cycle (held while
    `read_en` is low), for the array.

    Parameters: `cols`, `depth` (words per column), `supported_bits` (the b values to nest to),
    `narrow`: read each group four times, keep a quarter of it (`NARROW_CODES` codes), nest
    them with that many nest units and write them as a part of their word (a whole word at
    w = 8, half of one at w = 4, a quarter at w = 2), instead of staging the whole group and
    writing a whole word per cycle with up to 16 nest units; fewer LUTs and flip-flops, and a
    load takes 4 cycles per group at b <= 3 and 8 at b >= 4 (1, 2, 4 at w = 2, 4, 8
    otherwise).
    """

    def __init__(self, *, cols, depth, supported_bits, master_bits=8, narrow=False):
        check_positive_int("cols", cols)
        check_positive_int("depth", depth)
        if not isinstance(narrow, bool):
            raise TypeError(f"`narrow` must be a bool, not {narrow!r}")
        self.cols, self.depth, self.narrow = cols, depth, narrow
        self.master_bits = master_bits
        self.supported_bits = tuple(supported_bits)
        self.modes = tuple(sorted({mode_bits(b) for b in self.supported_bits}))
        super().__init__({
            "row_base": In(ADDRESS_BITS),
            "row_words": In(12),
            "columns": In(range(cols + 1)),
            "bits": In(bits_shape(master_bits)),
            "both": In(1),
            "start": In(1),
            "idle": Out(1),
            "port": Out(data_port_signature()),
            "read_addr": In(range(depth)),
            "read_en": In(1),
            "read_data": Out(cols * BUFFER_WORD_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        # Kept for simulators that watch the memory's ports.
        memory = self.memory = Memory(shape=unsigned(self.cols * BUFFER_WORD_BITS),
                                      depth=self.depth, init=[])
        m.submodules.memory = memory
        reader = memory.read_port()
        # A narrow loader writes a byte-aligned part of a word (1, 2 or 4 bytes).
        writer = memory.write_port(granularity=8 if self.narrow else BUFFER_WORD_BITS)
        m.d.comb += [reader.addr.eq(self.read_addr), reader.en.eq(self.read_en),
                     self.read_data.eq(reader.data)]

        # -- reads: column by column, group by group -----------------------------------------
        # A narrow loader reads each group four times and keeps one quarter of it (4 codes)
        # each time: a 32-bit staging register instead of a 128-bit one.
        reading, phase = Signal(), Signal()
        quarter = Signal(2)
        column = Signal(range(self.cols + 1))
        group_words = Signal(12)                       # word offset of the group in its row
        row_addr = Signal(ADDRESS_BITS)
        granted, finishing = Signal(), Signal()
        staged_valid = Signal()
        staged_column = Signal(range(self.cols))
        staged_group = Signal(11)
        arrive_high, arrive_last = Signal(), Signal()
        arrive_column, arrive_group = Signal.like(staged_column), Signal.like(staged_group)
        arrive_quarter, staged_quarter = Signal(2), Signal(2)
        free = Signal()                 # the staging register can take the arriving group
        m.d.comb += [
            self.port.addr.eq(row_addr + group_words + phase),
            self.port.read.eq(reading & free),
            granted.eq(reading & free & self.port.grant),
            finishing.eq(granted & (phase | ~self.both)),
        ]
        with m.If(self.start & self.idle):
            m.d.sync += [reading.eq(self.columns != 0), phase.eq(0), column.eq(0),
                         group_words.eq(0), row_addr.eq(self.row_base), quarter.eq(0)]
        with m.Elif(granted & ~finishing):
            m.d.sync += phase.eq(1)
        with m.Elif(finishing):
            m.d.sync += phase.eq(0)
            if self.narrow:
                m.d.sync += quarter.eq(quarter + 1)
            with m.If((quarter == 3) | (not self.narrow)):
                with m.If(group_words + 2 == self.row_words):
                    m.d.sync += [group_words.eq(0), row_addr.eq(row_addr + self.row_words),
                                 column.eq(column + 1)]
                    with m.If(column + 1 == self.columns):
                        m.d.sync += reading.eq(0)
                with m.Else():
                    m.d.sync += group_words.eq(group_words + 2)
        m.d.sync += [arrive_high.eq(granted & ~phase), arrive_last.eq(finishing),
                     arrive_column.eq(column), arrive_group.eq(group_words[1:]),
                     arrive_quarter.eq(quarter)]

        # -- staging: nest the arrived group and write its words -----------------------------
        stage_bits = NARROW_CODES * 4 if self.narrow else DATA_WORD_BITS
        stage_high, stage_low = Signal(stage_bits), Signal(stage_bits)
        arriving = (self.port.rdata.word_select(arrive_quarter, stage_bits) if self.narrow
                    else self.port.rdata)
        word = Signal(range(4))               # the word of the staged group being written
        steps = Signal(range(5))             # write steps per staged group (narrow: 1)
        mode_log2 = Signal(range(4))          # log2(words per group): 0, 1, 2
        mode = Signal(range(9))
        with m.Switch(self.bits):
            for bits in self.supported_bits:
                with m.Case(bits):
                    w = mode_bits(bits)
                    m.d.comb += [mode.eq(w),
                                 steps.eq(1 if self.narrow else words_per_group(w)),
                                 mode_log2.eq(words_per_group(w).bit_length() - 1)]
        writing_last = Signal()
        m.d.comb += [writing_last.eq(staged_valid & (word == steps - 1)),
                     # The group whose last read is granted now arrives next cycle: the
                     # staging register must be free by then.
                     free.eq(Mux(arrive_last, steps == 1,
                                 ~staged_valid | writing_last))]
        # A read is granted only if the staging register is free by the time its word
        # arrives, so a high word can go straight to it: the group before it is written out
        # by then (its last word at the latest in the cycle the high word arrives).
        with m.If(arrive_high | (arrive_last & ~self.both)):
            m.d.sync += stage_high.eq(arriving)
        with m.If(arrive_last):
            m.d.sync += [staged_valid.eq(1), staged_column.eq(arrive_column),
                         staged_group.eq(arrive_group), staged_quarter.eq(arrive_quarter),
                         word.eq(0), stage_low.eq(Mux(self.both, arriving, 0))]
        with m.Elif(writing_last):
            m.d.sync += staged_valid.eq(0)
        with m.Elif(staged_valid):
            m.d.sync += word.eq(word + 1)

        codes = [Cat(stage_low[4 * i:4 * i + 4], stage_high[4 * i:4 * i + 4])
                 for i in range(stage_bits // 4)]
        if self.narrow:
            self._narrow_writes(m, writer, codes, mode, staged_quarter, staged_group,
                                staged_column, staged_valid, mode_log2)
        else:
            self._word_writes(m, writer, codes, mode, word, staged_group, staged_column,
                              staged_valid, mode_log2)
        m.d.comb += self.idle.eq(~reading & ~staged_valid & ~arrive_last & ~arrive_high)
        return m

    def _nest_unit(self, m, lane, code, lane_bits):
        unit = NestUnit(master_bits=self.master_bits, signed=True, supported_bits=lane_bits)
        m.submodules[f"nest_{lane}"] = unit
        m.d.comb += [unit.master.eq(code), unit.bits.eq(self.bits)]
        return unit.nested

    def _word_writes(self, m, writer, codes, mode, word, group, column, valid, mode_log2):
        """One whole word per cycle: word `word` of the group, nested by as many units as it
        holds codes."""
        # Word k of a group in mode w holds codes k * 32 / w onwards: nest only those. Nest lane
        # j then serves code k * 32 / w + j, and only in the modes with more than j codes per
        # word (lanes 8..15 only at w = 2), so most lanes need few bit-widths and inputs.
        nested = []
        for lane in range(GROUP_LANES):
            widths = [w for w in self.modes if lane < BUFFER_WORD_BITS // w]
            lane_bits = [b for b in self.supported_bits if mode_bits(b) in widths]
            if not lane_bits:              # no supported mode reads this lane (8 bits only)
                nested.append(Const(0, self.master_bits))
                continue
            code = codes[lane]
            for w in widths:
                per_word = BUFFER_WORD_BITS // w
                if per_word < GROUP_LANES:
                    choices = [codes[k * per_word + lane] for k in range(GROUP_LANES // per_word)]
                    code = Mux(mode == w, Cat(*choices).word_select(word, 8), code)
            nested.append(self._nest_unit(m, lane, code, lane_bits))
        data_word = Signal(BUFFER_WORD_BITS)
        for w in self.modes:
            per_word = BUFFER_WORD_BITS // w
            with m.If(mode == w):
                m.d.comb += data_word.eq(Cat(*(nested[j][:w] for j in range(per_word))))
        m.d.comb += [
            writer.addr.eq((group << mode_log2) + word),
            writer.data.eq(data_word.replicate(self.cols)),
            writer.en.eq(Mux(valid, 1 << column, 0)),
        ]

    def _narrow_writes(self, m, writer, codes, mode, step, group, column, valid, mode_log2):
        """`codes`: codes 4 s .. 4 s + 3 of the group (quarter s = `step`), in every mode: at
        w bits they are part s % (8 / w) of word s // (8 / w) (w / 2 bytes at byte
        s % (8 / w) * w / 2)."""
        nested = [self._nest_unit(m, lane, codes[lane], self.supported_bits)
                  for lane in range(NARROW_CODES)]
        part = Signal(BUFFER_WORD_BITS)
        word_in_group, bytes_mask = Signal(2), Signal(4)
        for w in self.modes:
            parts = BUFFER_WORD_BITS // (NARROW_CODES * w)         # parts per word: 4, 2, 1
            with m.If(mode == w):
                m.d.comb += [
                    part.eq(Cat(*(nested[j][:w] for j in range(NARROW_CODES)))
                            .replicate(parts)),
                    word_in_group.eq(step >> (parts.bit_length() - 1)),
                    bytes_mask.eq(Const((1 << (w // 2)) - 1, 4)
                                  << ((step & (parts - 1)) * (w // 2))),
                ]
        m.d.comb += [
            writer.addr.eq((group << mode_log2) + word_in_group),
            writer.data.eq(part.replicate(self.cols)),
            writer.en.eq(Mux(valid, bytes_mask << (4 * column), 0)),
        ]
