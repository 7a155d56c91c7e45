"""Processing elements: the precision-scalable Bit Fusion-style PE (optionally with a DSP lane)
and the fixed n x n MAC, both pipelined.

The arithmetic of one PE is `PECore` (products of one beat | split accumulator). The operands
reach a core already routed: for the scalable PE, one 2-bit activation digit and one 2-bit
weight digit per bit brick (`route_operands` picks them from the operand lanes by fusion
mode). `ProcessingElement` is a core with its own routing (operand lanes in); `MacArray` routes
once per array row and column at its edge and feeds the cores from registers, so the mode
multiplexers are shared by a whole row or column instead of repeated in every PE.
"""

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..golden import check_bits, check_master_bits
from .arith import check_bits_list, check_int_at_least
from .layouts import bits_shape, lanes_layout

__all__ = ["BRICK_BITS", "mode_bits", "PEGeometry", "decode_mode", "route_operands",
           "lut_product", "PECore", "ProcessingElement"]

#: Operand digit width of one bit brick (Bit Fusion, ISCA 2018): 2-bit x 2-bit products.
BRICK_BITS = 2


def mode_bits(bits):
    """The fusion mode that runs a b-bit layer: the next power of two >= b (3 -> 4, 5..7 -> 8)."""
    return 1 << (bits - 1).bit_length()


