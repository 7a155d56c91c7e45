"""Amaranth expression helpers shared by the compute blocks: one rounding rule, one clamp.

These build expressions, not components; every block that rounds or saturates uses them so
that the hardware has exactly one implementation of `dqt_hw.golden.round_shift` and `np.clip`.
"""

from amaranth.hdl import Cat, Const, Mux, Signal, Value, signed

from ..golden import MIN_BITS, check_bits

__all__ = ["DSP_OPERAND_BITS", "round_shift", "halving_shift", "rounding_compare",
           "select_clamped", "clamp_stages", "bound_width", "clamp",
           "operand_pieces", "dsp_products", "check_positive_int", "check_int_at_least",
           "check_bits_list"]

#: The widest signed operands that one DSP multiplier takes in every supported family: a
#: signed 16 x 16 product fits one iCE40 SB_MAC16 and one ECP5 MULT18X18D. Unsigned pieces are
#: one bit narrower so that they stay 16-bit operands next to a signed one.
DSP_OPERAND_BITS = 16


def round_shift(value, amount):
    """floor(value / 2^amount + 1/2) for a signed or unsigned `value` (round half up).

    `amount` is a constant or an unsigned `Value` (a barrel shifter). Shifting `2 * value`
    right by `amount` keeps the rounding bit (bit amount-1 of `value`) as the least
    significant bit, so one shifter serves every amount including 0:
    floor((floor(2 value / 2^amount) + 1) / 2) = floor(value / 2^amount + 1/2).
    The result is one bit wider than `value`.
    """
    value = Value.cast(value)
    halved = (value << 1) >> amount
    return (halved + 1) >> 1


def halving_shift(value, amount):
    """floor(value / 2^(amount - 1)) = (2 value) >> amount: the first half of `round_shift`,
    one bit wider than `value`. `round_halved_and_clamp` finishes it."""
    return (Value.cast(value) << 1) >> amount


def rounding_compare(m, halved, lo, hi, bound_bits):
    """The first half of clamp(floor((halved + 1) / 2), lo, hi) (i.e. of
    clamp(round_shift(x, r), lo, hi) for halved = halving_shift(x, r)), for a pipeline stage.

    `lo`, `hi` are constants or `Value`s of at most `bound_bits` bits, signed, lo <= hi.
    Returns (below, above, rounded): rounded = floor((halved + 1) / 2), truncated to
    `bound_bits` bits (the clamp only passes it on when it lies in [lo, hi]), and the flags
    rounded < lo, rounded > hi. `select_clamped` finishes the clamp from them.

    The comparisons read `halved`, not the rounded value, so they run beside the rounding
    adder instead of after it: floor((h + 1) / 2) < lo exactly when h >> 1 < lo, and
    floor((h + 1) / 2) > hi exactly when h > 2 hi. They only compare the low bound_bits + 3
    bits (short carry chains); a `halved` outside that range is beyond any bound, which its
    sign decides.
    """
    halved = Value.cast(halved)
    width = bound_bits + 3
    if len(halved) > width:
        low, top = halved[:width].as_signed(), halved[width - 1:]
        fits = top.all() | ~top.any()
    else:
        low, fits = halved, 1
    negative = halved[-1]
    below, above = Signal(name="below"), Signal(name="above")
    rounded = Signal(signed(bound_bits), name="rounded")
    m.d.comb += [
        below.eq(Mux(fits, (low >> 1) < lo, negative)),
        above.eq(Mux(fits, low > (hi << 1), ~negative)),
        rounded.eq((low + 1) >> 1),
    ]
    return below, above, rounded


def bound_width(lo, hi):
    """Bits of a signed value that holds both integers `lo` and `hi`."""
    return max(Const.cast(lo).shape().width if lo < 0 else lo.bit_length() + 1,
               Const.cast(hi).shape().width if hi < 0 else hi.bit_length() + 1)


def select_clamped(below, above, rounded, lo, hi):
    """The clamp of `rounding_compare`'s results: lo, hi or the rounded value."""
    return Mux(below, lo, Mux(above, hi, rounded))


def clamp_stages(lo, hi, bound_bits, *, signed_result):
    """The last two `stream_pipeline` stages of clamp(round_shift(x, r), lo, hi), after a stage
    that yields halving_shift(x, r): `rounding_compare`, then `select_clamped` (as a signed
    value when `signed_result`)."""
    def compare(m, halved):
        return Cat(*rounding_compare(m, halved, lo, hi, bound_bits))

    def select(m, item):
        result = select_clamped(item[0], item[1], item[2:].as_signed(), lo, hi)
        return result.as_signed() if signed_result else result
    return [compare, select]


def operand_pieces(value):
    """[(piece, offset)] with value = sum(piece << offset), every piece a DSP operand: unsigned
    pieces of DSP_OPERAND_BITS - 1 bits from the bottom, then the rest (a signed piece of at most
    DSP_OPERAND_BITS bits for a signed value, an unsigned one of at most DSP_OPERAND_BITS - 1
    bits otherwise)."""
    value = Value.cast(value)
    low_bits = DSP_OPERAND_BITS - 1
    top_bits = DSP_OPERAND_BITS if value.shape().signed else low_bits
    pieces, offset = [], 0
    while len(value) - offset > top_bits:
        pieces.append((value[offset:offset + low_bits], offset))
        offset += low_bits
    top = value[offset:]
    pieces.append((top.as_signed() if value.shape().signed else top, offset))
    return pieces


def dsp_products(a, b):
    """[(product, offset)] with a * b = sum(product << offset), every product one of DSP-sized
    pieces (`operand_pieces`): the multiplications a synthesizer maps to one DSP block each,
    whatever the operand widths. Register the products to use the DSP's output register."""
    return [(a_piece * b_piece, a_offset + b_offset)
            for a_piece, a_offset in operand_pieces(a)
            for b_piece, b_offset in operand_pieces(b)]


def clamp(value, lo, hi):
    """min(max(value, lo), hi); `lo` and `hi` are constants or `Value`s with lo <= hi."""
    return Mux(value < lo, lo, Mux(value > hi, hi, value))


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_int(name, value):
    """Raise the project's one-line error unless `value` is an integer >= 1."""
    check_int_at_least(name, value, 1, "a positive integer")


def check_int_at_least(name, value, minimum, what=None):
    """Raise unless `value` is an integer >= `minimum`; `what` words the requirement."""
    what = what or f"an integer >= {minimum}"
    if not _is_int(value):
        raise TypeError(f"`{name}` must be {what}, not {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be {what}, not {value!r}")


def check_bits_list(bits, master_bits):
    """Validate the tuple of bit-widths a block must run (default: every b in [2, n])."""
    if bits is None:
        return tuple(range(MIN_BITS, master_bits + 1))
    try:
        values = tuple(bits)
    except TypeError:
        raise TypeError(f"`supported_bits` must be a collection of bit-widths, "
                        f"not {bits!r}") from None
    if not values:
        raise ValueError("`supported_bits` must name at least one bit-width, "
                         "not an empty collection")
    for value in values:
        check_bits(value, master_bits)
    return tuple(sorted(set(values)))
