"""Bad input to the golden model: precise errors naming the parameter and the value."""

import numpy as np
import pytest

from dqt_hw.golden import (accumulator_bits, add, conv2d, linear, nest, quantize_multiplier,
                           requantize, round_shift, sum_pool2d)

codes = np.arange(4)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(master_bits=8, bits=9), ValueError, "`bits` must be at most `master_bits` (8), not 9"),
    (dict(master_bits=8, bits=1), ValueError, "`bits` must be at least 2, not 1"),
    (dict(master_bits=1, bits=1), ValueError, "`master_bits` must be between 2 and 16, not 1"),
    (dict(master_bits=17, bits=4), ValueError, "`master_bits` must be between 2 and 16, not 17"),
    (dict(master_bits=8.0, bits=4), TypeError, "`master_bits` must be an integer, not 8.0"),
    (dict(master_bits=8, bits="4"), TypeError, "`bits` must be an integer, not '4'"),
    (dict(master_bits=8, bits=True), TypeError, "`bits` must be an integer, not True"),
])
def test_nest_rejects_bad_widths(kwargs, error, message):
    with pytest.raises(error) as info:
        nest(codes, signed=False, **kwargs)
    assert str(info.value) == message


def test_nest_rejects_float_arrays():
    with pytest.raises(TypeError) as info:
        nest(np.array([1.0, 2.0]), master_bits=8, bits=4, signed=False)
    assert str(info.value) == "`q` must hold integer codes, not an array of dtype float64"


@pytest.mark.parametrize("values,signed,message", [
    ([0, 256], False, "`q` holds code 256, outside the 8-bit unsigned range [0, 255]"),
    ([-1, 3], False, "`q` holds code -1, outside the 8-bit unsigned range [0, 255]"),
    ([-128], True, "`q` holds code -128, outside the 8-bit signed range [-127, 127]"),
    ([128], True, "`q` holds code 128, outside the 8-bit signed range [-127, 127]"),
])
def test_nest_rejects_codes_outside_the_master_range(values, signed, message):
    with pytest.raises(ValueError) as info:
        nest(np.array(values), master_bits=8, bits=4, signed=signed)
    assert str(info.value) == message


@pytest.mark.parametrize("call,error,message", [
    (lambda: quantize_multiplier(0.0), ValueError, "`ratio` must be a positive finite number, not 0.0"),
    (lambda: quantize_multiplier(float("nan")), ValueError, "`ratio` must be a positive finite number, not nan"),
    (lambda: quantize_multiplier(0.5, multiplier_bits=40), ValueError,
     "`multiplier_bits` must be an integer between 2 and 31, not 40"),
    (lambda: accumulator_bits(8, 8, 0), ValueError, "`terms` must be a positive integer, not 0"),
    (lambda: round_shift(np.array([1]), -1), ValueError, "`shift` must be non-negative, not -1"),
    (lambda: requantize(np.array([1]), multiplier=1, shift=0, lo=0, hi=1), ValueError,
     "`acc` must have a batch and a channel axis, not shape (1,)"),
    (lambda: requantize(np.array([[1]]), multiplier=1, shift=0, lo=5, hi=1), ValueError,
     "output range [`lo`, `hi`] must be integers with lo <= hi, not [5, 1]"),
    (lambda: requantize(np.array([[1]]), multiplier=-3, shift=0, lo=0, hi=1), ValueError,
     "`multiplier` must be non-negative, not -3"),
    (lambda: requantize(np.array([[1]]), multiplier=1, shift=0, acc_shift=-2, lo=0, hi=1),
     ValueError, "`acc_shift` must be non-negative, not -2"),
    (lambda: requantize(np.array([[1.5]]), multiplier=1, shift=0, lo=0, hi=1), TypeError,
     "`acc` must hold integer codes, not an array of dtype float64"),
    (lambda: conv2d(np.zeros((1, 2, 4, 4), np.int64), np.zeros((3, 1, 3, 3), np.int64)),
     ValueError, "input has 2 channels but the weight expects 1"),
    (lambda: conv2d(np.zeros((1, 1, 2, 2), np.int64), np.zeros((3, 1, 3, 3), np.int64)),
     ValueError, "kernel 3x3 does not fit the padded input 2x2"),
    (lambda: conv2d(np.zeros((1, 1, 4, 4), np.int64), np.zeros((3, 1, 3, 3), np.int64), stride=0),
     ValueError, "`stride` must be an integer >= 1, not 0"),
    (lambda: linear(np.zeros((2, 3), np.int64), np.zeros((4, 3, 1), np.int64)), ValueError,
     "linear needs x of shape (N, C) and w of shape (O, C), not (2, 3) and (4, 3, 1)"),
    (lambda: add(np.zeros(2, np.int64), np.zeros(3, np.int64), k1=1, k2=1, shift=0, lo=0, hi=1),
     ValueError, "add needs operands of one shape, not (2,) and (3,)"),
    (lambda: add(np.zeros(2, np.int64), np.zeros(2, np.int64), k1=1.5, k2=1, shift=0, lo=0, hi=1),
     TypeError, "`k1` must be an integer, not 1.5"),
    (lambda: sum_pool2d(np.zeros((1, 1, 2, 2), np.int64), kernel=3), ValueError,
     "pooling kernel 3 does not fit an input of shape (1, 1, 2, 2)"),
])
def test_operators_reject_bad_arguments(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert str(info.value) == message