@dataclass(frozen=True)
class PEGeometry:
    """What a PE configuration computes: its fusion modes, operand lanes and DSP lane
    (validated).

    `modes`: the fusion mode widths w the PE runs (just (n,) when fixed); `brick_modes`: those
    the bit bricks build (all of `modes`, without n when a DSP multiplier alone runs the n x n
    mode); `dsp_lanes`: n x n products per beat on a DSP multiplier (0 or 1); `lanes`: operand
    lanes = the most products per beat of any mode. In the n x n mode the bricks (if they fuse
    to n x n) take lane 0 and the DSP lane the next one.
    """

    master_bits: int
    scalable: bool
    supported_bits: tuple
    modes: tuple
    brick_modes: tuple
    dsp_lanes: int
    lanes: int

    @classmethod
    def build(cls, master_bits, scalable, supported_bits, dsp_lanes=0, fuse_wide=True):
        n = check_master_bits(master_bits)
        if not isinstance(scalable, bool):
            raise TypeError(f"`scalable` must be a bool, not {scalable!r}")
        if scalable and n & (n - 1):
            raise ValueError(f"`master_bits` must be a power of two for a scalable PE, not {n}")
        if dsp_lanes not in (0, 1) or isinstance(dsp_lanes, bool):
            raise ValueError(f"`dsp_lanes` must be 0 or 1, not {dsp_lanes!r}")
        if not isinstance(fuse_wide, bool):
            raise TypeError(f"`fuse_wide` must be a bool, not {fuse_wide!r}")
        if not fuse_wide and not dsp_lanes:
            raise ValueError("`fuse_wide` may only be False with `dsp_lanes` = 1 (the n x n "
                             "mode needs the bricks or a DSP lane)")
        supported_bits = check_bits_list(supported_bits, n)
        if not scalable:
            return cls(n, False, supported_bits, (n,), (), dsp_lanes, 1)
        modes = tuple(sorted({mode_bits(b) for b in supported_bits}))
        brick_modes = tuple(w for w in modes if w < n or fuse_wide)
        wide = int(n in brick_modes) + (dsp_lanes if n in modes else 0)
        lanes = max([(n // w) ** 2 for w in brick_modes] + [wide])
        return cls(n, True, supported_bits, modes, brick_modes, dsp_lanes, lanes)

    @property
    def digits(self):
        """Brick digits per operand (n / 2): the brick grid is digits x digits."""
        return self.master_bits // BRICK_BITS

    @property
    def dsp_lane(self):
        """The operand lane the DSP multiplier reads in the n x n mode (None without one)."""
        if not self.dsp_lanes or self.master_bits not in self.modes:
            return None
        return int(self.master_bits in self.brick_modes)

    def products_per_cycle(self, bits):
        """Products per beat at bit-width `bits`: (n / mode_bits(b))^2 on the bricks, plus the
        DSP lane in the n x n mode; 1 when fixed."""
        check_bits(bits, self.master_bits)
        if bits not in self.supported_bits:
            raise ValueError(f"`bits` must be one of {list(self.supported_bits)} for this "
                             f"configuration, not {bits}")
        if not self.scalable:
            return 1
        width = mode_bits(bits)
        bricks = (self.master_bits // width) ** 2 if width in self.brick_modes else 0
        return bricks + (self.dsp_lanes if width == self.master_bits else 0)

    def lane_bits(self, lane):
        """The supported b values whose mode reads operand `lane`."""
        return tuple(b for b in self.supported_bits if lane < self.products_per_cycle(b))

    def mode_layout(self):
        """A one-hot mode: one bit per fusion mode width."""
        return data.StructLayout({f"w{width}": 1 for width in self.modes})


def decode_mode(m, geometry, bits):
    """The one-hot fusion mode of bit-width `bits` (a signal of `geometry.mode_layout()`)."""
    mode = Signal(geometry.mode_layout())
    with m.Switch(bits):
        for b in geometry.supported_bits:
            width = mode_bits(b) if geometry.scalable else geometry.master_bits
            with m.Case(b):
                m.d.comb += mode[f"w{width}"].eq(1)
    return mode


def _select(mode, options):
    """The value among `options` {mode width: value} for the one-hot `mode` (a multiplexer
    over the widths present; the first one is the default)."""
    widths = list(options)
    result = options[widths[0]]
    for width in widths[1:]:
        result = Mux(mode[f"w{width}"], options[width], result)
    return result


def route_operands(geometry, activations, weights, mode):
    """The brick operands of one beat: (a_digits, w_digits), each a list of digits x digits
    2-bit values in brick order (index i * digits + j for activation digit i, weight digit j).

    `activations`, `weights` are the beat's nested operand lanes (n-bit codes); in the brick
    mode w, brick (i, j) belongs to product block (i div d, j div d), d = w / 2, and takes digit
    i mod d of that block's activation lane and digit j mod d of its weight lane
    (`_product_lanes` says which lane feeds which block). Only `brick_modes` are routed.
    """
    digits, n = geometry.digits, geometry.master_bits
    lanes = {width: _product_lanes(n, width) for width in geometry.brick_modes}
    a_digits, w_digits = [], []
    for i in range(digits):
        for j in range(digits):
            a_options, w_options = {}, {}
            for width in geometry.brick_modes:
                per_product = width // BRICK_BITS
                lane = lanes[width][i // per_product, j // per_product]
                a_digit, w_digit = i % per_product, j % per_product
                a_options[width] = Value.cast(activations[lane])[
                    a_digit * BRICK_BITS:(a_digit + 1) * BRICK_BITS]
                w_options[width] = Value.cast(weights[lane])[
                    w_digit * BRICK_BITS:(w_digit + 1) * BRICK_BITS]
            a_digits.append(_select(mode, a_options))
            w_digits.append(_select(mode, w_options))
    return a_digits, w_digits


def lut_product(a, b, register=None):
    """a * b (a unsigned or signed, b signed or unsigned) as an explicit shift-and-add tree of
    partial products, which a synthesizer builds from LUTs even where it maps `*` to DSP
    blocks (and which Yosys maps to fewer iCE40 LUT4 than its own multiplier: 140 against 155
    for 8 x 8 bits). With `register` (a function value, name -> registered value) the sums of
    the first level are registered, a pipeline stage inside the product."""
    a, b = Value.cast(a), Value.cast(b)
    rows = []
    for j in range(len(b)):
        row = Mux(b[j], a, 0) << j
        rows.append(-row if (b.shape().signed and j == len(b) - 1) else row)
    level = 0
    while len(rows) > 1:
        rows = [rows[k] + rows[k + 1] if k + 1 < len(rows) else rows[k]
                for k in range(0, len(rows), 2)]
        if level == 0 and register is not None:
            rows = [register(row, f"product_row_{k}") for k, row in enumerate(rows)]
        level += 1
    return rows[0]


class PECore(wiring.Component):
    """The arithmetic of one PE: the products of a beat, their sum, and the accumulator.

    Operands arrive routed (see the module docstring): for the scalable PE `a_digits`,
    `w_digits` (brick operands, `route_operands`) and, with a DSP lane, `dsp_a`, `dsp_w` (the
    lane's nested codes; they must be zero outside the n x n mode when the bricks also fuse to
    n x n, since both sums are added); for the fixed PE `dsp_a`, `dsp_w` alone. `mode` is the
    beat's one-hot fusion mode. Every register advances with `advance` (hold it low to stall);
    `valid` marks a beat and `start` its dot product's first beat (the accumulator restarts).

    Three product stages (`PRODUCT_STAGES`), each ending in a register: the bricks (each an
    unsigned 4-bit value, see `_fused_products`) | the first fusion level | the rest of the
    shift-add tree and the offset correction, which gives `partial`, the beat's sum of
    products. A DSP lane computes `dsp_a * dsp_w` over the same stages (operands registered,
    then the product: the only `*` of the core, so that a synthesizer maps it and nothing
    else to a DSP block, with input and output registers); a fixed PE without a DSP uses
    `lut_product`. `dsp_delayed` tells the core that the caller already delays the DSP
    operands by that many cycles. The accumulator stage then adds `partial` to the
    accumulator, split in a low part of `split` bits whose carry is registered and added into
    the high part one beat later, so no carry ripples through more than about half the
    accumulator in one cycle; `acc` resolves the pending carry (combinationally) into the
    exact two's complement sum.

    Latency 4 (`latency`): `acc` includes a beat's products four advancing edges after the
    beat was presented, `partial` three. The accumulator wraps if a sum exceeds `acc_width`.
    """

    #: Registered stages from the operands to `partial`.
    PRODUCT_STAGES = 3
    latency = PRODUCT_STAGES + 1

    def __init__(self, geometry, acc_width, *, dsp_delayed=0):
        self.geometry = g = geometry
        n = g.master_bits
        check_int_at_least("acc_width", acc_width, 2 * n)
        self.acc_width = acc_width
        self.split = (acc_width + 1) // 2
        #: Cycles by which the caller already delays `dsp_a`, `dsp_w` behind the other
        #: operands (an array delays them once per row and column instead of in every PE).
        self.dsp_delayed = dsp_delayed
        ports = {"mode": In(g.mode_layout()), "valid": In(1), "start": In(1),
                 "advance": In(1, init=1),
                 "partial": Out(signed(2 * n + 1)), "acc": Out(signed(acc_width))}
        if g.brick_modes:
            cells = g.digits * g.digits
            ports.update(a_digits=In(data.ArrayLayout(unsigned(BRICK_BITS), cells)),
                         w_digits=In(data.ArrayLayout(unsigned(BRICK_BITS), cells)))
        if g.dsp_lanes or not g.scalable:
            ports.update(dsp_a=In(unsigned(n)), dsp_w=In(signed(n)))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        g, n = self.geometry, self.geometry.master_bits
        advance = self.advance

        def register(value, name):
            """`value` one advancing edge later."""
            delayed = Signal.like(value, name=name, reset_less=True)
            with m.If(advance):
                m.d.sync += delayed.eq(value)
            return delayed

        sums = []
        if g.brick_modes:
            sums.append(self._fused_products(m, register))
        if g.dsp_lanes or not g.scalable:
            # The operands are registered first (the last of these registers can be a DSP
            # block's input register), so that the product lines up with the bricks' stages;
            # a LUT product has a register inside instead of the last of them.
            dsp_a, dsp_w = self.dsp_a, self.dsp_w
            inside = 0 if g.dsp_lanes else 1
            for stage in range(self.PRODUCT_STAGES - 1 - self.dsp_delayed - inside):
                dsp_a = register(dsp_a, f"dsp_a_{stage}")
                dsp_w = register(dsp_w, f"dsp_w_{stage}")
            multiply = (dsp_a * dsp_w if g.dsp_lanes
                        else lut_product(dsp_a, dsp_w, register))
            sums.append(register(multiply, "product"))
        valid, start, mode = self.valid, self.start, self.mode
        for stage in range(self.PRODUCT_STAGES):
            valid = register(valid, f"valid_{stage}")
            start = register(start, f"start_{stage}")
            mode = register(mode, f"mode_{stage}")
        if len(sums) == 2 and n not in g.brick_modes:
            # The DSP alone runs the n x n mode, the bricks the narrower ones.
            m.d.comb += self.partial.eq(Mux(mode[f"w{n}"], sums[1], sums[0]))
        else:
            m.d.comb += self.partial.eq(sum(sums))

        # The split accumulator: value = (high + carry) << split + low.
        low_bits = self.split
        low = Signal(low_bits, reset_less=True)
        high = Signal(signed(self.acc_width - low_bits), reset_less=True)
        carry = Signal(reset_less=True)
        addend = Signal(signed(self.acc_width))
        low_sum = Signal(low_bits + 1)
        m.d.comb += [addend.eq(self.partial),
                     low_sum.eq(Mux(start, 0, low) + addend[:low_bits])]
        with m.If(advance & valid):
            m.d.sync += [
                low.eq(low_sum[:low_bits]), carry.eq(low_sum[-1]),
                high.eq(Mux(start, 0, high + carry) + addend[low_bits:].as_signed()),
            ]
        m.d.comb += self.acc.eq(Cat(low, high + carry))
        return m

    def _top_offsets(self, width):
        """Sum of the +6 brick offsets (shifted) of mode `width`: one per top weight digit."""
        digits = self.geometry.digits
        per_product = width // BRICK_BITS
        return sum(6 << _brick_shift(i, j, width) for i in range(digits) for j in range(digits)
                   if j % per_product == per_product - 1)

    def _fused_products(self, m, register):
        """The sum of the beat's brick products, registered: after the first fusion level
        (when more levels follow) and at the end."""
        g = self.geometry
        digits, modes = g.digits, g.brick_modes
        mode = self.mode
        # Level 0: one brick per (activation digit i, weight digit j) of the n x n grid.
        grid = [[None] * digits for _ in range(digits)]
        for i in range(digits):
            for j in range(digits):
                a_digit = self.a_digits[i * digits + j]
                w_digit = self.w_digits[i * digits + j]
                top_widths = [w for w in modes if j % (w // BRICK_BITS) == w // BRICK_BITS - 1]
                w_top = (Const(1) if len(top_widths) == len(modes)
                         else Cat(*(mode[f"w{w}"] for w in top_widths)).any())
                brick = Signal(2 * BRICK_BITS, name=f"brick_{i}_{j}")
                # The top digit t of a weight is signed: t = u - 2 with u = t XOR 0b10 in
                # [0, 3], so a * t + 6 = a * u + 2 * (3 - a) lies in [0, 9]. Every brick is then
                # an unsigned 4-bit value; the +6 of each top brick is subtracted once at the end.
                # The products are written as logic, not `*`, so that no synthesizer maps a
                # brick to a DSP block.
                m.d.comb += brick.eq(Mux(w_top, _digit_product(a_digit, w_digit ^ 0b10)
                                         + ((3 - a_digit) << 1),
                                         _digit_product(a_digit, w_digit)))
                grid[i][j] = brick
        # The first stage's register holds the bricks.
        grid = [[register(brick, f"stage_{brick.name}") for brick in row] for row in grid]
        mode = register(mode, "brick_mode")
        # Level k: 2x2 blocks of (h x h)-digit sub-blocks; the sub-blocks belong to one product
        # (and are shifted by their digit offsets) in every mode with w >= 4h bits.
        span = 1
        while len(grid) > 1:
            fused = [w for w in modes if w >= 2 * BRICK_BITS * span]
            joined = Signal(name=f"join_{span}")
            m.d.comb += joined.eq(Cat(*(mode[f"w{w}"] for w in fused)).any() if fused else 0)
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
                        if offset and fused and len(fused) == len(modes):
                            total = total + (part << offset)
                        elif offset and fused:
                            total = total + Mux(joined, part << offset, part)
                        else:
                            total = total + part
                    if span == 1 and (i, j) == (0, 0):
                        # The +6 offsets of the bricks that held a top weight digit in this
                        # mode are removed from the least significant block of the first
                        # level, which every later level adds unshifted: off the last stage's
                        # path, which holds the widest adders.
                        offset = Signal(range(max(self._top_offsets(w) for w in modes) + 1))
                        m.d.comb += offset.eq(_select(mode, {w: self._top_offsets(w)
                                                             for w in modes}))
                        total = total - offset
                        block = Signal(signed(max(block_bits, len(offset)) + 1),
                                       name=f"block_{span * 2}_{i}_{j}")
                    else:
                        # Blocks that hold the corrected one are signed.
                        shape = (signed(block_bits + 1) if Value.cast(total).shape().signed
                                 else unsigned(block_bits))
                        block = Signal(shape, name=f"block_{span * 2}_{i}_{j}")
                    m.d.comb += block.eq(total)
                    next_grid[i][j] = block
            grid = next_grid
            span *= 2
            if span == 2 and len(grid) > 1:
                # The second stage's register holds the blocks of the first level.
                grid = [[register(block, f"stage_{block.name}") for block in row]
                        for row in grid]
                mode = register(mode, "level_mode")
        tree = register(grid[0][0], "tree")
        # A single fusion level (n = 4) ends a stage early: one more register evens it out.
        return register(tree, "tree_delayed") if digits == 2 else tree


def _digit_product(a, b):
    """a * b for two unsigned 2-bit digits, as logic (no `*`)."""
    return Mux(b[0], a, 0) + Mux(b[1], a << 1, 0)


class ProcessingElement(wiring.Component):
    """A multiply-accumulate processing element for nested codes at a run-time bit-width b.

    Operands arrive already nested to b bits (see `NestUnit`): unsigned activation codes and
    signed (narrow-range) weight codes, each in an n-bit lane. Each beat (a cycle with `enable`
    high) adds the sum of its products to the accumulator (or starts a new sum with `clear`):

    * `scalable=True` (Bit Fusion): (n/2)^2 bricks, each a 2-bit unsigned activation digit
      times a 2-bit weight digit (signed when it is the top digit of its weight). In the mode
      w = `mode_bits(b)` the bricks fuse into (n/w)^2 products of w x w bits, all summed: for
      n = 8 one 8x8, four 4x4 or sixteen 2x2 products per beat. Lane p carries the operands
      of product p, lanes >= products_per_cycle(b) are ignored. The shift-add tree is
      hierarchical, as in a fusion unit: at each level four sub-blocks are shifted and added
      when they belong to one product in the current mode, and only added otherwise. Bricks
      are unsigned: a signed top digit t = u - 2 (u = t XOR 0b10) gives
      a * t + 6 = a * u + 2 (3 - a) in [0, 9], and the mode's sum of these +6 offsets is
      subtracted once from the tree's result.
      With `dsp_lanes=1` a DSP multiplier adds one n x n product per beat in the n x n mode
      (the next lane after the bricks' one); with `fuse_wide=False` as well, the bricks do not
      fuse to n x n and the DSP alone runs that mode (one product per beat, smaller bricks).
    * `scalable=False`: the baseline fixed n x n MAC, one lane, one product per beat at every
      b: a DSP multiplier with `dsp_lanes=1`, else an explicit LUT multiplier (`lut_product`).

    Parameters: `master_bits` n (a power of two for the scalable PE), `supported_bits` the b
    values the PE must run (default every b in [2, n]; the scalable PE builds only the modes
    they need), `acc_width` the signed accumulator width (at least 2n; `MacArray` sizes it with
    `dqt_hw.golden.accumulator_bits`), `dsp_lanes`, `fuse_wide`.

    Ports:
      activations: In(ArrayLayout(unsigned(n), lanes))  nested activation codes.
      weights:     In(ArrayLayout(signed(n), lanes))    nested weight codes.
      bits:        In(range(2, n + 1))                  b of this beat.
      enable:      In(1)   accumulate this beat's products.
      clear:       In(1)   with `enable`: the accumulator restarts at this beat's products.
      partial:     Out(signed(2n + 1)) the sum of products of the previous cycle's beat.
      acc:         Out(signed(acc_width)) the accumulator.

    Latency 4 (`latency`, `PECore`): `acc` includes a beat's products four cycles later,
    `partial` (`partial_latency`) shows them three cycles later. Throughput:
    `products_per_cycle(b)` multiply-accumulates per cycle. The accumulator wraps (two's complement) if a sum exceeds
    `acc_width`; sizing it is the caller's contract.
    """

    latency = PECore.latency
    partial_latency = PECore.PRODUCT_STAGES

    def __init__(self, *, master_bits=8, scalable=True, supported_bits=None, acc_width=None,
                 dsp_lanes=0, fuse_wide=True):
        self.geometry = PEGeometry.build(master_bits, scalable, supported_bits, dsp_lanes,
                                         fuse_wide)
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
            "partial": Out(signed(2 * n + 1)),
            "acc": Out(signed(self.acc_width)),
        })

    def products_per_cycle(self, bits):
        """Products added per beat at bit-width `bits` (one per lane in use)."""
        return self.geometry.products_per_cycle(bits)

    def elaborate(self, platform):
        m = Module()
        g = self.geometry
        m.submodules.core = core = PECore(g, self.acc_width)
        mode = decode_mode(m, g, self.bits)
        m.d.comb += [core.mode.eq(mode), core.valid.eq(self.enable), core.start.eq(self.clear),
                     self.partial.eq(core.partial), self.acc.eq(core.acc)]
        if g.brick_modes:
            a_digits, w_digits = route_operands(g, self.activations, self.weights, mode)
            for index, (a_digit, w_digit) in enumerate(zip(a_digits, w_digits)):
                m.d.comb += [core.a_digits[index].eq(a_digit),
                             core.w_digits[index].eq(w_digit)]
        if g.dsp_lanes or not g.scalable:
            lane = g.dsp_lane if g.scalable else 0
            wide = mode[f"w{g.master_bits}"] if g.scalable else 1
            if lane is not None:
                m.d.comb += [core.dsp_a.eq(Mux(wide, self.activations[lane], 0)),
                             core.dsp_w.eq(Mux(wide, self.weights[lane], 0))]
        return m


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
