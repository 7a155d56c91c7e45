"""Processing elements: the precision-scalable Bit Fusion-style PE and the fixed n x n MAC."""

from dataclasses import dataclass

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..golden import MIN_BITS, check_bits, check_master_bits
from .arith import check_bits_list, check_int_at_least
from .layouts import bits_shape, lanes_layout

__all__ = ["BRICK_BITS", "mode_bits", "PEGeometry", "ProcessingElement"]

#: Operand digit width of one bit brick (Bit Fusion, ISCA 2018): 2-bit x 2-bit products.
BRICK_BITS = 2


def mode_bits(bits):
    """The fusion mode that runs a b-bit layer: the next power of two >= b (3 -> 4, 5..7 -> 8)."""
    return 1 << (bits - 1).bit_length()


@dataclass(frozen=True)
class PEGeometry:
    """What a PE configuration computes: its fusion modes and operand lanes (validated)."""

    master_bits: int
    scalable: bool
    supported_bits: tuple
    modes: tuple       # fusion mode widths w built into the PE (just (n,) when fixed)
    lanes: int         # operand lanes = products per cycle in the narrowest mode

    @classmethod
    def build(cls, master_bits, scalable, supported_bits):
        n = check_master_bits(master_bits)
        if not isinstance(scalable, bool):
            raise TypeError(f"`scalable` must be a bool, not {scalable!r}")
        if scalable and n & (n - 1):
            raise ValueError(f"`master_bits` must be a power of two for a scalable PE, not {n}")
        supported_bits = check_bits_list(supported_bits, n)
        modes = tuple(sorted({mode_bits(b) for b in supported_bits})) if scalable else (n,)
        return cls(n, scalable, supported_bits, modes, (n // modes[0]) ** 2)

    def products_per_cycle(self, bits):
        """Products per cycle at bit-width `bits`: (n / mode_bits(b))^2, or 1 when fixed."""
        check_bits(bits, self.master_bits)
        if bits not in self.supported_bits:
            raise ValueError(f"`bits` must be one of {list(self.supported_bits)} for this "
                             f"configuration, not {bits}")
        return (self.master_bits // mode_bits(bits)) ** 2 if self.scalable else 1


class ProcessingElement(wiring.Component):
    """A multiply-accumulate processing element for nested codes at a run-time bit-width b.

    Operands arrive already nested to b bits (see `NestUnit`): unsigned activation codes and
    signed (narrow-range) weight codes, each in an n-bit lane. Each cycle with `enable` high
    the PE adds the sum of this cycle's products to its accumulator (or starts a new sum with
    `clear`):

    * `scalable=True` (Bit Fusion): (n/2)^2 bricks, each a 2-bit unsigned activation digit
      times a 2-bit weight digit (signed when it is the top digit of its weight). In the mode
      w = `mode_bits(b)` the bricks fuse into (n/w)^2 products of w x w bits, all summed: for
      n = 8 one 8x8, four 4x4 or sixteen 2x2 products per cycle. Lane p carries the operands
      of product p, lanes p >= (n/w)^2 are ignored. The shift-add tree is hierarchical, as in
      a fusion unit: at each level four sub-blocks are shifted and added when they belong to
      one product in the current mode, and only added otherwise (the two sub-blocks of equal
      significance are added before their shared multiplexer). Bricks are unsigned: a signed
      top digit t = u - 2 (u = t XOR 0b10) gives a * t + 6 = a * u + 2 (3 - a) in [0, 9], and
      the mode's sum of these +6 offsets is subtracted once from the tree's result.
    * `scalable=False`: the baseline fixed n x n MAC, one lane, one product per cycle at
      every b (the synthesizer's own multiplier).

    Parameters: `master_bits` n (a power of two for the scalable PE), `supported_bits` the b
    values the PE must run (default every b in [2, n]; the scalable PE builds only the modes
    they need), `acc_width` the signed accumulator width (at least 2n; `MacArray` sizes it with
    `dqt_hw.golden.accumulator_bits`).

    Ports:
      activations: In(ArrayLayout(unsigned(n), lanes))  nested activation codes.
      weights:     In(ArrayLayout(signed(n), lanes))    nested weight codes.
      bits:        In(range(2, n + 1))                  b of the current layer.
      enable:      In(1)   accumulate this cycle's products.
      clear:       In(1)   with `enable`: the accumulator restarts at this cycle's products.
      partial:     Out(signed(2n))       this cycle's sum of products (combinational).
      acc:         Out(signed(acc_width)) the accumulator (registered).

    Latency 1 (`latency`): `acc` includes a cycle's products from the next cycle on. Throughput
    `products_per_cycle(b)` multiply-accumulates per cycle. The accumulator wraps (two's
    complement) if a sum exceeds `acc_width`; sizing it is the caller's contract.
    """

    latency = 1

    def __init__(self, *, master_bits=8, scalable=True, supported_bits=None, acc_width=None):
        self.geometry = PEGeometry.build(master_bits, scalable, supported_bits)
        self.master_bits = n = self.geometry.master_bits
        self.scalable = scalable
        self.supported_bits = self.geometry.supported_bits
        self.modes = self.geometry.modes
        self.lanes = self.geometry.lanes
        self.acc_width = 2 * n if acc_width is None else acc_width
        check_int_at_least("acc_width", self.acc_width, 2 * n)
        super().__init__({
            "activations": In(lanes_layout(n, self.lanes, False)),
            "weights": In(lanes_layout(n, self.lanes, True)),
            "bits": In(bits_shape(n)),
            "enable": In(1),
            "clear": In(1),
            "partial": Out(signed(2 * n)),
            "acc": Out(signed(self.acc_width)),
        })

    def products_per_cycle(self, bits):
        """Products added per cycle at bit-width `bits` (one per lane in use)."""
        return self.geometry.products_per_cycle(bits)

    def elaborate(self, platform):
        m = Module()
        if self.scalable:
            m.d.comb += self.partial.eq(self._fused_products(m))
        else:
            m.d.comb += self.partial.eq(self.activations[0] * self.weights[0])
        with m.If(self.enable):
            m.d.sync += self.acc.eq(Mux(self.clear, 0, self.acc) + self.partial)
        return m

    def _top_offsets(self, width):
        """Sum of the +6 brick offsets (shifted) of mode `width`: one per top weight digit."""
        digits = self.master_bits // BRICK_BITS
        per_product = width // BRICK_BITS
        return sum(6 << _brick_shift(i, j, width) for i in range(digits) for j in range(digits)
                   if j % per_product == per_product - 1)

    def _offsets_max(self):
        return max(self._top_offsets(width) for width in self.modes)

    def _fused_products(self, m):
        n = self.master_bits
        digits = n // BRICK_BITS
        # in_mode[w]: the layer runs in mode w (b in (w/2, w], or b <= w for the smallest mode).
        in_mode = {}
        for index, width in enumerate(self.modes):
            low = self.modes[index - 1] if index else MIN_BITS - 1
            in_mode[width] = Signal(name=f"mode_{width}")
            m.d.comb += in_mode[width].eq((self.bits > low) & (self.bits <= width))

        def select(options):
            """The per-mode choice among `options` {mode: value} (mux on the current mode)."""
            widths = list(options)
            result = options[widths[0]]
            for width in widths[1:]:
                result = Mux(in_mode[width], options[width], result)
            return result

        lanes = {width: _product_lanes(n, width) for width in self.modes}
        # Level 0: one brick per (activation digit i, weight digit j) of the n x n grid.
        grid = [[None] * digits for _ in range(digits)]
        for i in range(digits):
            for j in range(digits):
                a_options, w_options, top_options = {}, {}, {}
                for width in self.modes:
                    per_product = width // BRICK_BITS      # digits per operand in this mode
                    lane = lanes[width][i // per_product, j // per_product]
                    a_digit, w_digit = i % per_product, j % per_product
                    a_options[width] = self.activations[lane][
                        a_digit * BRICK_BITS:(a_digit + 1) * BRICK_BITS]
                    w_options[width] = self.weights[lane][
                        w_digit * BRICK_BITS:(w_digit + 1) * BRICK_BITS]
                    top_options[width] = int(w_digit == per_product - 1)
                a_digit = Signal(BRICK_BITS, name=f"a_digit_{i}_{j}")
                w_digit = Signal(BRICK_BITS, name=f"w_digit_{i}_{j}")
                w_top = Signal(name=f"w_top_{i}_{j}")
                brick = Signal(2 * BRICK_BITS, name=f"brick_{i}_{j}")
                # The top digit t of a weight is signed: t = u - 2 with u = t XOR 0b10 in
                # [0, 3], so a * t + 6 = a * u + 2 * (3 - a) lies in [0, 9]. Every brick is then
                # an unsigned 4-bit value; the +6 of each top brick is subtracted once at the end.
                m.d.comb += [
                    a_digit.eq(select(a_options)),
                    w_digit.eq(select(w_options)),
                    w_top.eq(select(top_options)),
                    brick.eq(Mux(w_top, a_digit * (w_digit ^ 0b10) + ((3 - a_digit) << 1),
                                 a_digit * w_digit)),
                ]
                grid[i][j] = brick
        # Level k: 2x2 blocks of (h x h)-digit sub-blocks; the sub-blocks belong to one product
        # (and are shifted by their digit offsets) in every mode with w >= 4h bits.
        span = 1
        while len(grid) > 1:
            fused = [mode for mode in self.modes if mode >= 2 * BRICK_BITS * span]
            joined = Signal(name=f"join_{span}")
            m.d.comb += joined.eq(Cat(*(in_mode[w] for w in fused)).any() if fused else 0)
            block_bits = 2 * BRICK_BITS * span * 2         # 2m, m = operand bits of a block
            size = len(grid) // 2
            next_grid = [[None] * size for _ in range(size)]
            for i in range(size):
                for j in range(size):
                    # Sub-blocks of equal significance (di + dj) are added before the mode
                    # multiplexer, so one multiplexer serves both off-diagonal sub-blocks.
                    total = 0
                    for significance in (0, 1, 2):
                        part = sum(grid[2 * i + di][2 * j + dj]
                                   for di in (0, 1) for dj in (0, 1) if di + dj == significance)
                        offset = BRICK_BITS * span * significance
                        total = total + (Mux(joined, part << offset, part) if offset
                                         else part)
                    block = Signal(block_bits, name=f"block_{span * 2}_{i}_{j}")
                    m.d.comb += block.eq(total)
                    next_grid[i][j] = block
            grid = next_grid
            span *= 2
        # Remove the +6 offsets of the bricks that held a top weight digit in this mode.
        offset = Signal(range(self._offsets_max() + 1))
        for width in self.modes:
            with m.If(in_mode[width]):
                m.d.comb += offset.eq(self._top_offsets(width))
        return grid[0][0] - offset


def _product_lanes(master_bits, width):
    """{(I, J): lane}: which operand lane feeds product block (I, J) of the brick grid in mode
    `width` (block (I, J) holds activation digits [I d, (I + 1) d), weight digits
    [J d, (J + 1) d), d = width / 2).

    Any bijection computes the same sum; this one lets the top-left sub-block of each block of
    the next wider mode keep that block's lane, so its bricks read the same bits in both modes
    and need no operand multiplexer for them.
    """
    if width >= master_bits:
        return {(0, 0): 0}
    wider = _product_lanes(master_bits, 2 * width)
    lanes = {(2 * row, 2 * col): lane for (row, col), lane in wider.items()}
    side = master_bits // width
    for row in range(side):
        for col in range(side):
            if (row, col) not in lanes:
                lanes[row, col] = len(lanes)
    return lanes


def _brick_shift(i, j, width):
    """Left shift of brick (i, j)'s product in mode `width`: its digits' offsets in their
    operands."""
    per_product = width // BRICK_BITS
    return BRICK_BITS * (i % per_product + j % per_product)
