"""docs/arithmetic.md §4-§5: dyadic multipliers, the requantizer and the shift-only switch."""

from fractions import Fraction
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dqt_hw.golden import (accumulator_bits, conv2d, nest, nested_conv2d, quantize_multiplier,
                           requantize, round_shift, MULTIPLIER_BITS)

accumulators = st.integers(-(1 << 28), (1 << 28) - 1)
multipliers = st.integers(1 << (MULTIPLIER_BITS - 1), (1 << MULTIPLIER_BITS) - 1)


def _requant(acc, **kw):
    return int(requantize(np.array([[acc]]), **kw)[0, 0])


@given(acc=accumulators, multiplier=multipliers, shift=st.integers(0, 40),
       bias=st.integers(-(1 << 20), 1 << 20), acc_shift=st.integers(0, 12))
def test_requantize_is_the_rational_formula(acc, multiplier, shift, bias, acc_shift):
    # §4.3: clip(floor(((acc * 2^k) + B) * M / 2^r + 1/2), lo, hi)
    exact = Fraction((acc * 2 ** acc_shift + bias) * multiplier, 2 ** shift) + Fraction(1, 2)
    want = min(max(math.floor(exact), -(1 << 20)), 1 << 20)
    got = _requant(acc, multiplier=multiplier, shift=shift, bias=bias, acc_shift=acc_shift,
                   lo=-(1 << 20), hi=1 << 20)
    assert got == want


@given(acc=accumulators, multiplier=multipliers, shift=st.integers(0, 40),
       bias=st.integers(-(1 << 20), 1 << 20), acc_shift=st.integers(0, 12))
def test_acc_shift_is_a_shift_of_the_accumulator(acc, multiplier, shift, bias, acc_shift):
    # §5.2: a b-bit accumulator enters the same requantizer, shifted left by s_a + s_w.
    kw = dict(multiplier=multiplier, shift=shift, bias=bias, lo=0, hi=255)
    assert _requant(acc, acc_shift=acc_shift, **kw) == _requant(acc << acc_shift, **kw)


@given(acc=accumulators, multiplier=multipliers, data=st.data())
def test_shift_only_switch_lowering_r_equals_shifting_acc(acc, multiplier, data):
    # §5.2: with no bias, shifting the accumulator left by k equals lowering r by k.
    k = data.draw(st.integers(0, 12))
    shift = data.draw(st.integers(k, 40))
    kw = dict(multiplier=multiplier, lo=-(1 << 40), hi=1 << 40)
    assert (_requant(acc, shift=shift, acc_shift=k, **kw)
            == _requant(acc, shift=shift - k, acc_shift=0, **kw))


@given(ratio=st.floats(1e-9, 1e3), k=st.integers(0, 16))
def test_scaling_the_ratio_by_a_power_of_two_only_changes_the_shift(ratio, k):
    # §5.1: M is the rounded mantissa, so Delta_b = Delta_n 2^s never changes M.
    multiplier, shift = quantize_multiplier(ratio)
    assert quantize_multiplier(ratio * 2.0 ** k) == (multiplier, shift - k)
    assert 1 << (MULTIPLIER_BITS - 1) <= multiplier < 1 << MULTIPLIER_BITS
    assert abs(multiplier * 2.0 ** -shift - ratio) <= ratio * 2.0 ** -MULTIPLIER_BITS


def test_quantize_multiplier_worked_example():
    # §4.1: 0.0123 = 0.7872 * 2^-6 -> M = round(0.7872 * 2^15) = 25795, r = 21.
    assert quantize_multiplier(0.0123) == (25795, 21)
    # A mantissa that rounds up to 1.0 renormalises.
    assert quantize_multiplier(1 - 2 ** -20) == (1 << 14, 14)


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 2 ** 32 - 1), bits=st.integers(2, 8))
def test_nested_layer_equals_b_bit_layer_with_lowered_shift(seed, bits):
    # §5: the layer at b bits, with master constants and acc_shift = 2s, is the layer whose
    # constants were derived for the b-bit scales Delta_n 2^s: same M, r - 2s (bias 0).
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (2, 3, 5, 5))
    w = rng.integers(-127, 128, (4, 3, 3, 3))
    multiplier = rng.integers(1 << 14, 1 << 15, 4)
    shift = rng.integers(20, 26, 4)
    s = 8 - bits
    got = nested_conv2d(x, w, bias=np.zeros(4, np.int64), multiplier=multiplier, shift=shift,
                        bits=bits, master_bits=8, lo=0, hi=255, padding=1)
    acc = conv2d(nest(x, master_bits=8, bits=bits, signed=False),
                 nest(w, master_bits=8, bits=bits, signed=True), padding=1)
    want = requantize(acc, multiplier=multiplier, shift=shift - 2 * s, lo=0, hi=255)
    assert np.array_equal(got, want)


def test_round_shift_rounds_half_up():
    x = np.array([-6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6])
    assert round_shift(x, 2).tolist() == [-1, -1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1, 2]
    assert round_shift(x, 0).tolist() == x.tolist()


def test_requantize_per_channel_constants_broadcast_along_axis_one():
    acc = np.array([[100, 100], [-100, 300]])
    out = requantize(acc, multiplier=[1 << 14, 3 << 13], shift=[15, 16], bias=[0, 4],
                     lo=-128, hi=127)
    # channel 0: acc / 2; channel 1: (acc + 4) * 3/8
    assert out.tolist() == [[50, 39], [-50, 114]]


@pytest.mark.parametrize("a_bits,w_bits,terms,want,minimum",
                         [(8, 8, 4608, 29, 29), (8, 8, 1, 16, 16), (4, 4, 576, 18, 17),
                          (2, 2, 9, 8, 6), (8, 8, 576, 26, 26)])
def test_accumulator_width_formula_is_sufficient(a_bits, w_bits, terms, want, minimum):
    # §7: b_a + b_w + ceil(log2 K) holds the extreme sum; `minimum` is the exact need (table).
    assert accumulator_bits(a_bits, w_bits, terms) == want
    extreme = terms * ((1 << a_bits) - 1) * ((1 << (w_bits - 1)) - 1)
    assert extreme.bit_length() + 1 == minimum <= want


def test_shifted_accumulator_fits_the_master_width():
    # §7: |acc_b << 2s| stays below the master bound for every b.
    terms = 27
    master = accumulator_bits(8, 8, terms)
    for bits in range(2, 9):
        extreme = terms * ((1 << bits) - 1) * ((1 << (bits - 1)) - 1) << (2 * (8 - bits))
        assert extreme < 1 << (master - 1)
