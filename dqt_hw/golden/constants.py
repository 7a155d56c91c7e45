"""Integer constants: dyadic multipliers and accumulator widths (docs/arithmetic.md §4, §7).

`quantize_multiplier` is the one place where a float (a ratio of scales) becomes integers; it
runs at export time, never on the inference path.
"""

import math

from .codes import _is_int

__all__ = ["MULTIPLIER_BITS", "quantize_multiplier", "accumulator_bits", "requantizer_bits"]

#: Default precision P of requantizer multipliers: M lies in [2^(P-1), 2^P), so a signed
#: 16-bit operand (an iCE40 or ECP5 DSP input) holds it.
MULTIPLIER_BITS = 15


def quantize_multiplier(ratio, *, multiplier_bits=MULTIPLIER_BITS):
    """Return integers (M, r) with ratio ~= M * 2^-r and 2^(P-1) <= M < 2^P (§4.1).

    The mantissa of `ratio` is rounded half up to P bits. Scaling `ratio` by 2^k returns the
    same M and r - k: a power-of-two change of scale (a change of bit-width) is a change of
    shift amount, never of multiplier.
    """
    if not _is_int(multiplier_bits) or not 2 <= multiplier_bits <= 31:
        raise ValueError(f"`multiplier_bits` must be an integer between 2 and 31, "
                         f"not {multiplier_bits!r}")
    ratio = float(ratio)
    if not math.isfinite(ratio) or ratio <= 0:
        raise ValueError(f"`ratio` must be a positive finite number, not {ratio!r}")
    mantissa, exponent = math.frexp(ratio)           # ratio = mantissa * 2^exponent, 0.5 <= mantissa < 1
    multiplier = math.floor(mantissa * (1 << multiplier_bits) + 0.5)
    if multiplier == 1 << multiplier_bits:            # the mantissa rounded up to 1.0
        multiplier >>= 1
        exponent += 1
    return multiplier, multiplier_bits - exponent


def accumulator_bits(activation_bits, weight_bits, terms):
    """Signed accumulator width that holds any sum of `terms` products (§7).

    An unsigned b_a-bit code times a signed narrow-range b_w-bit code has magnitude below
    2^(b_a + b_w - 1); K of them stay below 2^(b_a + b_w - 1 + ceil(log2 K)), so
    b_a + b_w + ceil(log2 K) bits (two's complement) never overflow.
    """
    for name, value in (("activation_bits", activation_bits), ("weight_bits", weight_bits),
                        ("terms", terms)):
        if not _is_int(value) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, not {value!r}")
    return activation_bits + weight_bits + (terms - 1).bit_length()


def requantizer_bits(master_bits, terms, *, multiplier_bits=MULTIPLIER_BITS):
    """Width of the requantizer's signed product ((acc << k) + bias) * M before rounding (§4.3).

    The shifted accumulator never exceeds the master accumulator width A_n (§7), the bias is
    bounded to A_n bits, so the sum needs A_n + 1 bits and the product A_n + 1 + P bits; one more
    bit absorbs the rounding constant.
    """
    return accumulator_bits(master_bits, master_bits, terms) + multiplier_bits + 2
