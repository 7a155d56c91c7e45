"""Integer codes, their ranges, validation and the nesting rule (docs/arithmetic.md §1-§3).

Everything here takes and returns integer NumPy arrays (int64 internally). No float ever
enters the integer path: a float array is rejected with a `TypeError`.
"""

import numpy as np

__all__ = [
    "MIN_MASTER_BITS", "MAX_MASTER_BITS", "MIN_BITS",
    "code_range", "check_master_bits", "check_bits", "check_codes", "as_codes", "nest",
]

#: Supported master widths n (§1). 16 keeps every product and accumulator inside int64.
MIN_MASTER_BITS = 2
MAX_MASTER_BITS = 16
#: The narrowest nested width b (§2): a signed narrow-range code needs at least 2 bits.
MIN_BITS = 2


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_master_bits(master_bits):
    """Validate the master width n; return it as a Python int."""
    if not _is_int(master_bits):
        raise TypeError(f"`master_bits` must be an integer, not {master_bits!r}")
    if not MIN_MASTER_BITS <= master_bits <= MAX_MASTER_BITS:
        raise ValueError(f"`master_bits` must be between {MIN_MASTER_BITS} and "
                         f"{MAX_MASTER_BITS}, not {master_bits}")
    return int(master_bits)


def check_bits(bits, master_bits):
    """Validate a nested width b against the master width n; return it as a Python int."""
    master_bits = check_master_bits(master_bits)
    if not _is_int(bits):
        raise TypeError(f"`bits` must be an integer, not {bits!r}")
    if bits < MIN_BITS:
        raise ValueError(f"`bits` must be at least {MIN_BITS}, not {bits}")
    if bits > master_bits:
        raise ValueError(f"`bits` must be at most `master_bits` ({master_bits}), not {bits}")
    return int(bits)


def code_range(bits, *, signed):
    """The closed range [lo, hi] of a `bits`-wide code (§1).

    Unsigned (activations): [0, 2^b - 1], zero point 0.
    Signed (weights): symmetric narrow range [-(2^(b-1) - 1), 2^(b-1) - 1].
    """
    if signed:
        hi = (1 << (bits - 1)) - 1
        return -hi, hi
    return 0, (1 << bits) - 1


def as_codes(values, name="q"):
    """Return `values` as an int64 array, refusing floats, bools and other non-integer data."""
    array = np.asarray(values)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"`{name}` must hold integer codes, not an array of dtype {array.dtype}")
    return array.astype(np.int64, copy=False)


def check_codes(values, bits, *, signed, name="q"):
    """Return `values` as int64 codes, checking that every code lies in the `bits`-wide range."""
    array = as_codes(values, name)
    lo, hi = code_range(bits, signed=signed)
    if array.size:
        low, high = int(array.min()), int(array.max())
        if low < lo or high > hi:
            bad = low if low < lo else high
            kind = "signed" if signed else "unsigned"
            raise ValueError(f"`{name}` holds code {bad}, outside the {bits}-bit {kind} "
                             f"range [{lo}, {hi}]")
    return array


def nest(q, *, master_bits, bits, signed):
    """Derive the b-bit nested code from the n-bit master code (§2).

    Q^b = sat_b((Q^n >> s) + eps), s = n - b, eps = bit s-1 of Q^n (0 when s = 0).
    `>>` is arithmetic, so for signed codes this equals clip(floor(Q^n / 2^s + 1/2)).
    """
    master_bits = check_master_bits(master_bits)
    bits = check_bits(bits, master_bits)
    q = check_codes(q, master_bits, signed=signed)
    shift = master_bits - bits
    if shift == 0:
        return q.copy()
    rounded = (q >> shift) + ((q >> (shift - 1)) & 1)
    lo, hi = code_range(bits, signed=signed)
    return np.clip(rounded, lo, hi)
