"""Amaranth expression helpers shared by the compute blocks: one rounding rule, one clamp.

These build expressions, not components; every block that rounds or saturates uses them so
that the hardware has exactly one implementation of `dqt_hw.golden.round_shift` and `np.clip`.
"""

from amaranth.hdl import Mux, Value

from ..golden import MIN_BITS, check_bits

__all__ = ["round_shift", "clamp", "check_positive_int", "check_int_at_least", "check_bits_list"]


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
