"""The accelerator's hardware parameters (docs/accelerator.md, "Configuration")."""

import dataclasses

from ..golden import MIN_BITS, accumulator_bits

__all__ = ["AcceleratorConfig", "GROUP_CODES", "WORD_BITS", "BUFFER_WORD_BITS",
           "products_per_beat"]

#: Codes per group: a group is the unit of the data memory layout, two 64-bit words holding
#: the high and the low nibbles of 16 master codes.
GROUP_CODES = 16
#: Width of a data memory word: one nibble of each of 16 codes (four iCE40 SPRAMs side by side).
WORD_BITS = 64
#: Width of one weight-buffer word per array column: one beat at b = 2 (16 two-bit codes).
BUFFER_WORD_BITS = 32
_COLUMN_CHOICES = (1, 2, 4, 8, 16)


def products_per_beat(bits, master_bits=8):
    """Products one PE adds per beat at bit-width b: (n / w)^2 with the fusion mode w the next
    power of two >= b (`dqt_hw.hdl.pe.mode_bits`): 1, 4, 16 at b = 8, 4, 2 for n = 8."""
    return (master_bits >> (bits - 1).bit_length()) ** 2


def _int(name, value, low, high=None):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"`{name}` must be an integer, not {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"`{name}` must be an integer {bound}, not {value}")
    return value


@dataclasses.dataclass(frozen=True)
class AcceleratorConfig:
    """Parameters of one accelerator build; validated on construction.

    The array is one row of `cols` processing elements: every column sees the same activation
    beat and its own output channel's weights (output-stationary, activations broadcast).
    Memory sizes are in words of each memory; `max_terms` is the longest dot product (codes,
    after the per-tap channel padding of the layout) and sets the weight buffer depth and the
    accumulator width.
    """

    cols: int = 4
    master_bits: int = 8
    max_terms: int = 1024
    data_words: int = 16384
    program_words: int = 1024
    wide_words: int = 256
    table_words: int = 256
    slots: int = 32
    max_ops: int = 64
    pool_lanes: int = 4
    supported_bits: tuple = tuple(range(MIN_BITS, 9))
    #: 8-bit products on a DSP multiplier per column instead of the fused bit bricks
    #: (`MacArray(dsp_lanes=1, fuse_wide=False)`): smaller processing elements, one DSP each.
    dsp_wide: bool = False
    #: The activation fetcher's lookahead: descriptor/request queue depth and read groups in
    #: flight, and whether an arriving group bypasses an empty queue. 3, 2 and bypass keep one
    #: beat per cycle in every mode; 2 and 1 save about 160 LUT4, no bypass about 190 iCE40
    #: logic cells more, and together they run b = 2 beats at about 60 %, b = 4 at 75 %,
    #: b = 8 at 92 % of that (`ActivationFetcher`).
    fetch_queue: int = 3
    fetch_groups: int = 2
    fetch_bypass: bool = True
    #: The elementwise engine holds a group's four operand words and feeds one lane per cycle;
    #: False: it reads the words again for every lane (6 cycles per lane of an add, 4 of a
    #: clip, against about 1.4) and holds 256 flip-flops fewer (`ElementwiseEngine`).
    elementwise_buffered: bool = True
    #: The weight buffer's loader reads each group of 16 weights four times and nests 4 codes
    #: per cycle with 4 nest units (`WeightBuffer(narrow=True)`): fewer LUTs and flip-flops,
    #: and 4 load cycles per group at b <= 3, 8 at b >= 4.
    narrow_loader: bool = False
    #: The tensor writer collects a group's codes and writes them with two data-memory writes;
    #: False: two writes for every code and 144 flip-flops fewer (`TensorWriter(staged=False)`).
    writer_staged: bool = True
    #: The bus reads the data memory (the DATA window); False: DATA is write-only (loading a
    #: model needs only writes) and about 70 iCE40 logic cells go (its read path and mux).
    data_readable: bool = True

    def __post_init__(self):
        if self.master_bits != 8:
            raise ValueError(f"`master_bits` must be 8 (the data memory holds 8-bit codes as "
                             f"two nibbles), not {self.master_bits!r}")
        if self.cols not in _COLUMN_CHOICES:
            raise ValueError(f"`cols` must be one of {', '.join(map(str, _COLUMN_CHOICES))} "
                             f"(a divisor of the {GROUP_CODES} codes of a group), "
                             f"not {self.cols!r}")
        _int("max_terms", self.max_terms, GROUP_CODES, 1 << 16)
        if self.max_terms % GROUP_CODES:
            raise ValueError(f"`max_terms` must be a multiple of {GROUP_CODES}, "
                             f"not {self.max_terms}")
        _int("data_words", self.data_words, 2, 1 << 15)
        _int("program_words", self.program_words, 16, 1 << 14)
        _int("wide_words", self.wide_words, 1, 1 << 10)
        _int("table_words", self.table_words, 1, 1 << 10)
        _int("slots", self.slots, 1, 64)
        _int("max_ops", self.max_ops, 1, 256)
        if self.pool_lanes not in (1, 2, 4, 8, 16):
            raise ValueError(f"`pool_lanes` must be one of 1, 2, 4, 8, 16, "
                             f"not {self.pool_lanes!r}")
        try:
            bits = tuple(sorted(set(self.supported_bits)))
        except TypeError:
            raise TypeError(f"`supported_bits` must be a collection of bit-widths, "
                            f"not {self.supported_bits!r}") from None
        if not bits or any(not isinstance(b, int) or not MIN_BITS <= b <= self.master_bits
                           for b in bits):
            raise ValueError(f"`supported_bits` must list bit-widths between {MIN_BITS} and "
                             f"{self.master_bits}, not {self.supported_bits!r}")
        if self.master_bits not in bits:
            raise ValueError(f"`supported_bits` must include the master width "
                             f"{self.master_bits} (stem, classifier and controller run at it)")
        object.__setattr__(self, "supported_bits", bits)
        _int("fetch_queue", self.fetch_queue, 1, 16)
        _int("fetch_groups", self.fetch_groups, 1, 8)
        for name in ("dsp_wide", "fetch_bypass", "elementwise_buffered", "narrow_loader",
                     "writer_staged", "data_readable"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"`{name}` must be a bool, not {getattr(self, name)!r}")

    @property
    def acc_width(self):
        """Signed accumulator width: every dot product of at most `max_terms` terms fits."""
        return accumulator_bits(self.master_bits, self.master_bits, self.max_terms)

    @property
    def value_bits(self):
        """Width of the values the shared requantizer takes: an accumulator, or a residual
        join's k1 a + k2 b (16-bit constants times 9-bit codes, 26 bits with the bias k3)."""
        return max(self.acc_width, accumulator_bits(self.master_bits, self.master_bits, 1024))

    @property
    def buffer_depth(self):
        """Weight-buffer words per column: `max_terms` 8-bit codes, four per 32-bit word."""
        return self.max_terms * self.master_bits // BUFFER_WORD_BITS

    @property
    def data_bytes(self):
        return self.data_words * WORD_BITS // 8

    def peak_macs_per_cycle(self, bits):
        return self.cols * products_per_beat(bits, self.master_bits)

    def describe(self):
        return (f"1x{self.cols} array, bits {list(self.supported_bits)}, "
                f"{self.data_bytes // 1024} KiB data memory, K <= {self.max_terms}")
