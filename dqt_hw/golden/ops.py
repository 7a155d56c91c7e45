"""Integer-only operators of the golden model (docs/arithmetic.md §3-§6).

All arrays are int64 codes or accumulators with a leading batch axis; tensors are NCHW.
Per-channel constants broadcast along axis 1.
"""

import numpy as np

from .codes import _is_int, as_codes, check_master_bits, nest

__all__ = [
    "round_shift", "requantize", "conv2d", "linear", "nested_conv2d", "nested_linear",
    "add", "multiply", "sum_pool2d", "global_sum_pool", "avg_pool2d", "global_avg_pool",
    "clip",
]


def _channel_constant(value, name, ndim):
    """An int64 scalar or per-channel vector shaped to broadcast along axis 1 of an ndim array."""
    array = as_codes(value, name)
    if array.ndim > 1:
        raise ValueError(f"`{name}` must be a scalar or a per-channel vector, "
                         f"not an array of shape {array.shape}")
    if array.ndim == 1:
        array = array.reshape((1, -1) + (1,) * (ndim - 2))
    return array


def _check_shift(shift, name="shift"):
    if np.any(shift < 0):
        raise ValueError(f"`{name}` must be non-negative, not {int(np.min(shift))}")


def _check_range(lo, hi):
    if not (_is_int(lo) and _is_int(hi)) or lo > hi:
        raise ValueError(f"output range [`lo`, `hi`] must be integers with lo <= hi, "
                         f"not [{lo!r}, {hi!r}]")


def round_shift(x, shift):
    """floor(x / 2^shift + 1/2): arithmetic right shift with round half up (§4.2).

    (x + 2^(shift-1)) >> shift for shift >= 1, x itself for shift = 0.
    """
    x = as_codes(x, "x")
    shift = as_codes(shift, "shift")
    _check_shift(shift)
    half = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
    return (x + half) >> shift


def requantize(acc, *, multiplier, shift, bias=0, acc_shift=0, lo, hi):
    """Map an accumulator to an output code (§4.3).

    out = clip(round_shift(((acc << acc_shift) + bias) * multiplier, shift), lo, hi)

    `multiplier`, `shift` and `bias` are scalars or per-channel (axis 1) vectors. `acc_shift`
    (= s_a + s_w) is the only quantity that depends on the bit-width the accumulator was
    computed at; M, r and the bias are the master constants for every b.
    """
    acc = as_codes(acc, "acc")
    if acc.ndim < 2:
        raise ValueError(f"`acc` must have a batch and a channel axis, not shape {acc.shape}")
    _check_range(lo, hi)
    multiplier = _channel_constant(multiplier, "multiplier", acc.ndim)
    shift = _channel_constant(shift, "shift", acc.ndim)
    bias = _channel_constant(bias, "bias", acc.ndim)
    acc_shift = as_codes(acc_shift, "acc_shift")
    _check_shift(acc_shift, "acc_shift")
    if np.any(multiplier < 0):
        raise ValueError(f"`multiplier` must be non-negative, not {int(np.min(multiplier))}")
    scaled = ((acc << acc_shift) + bias) * multiplier
    return np.clip(round_shift(scaled, shift), lo, hi)


def _check_same_channels(x, w, x_axis):
    if x.shape[x_axis] != w.shape[1]:
        raise ValueError(f"input has {x.shape[x_axis]} channels but the weight expects "
                         f"{w.shape[1]}")


def conv2d(x, w, *, stride=1, padding=0):
    """Integer 2-D convolution (cross-correlation), zero padding, no bias: the accumulator.

    x: (N, C, H, W) codes; w: (O, C, kh, kw) codes; returns (N, O, Ho, Wo) int64 with
    Ho = (H + 2*padding - kh) // stride + 1. Zero padding is exact because code 0 is real 0.
    """
    x = as_codes(x, "x")
    w = as_codes(w, "w")
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d needs x of shape (N, C, H, W) and w of shape (O, C, kh, kw), "
                         f"not {x.shape} and {w.shape}")
    for name, value, low in (("stride", stride, 1), ("padding", padding, 0)):
        if not _is_int(value) or value < low:
            raise ValueError(f"`{name}` must be an integer >= {low}, not {value!r}")
    _check_same_channels(x, w, 1)
    kh, kw = w.shape[2:]
    if padding:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    height, width = x.shape[2:]
    if height < kh or width < kw:
        raise ValueError(f"kernel {kh}x{kw} does not fit the padded input {height}x{width}")
    # (N, C, Ho, Wo, kh, kw) view of every window, then one integer tensordot over C, kh, kw.
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]
    acc = np.tensordot(windows, w, axes=([1, 4, 5], [1, 2, 3]))   # (N, Ho, Wo, O)
    return np.ascontiguousarray(acc.transpose(0, 3, 1, 2))


def linear(x, w):
    """Integer matrix product x @ w.T: x (N, C) codes, w (O, C) codes -> (N, O) accumulator."""
    x = as_codes(x, "x")
    w = as_codes(w, "w")
    if x.ndim != 2 or w.ndim != 2:
        raise ValueError(f"linear needs x of shape (N, C) and w of shape (O, C), "
                         f"not {x.shape} and {w.shape}")
    _check_same_channels(x, w, 1)
    return x @ w.T


