"""docs/arithmetic.md §3, §6: convolution, linear, residual join, product, pooling, clip."""

import numpy as np
from hypothesis import given, settings, strategies as st

from dqt_hw.golden import (add, avg_pool2d, clip, conv2d, global_avg_pool, linear, multiply,
                           nested_linear, nest, requantize, round_shift)


def _conv_loop(x, w, stride, padding):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * padding, wd + 2 * padding), dtype=np.int64)
    xp[:, :, padding:padding + h, padding:padding + wd] = x
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((n, o, ho, wo), dtype=np.int64)
    for b in range(n):
        for oc in range(o):
            for i in range(ho):
                for j in range(wo):
                    total = 0
                    for ic in range(c):
                        for di in range(kh):
                            for dj in range(kw):
                                total += (int(xp[b, ic, i * stride + di, j * stride + dj])
                                          * int(w[oc, ic, di, dj]))
                    out[b, oc, i, j] = total
    return out


@settings(deadline=None, max_examples=60)
@given(data=st.data())
def test_conv2d_matches_a_direct_loop(data):
    # §3.1: cross-correlation with zero padding, exact integer sums.
    seed = data.draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    n, c, o = (data.draw(st.integers(1, 3)) for _ in range(3))
    k = data.draw(st.integers(1, 3))
    stride = data.draw(st.integers(1, 3))
    padding = data.draw(st.integers(0, 2))
    h = data.draw(st.integers(max(1, k - 2 * padding), 7))
    wd = data.draw(st.integers(max(1, k - 2 * padding), 7))
    x = rng.integers(0, 256, (n, c, h, wd))
    w = rng.integers(-127, 128, (o, c, k, k))
    got = conv2d(x, w, stride=stride, padding=padding)
    assert np.array_equal(got, _conv_loop(x, w, stride, padding))


def test_linear_is_a_dot_product_per_output():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (4, 10))
    w = rng.integers(-127, 128, (3, 10))
    want = [[sum(int(a) * int(b) for a, b in zip(row, wrow)) for wrow in w] for row in x]
    assert linear(x, w).tolist() == want


def test_nested_linear_is_nest_then_dot_then_requantize():
    # §5: a layer at b bits.
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (5, 16))
    w = rng.integers(-127, 128, (6, 16))
    consts = dict(bias=rng.integers(-5000, 5000, 6), multiplier=rng.integers(1 << 14, 1 << 15, 6),
                  shift=np.full(6, 24))
    for bits in (2, 4, 8):
        acc = linear(nest(x, master_bits=8, bits=bits, signed=False),
                     nest(w, master_bits=8, bits=bits, signed=True))
        want = requantize(acc, acc_shift=2 * (8 - bits), lo=0, hi=255, **consts)
        got = nested_linear(x, w, bits=bits, master_bits=8, lo=0, hi=255, **consts)
        assert np.array_equal(got, want)


@given(q1=st.integers(0, 255), q2=st.integers(-127, 127), k1=st.integers(0, 1 << 15),
       k2=st.integers(0, 1 << 15), k3=st.integers(-(1 << 20), 1 << 20), shift=st.integers(0, 20),
       s1=st.integers(0, 6), s2=st.integers(0, 6))
def test_add_is_round_shift_of_the_weighted_sum(q1, q2, k1, k2, k3, shift, s1, s2):
    # §6.1: Q3 = clip(round_shift(k1 Q1 2^s1 + k2 Q2 2^s2 + k3, r)).
    got = add(np.array([q1]), np.array([q2]), k1=k1, k2=k2, k3=k3, shift=shift, lo=0, hi=255,
              in_shift1=s1, in_shift2=s2)
    total = k1 * (q1 << s1) + k2 * (q2 << s2) + k3
    want = min(max((total + ((1 << shift) >> 1)) >> shift, 0), 255)
    assert got.tolist() == [want]


def test_add_with_nested_operand_restores_master_constants():
    # §6.1: a b-bit operand with in_shift = n - b gives what its master code gives, up to
    # the nesting rounding; exact when the master code is a multiple of 2^s.
    q1 = np.arange(0, 256, 16)
    q2 = np.full_like(q1, 40)
    master = add(q1, q2, k1=3 << 13, k2=1 << 14, shift=14, lo=0, hi=255)
    nested = add(nest(q1, master_bits=8, bits=4, signed=False), q2, k1=3 << 13, k2=1 << 14,
                 shift=14, lo=0, hi=255, in_shift1=4)
    assert np.array_equal(master, nested)


def test_multiply_with_k_constant():
    # §6.2: zero points 0, so Q3 = round_shift(k1 Q1 Q2, r).
    got = multiply(np.array([10, 255, 3]), np.array([7, 255, -5]), k1=5, shift=4, lo=0, hi=255)
    assert got.tolist() == [22, 255, 0]


def test_average_pooling_requantizes_window_sums():
    # §6.3: window sums, then M / 2^r ~ 1 / N.
    x = np.arange(32).reshape(1, 2, 4, 4)
    out = avg_pool2d(x, kernel=2, stride=2, multiplier=1 << 14, shift=16, lo=0, hi=255)
    sums = x.reshape(1, 2, 2, 2, 2, 2).sum(axis=(3, 5))
    assert np.array_equal(out, round_shift(sums, 2))
    gap = global_avg_pool(x, multiplier=1 << 14, shift=18, lo=0, hi=255)
    assert np.array_equal(gap, round_shift(x.sum(axis=(2, 3)), 4))


def test_clip_bounds_codes():
    assert clip(np.array([-5, 0, 7, 300]), lo=0, hi=255).tolist() == [0, 0, 7, 255]


def test_worked_examples_of_sections_4_and_6():
    # §4.2, §4.3, §6.1, §6.3 of docs/arithmetic.md, number for number.
    assert round_shift(np.array([-6, -5, -2, 2, 6]), 2).tolist() == [-1, -1, 0, 1, 2]
    assert requantize(np.array([[37]]), multiplier=25795, shift=21, bias=-500, acc_shift=8,
                      lo=0, hi=255).tolist() == [[110]]
    assert add(np.array([200]), np.array([-90]), k1=3 << 13, k2=5 << 12, k3=0, shift=15,
               lo=0, hi=255).tolist() == [94]
    assert global_avg_pool(np.full((1, 1, 7, 7), 100), multiplier=21400, shift=20, lo=0,
                           hi=255).tolist() == [[100]]
