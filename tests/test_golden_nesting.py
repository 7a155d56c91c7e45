"""docs/arithmetic.md §1-§2: code ranges and the nesting rule, exhaustively."""

from fractions import Fraction
import math

import numpy as np
import pytest

from dqt_hw.golden import code_range, nest


def _reference_nest(q, master_bits, bits, signed):
    """§2.2: clip(floor(Q^n / 2^s + 1/2)), evaluated with exact rationals."""
    shift = master_bits - bits
    lo, hi = code_range(bits, signed=signed)
    return min(max(math.floor(Fraction(int(q), 1 << shift) + Fraction(1, 2)), lo), hi)


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("master_bits", range(2, 13))
def test_nest_matches_clip_floor_for_every_code(master_bits, signed):
    lo, hi = code_range(master_bits, signed=signed)
    codes = np.arange(lo, hi + 1)
    for bits in range(2, master_bits + 1):
        got = nest(codes, master_bits=master_bits, bits=bits, signed=signed)
        want = [_reference_nest(q, master_bits, bits, signed) for q in codes]
        assert got.tolist() == want, f"n={master_bits} b={bits}"
        blo, bhi = code_range(bits, signed=signed)
        assert got.min() >= blo and got.max() <= bhi


def test_nest_is_identity_at_master_width():
    codes = np.arange(-127, 128)
    assert np.array_equal(nest(codes, master_bits=8, bits=8, signed=True), codes)


def test_worked_examples_of_the_spec():
    # §2.3 worked examples, n = 8.
    assert nest(np.array([200]), master_bits=8, bits=4, signed=False).tolist() == [13]
    assert nest(np.array([247]), master_bits=8, bits=4, signed=False).tolist() == [15]
    assert nest(np.array([224, 223]), master_bits=8, bits=2, signed=False).tolist() == [3, 3]
    assert nest(np.array([-100, 100]), master_bits=8, bits=4, signed=True).tolist() == [-6, 6]
    assert nest(np.array([-120]), master_bits=8, bits=4, signed=True).tolist() == [-7]
    assert nest(np.array([-8, -7, 7, 8]), master_bits=8, bits=4, signed=True).tolist() == [0, 0, 0, 1]


def test_unsigned_two_bit_saturation_covers_the_top_eighth():
    # DQT_NOTES §1: at b = 2 the top eighth of the unsigned master range saturates to code 3.
    codes = np.arange(256)
    nested = nest(codes, master_bits=8, bits=2, signed=False)
    assert codes[nested == 3].min() == 160
    saturated = codes[(codes >> 6) + ((codes >> 5) & 1) > 3]
    assert saturated.tolist() == list(range(224, 256))      # 32 of 256 codes: one eighth


def test_zero_stays_zero_at_every_width():
    for bits in range(2, 9):
        for signed in (False, True):
            assert nest(np.zeros(3, dtype=np.int64), master_bits=8, bits=bits,
                        signed=signed).tolist() == [0, 0, 0]


def test_nest_keeps_shape_and_returns_int64():
    codes = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    out = nest(codes, master_bits=8, bits=3, signed=False)
    assert out.shape == (2, 3, 4) and out.dtype == np.int64


@pytest.mark.parametrize("master_bits", [6, 8])
def test_pitfall_table_counts(master_bits):
    # §2.2: exact halves are 2^n / 2^s codes, half of them round differently to even; the
    # top 2^(s-1) codes carry past 2^b - 1 and saturate.
    from dqt_hw.golden.__main__ import pitfall_table
    total = 1 << master_bits
    rows = pitfall_table(master_bits).splitlines()[2:]
    for row, bits in zip(rows, range(master_bits - 1, 1, -1)):
        s = master_bits - bits
        assert row == (f"| {bits} | {s} | {total >> (s + 1)} of {total} | "
                       f"{1 << (s - 1)} of {total} |")