def _nested_layer(dot, x, w, *, bias, multiplier, shift, bits, master_bits, lo, hi):
    master_bits = check_master_bits(master_bits)
    x_b = nest(x, master_bits=master_bits, bits=bits, signed=False)
    w_b = nest(w, master_bits=master_bits, bits=bits, signed=True)
    acc = dot(x_b, w_b)
    step = master_bits - bits
    return requantize(acc, multiplier=multiplier, shift=shift, bias=bias,
                      acc_shift=2 * step, lo=lo, hi=hi)


def nested_conv2d(x, w, *, bias, multiplier, shift, bits, master_bits, lo, hi,
                  stride=1, padding=0):
    """A convolution layer at bit-width b (§5): nest x (unsigned) and w (signed) to b bits,
    accumulate, requantize with the master constants and acc_shift = 2(n - b)."""
    return _nested_layer(lambda a, b: conv2d(a, b, stride=stride, padding=padding), x, w,
                         bias=bias, multiplier=multiplier, shift=shift, bits=bits,
                         master_bits=master_bits, lo=lo, hi=hi)


def nested_linear(x, w, *, bias, multiplier, shift, bits, master_bits, lo, hi):
    """A fully connected layer at bit-width b (§5), as `nested_conv2d`."""
    return _nested_layer(linear, x, w, bias=bias, multiplier=multiplier, shift=shift,
                         bits=bits, master_bits=master_bits, lo=lo, hi=hi)


def add(q1, q2, *, k1, k2, k3=0, shift, lo, hi, in_shift1=0, in_shift2=0):
    """Residual join with k-constants (§6.1).

    out = clip(round_shift(k1 * (q1 << in_shift1) + k2 * (q2 << in_shift2) + k3, shift), lo, hi)

    k1 / 2^shift ~ Delta1 / Delta3 and k2 / 2^shift ~ Delta2 / Delta3. Operands given as b-bit
    nested codes carry in_shift = n - b, which restores the master constants exactly.
    """
    q1 = as_codes(q1, "q1")
    q2 = as_codes(q2, "q2")
    if q1.shape != q2.shape:
        raise ValueError(f"add needs operands of one shape, not {q1.shape} and {q2.shape}")
    _check_range(lo, hi)
    for name, value in (("k1", k1), ("k2", k2), ("k3", k3), ("shift", shift),
                        ("in_shift1", in_shift1), ("in_shift2", in_shift2)):
        if not _is_int(value):
            raise TypeError(f"`{name}` must be an integer, not {value!r}")
    total = k1 * (q1 << in_shift1) + k2 * (q2 << in_shift2) + k3
    return np.clip(round_shift(total, shift), lo, hi)


def multiply(q1, q2, *, k1, shift, lo, hi):
    """Element-wise product with a k-constant (§6.2, zero points 0 so k2 = k3 = k4 = 0).

    out = clip(round_shift(k1 * q1 * q2, shift), lo, hi), k1 / 2^shift ~ Delta1 Delta2 / Delta3.
    """
    q1 = as_codes(q1, "q1")
    q2 = as_codes(q2, "q2")
    if q1.shape != q2.shape:
        raise ValueError(f"multiply needs operands of one shape, not {q1.shape} and {q2.shape}")
    _check_range(lo, hi)
    return np.clip(round_shift(k1 * q1 * q2, shift), lo, hi)


def sum_pool2d(x, *, kernel, stride=None):
    """Window sums of an NCHW code tensor (no padding): the accumulator of average pooling."""
    x = as_codes(x, "x")
    stride = kernel if stride is None else stride
    for name, value in (("kernel", kernel), ("stride", stride)):
        if not _is_int(value) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, not {value!r}")
    if x.ndim != 4 or x.shape[2] < kernel or x.shape[3] < kernel:
        raise ValueError(f"pooling kernel {kernel} does not fit an input of shape {x.shape}")
    windows = np.lib.stride_tricks.sliding_window_view(x, (kernel, kernel), axis=(2, 3))
    return windows[:, :, ::stride, ::stride].sum(axis=(4, 5))


def global_sum_pool(x):
    """Sum over H and W: (N, C, H, W) -> (N, C)."""
    x = as_codes(x, "x")
    if x.ndim != 4:
        raise ValueError(f"global pooling needs an (N, C, H, W) input, not shape {x.shape}")
    return x.sum(axis=(2, 3))


def avg_pool2d(x, *, kernel, stride=None, multiplier, shift, lo, hi):
    """Average pooling (§6.3): window sum, then requantize by M / 2^r ~ 1 / kernel^2."""
    return requantize(sum_pool2d(x, kernel=kernel, stride=stride),
                      multiplier=multiplier, shift=shift, lo=lo, hi=hi)


def global_avg_pool(x, *, multiplier, shift, lo, hi):
    """Global average pooling (§6.3): (N, C, H, W) -> (N, C), M / 2^r ~ 1 / (H W)."""
    return requantize(global_sum_pool(x), multiplier=multiplier, shift=shift, lo=lo, hi=hi)


def clip(q, *, lo, hi):
    """Clip codes to [lo, hi] (§6.4): ReLU is lo = 0 on signed codes, ReLU6-style caps a hi."""
    _check_range(lo, hi)
    return np.clip(as_codes(q), lo, hi)
