"""The conventional precision switch, for comparison with the nest unit: integer code ->
IEEE float32 -> multiply by a float32 scale -> round -> clamp to a b-bit code."""

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import MIN_BITS, as_codes, check_master_bits, code_range
from .arith import clamp
from .layouts import bits_shape, code_shape
from .pipeline import stream_pipeline

__all__ = ["DequantRequant", "dequant_requant_reference", "float32_bits"]

_MANTISSA = 24          # float32 significand bits, the hidden one included
_BIAS = 127
#: A float32 value m * 2^(E - _INT_EXPONENT) (m the 24-bit significand, E the biased exponent)
#: is an integer scaled by 2^0 when E = 150.
_INT_EXPONENT = _BIAS + _MANTISSA - 1


def float32_bits(value):
    """The IEEE binary32 bit pattern of `value` (rounded to float32) as a Python int."""
    return int(np.float32(value).view(np.uint32))


def dequant_requant_reference(codes, *, scale, bits, signed):
    """NumPy float32 emulation of `DequantRequant`: clip(rint(float32(q) * float32(scale))).

    `scale` is a float or a float32; the product is rounded to float32 (IEEE round to nearest,
    ties to even, as NumPy's float32 multiply), `np.rint` rounds half to even (as `torch.round`
    in the usual fake-quantization), then the result is clipped to the b-bit code range.
    """
    codes = as_codes(codes, "codes")
    scale = np.float32(scale)
    if not np.isfinite(scale):
        raise ValueError(f"`scale` must be a finite float32, not {float(scale)}")
    with np.errstate(over="ignore", under="ignore"):
        product = codes.astype(np.float32) * scale
    lo, hi = code_range(bits, signed=signed)
    return np.clip(np.rint(product), lo, hi).astype(np.int64)


class DequantRequant(wiring.Component):
    """The dequantize/requantize switch in hardware, bit-exact to `dqt_hw.golden`-style
    integers produced by `dequant_requant_reference`.

    1. int -> float32: sign, leading-one detector and normalizing shift (exact for n <= 16).
    2. float32 multiply: 24 x 24-bit significand product, exponent add, normalization and
       rounding to nearest even, as an IEEE multiplier. Subnormal scales and results are
       flushed to zero and overflows go to infinity; both give the same integer as IEEE
       arithmetic (|value| < 2^-126 rounds to 0, infinity clamps). NaN and infinite scales
       are not supported.
    3. float32 -> int: round half to even at the binary point, then clamp to the b-bit range.

    Parameters: `master_bits` n, `signed` input codes (weights) or unsigned (activations).

    Ports:
      bits:   In(range(2, n + 1))  output width b (clamp range of a b-bit code).
      scale:  In(unsigned(32))     float32 bit pattern of Delta_in / Delta_out.
      input:  In(stream.Signature(n-bit code))
      output: Out(stream.Signature(n-bit code))  the b-bit code, sign/zero-extended.
    `bits` and `scale` are sampled with each accepted input code.

    Latency 3 (`latency`: convert and multiply | normalize and round | to integer and clamp),
    throughput one code per cycle. Compare `NestUnit`: latency 0, a shift and an increment.
    """

    latency = 3

    def __init__(self, *, master_bits=8, signed):
        if not isinstance(signed, bool):
            raise TypeError(f"`signed` must be a bool, not {signed!r}")
        self.master_bits = n = check_master_bits(master_bits)
        self.signed = signed
        shape = code_shape(n, signed)
        super().__init__({
            "bits": In(bits_shape(n)),
            "scale": In(unsigned(32)),
            "input": In(stream.Signature(shape)),
            "output": Out(stream.Signature(shape)),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.master_bits
        exponent_shape = signed(11)          # biased exponents up to 2 * 255, or below 0
        bits = self.bits

        def multiply(m, code):
            magnitude = Signal(n)
            leading = Signal(range(n))
            m.d.comb += magnitude.eq(Mux(code < 0, -code, code) if self.signed else code)
            for position in range(n):        # the highest set bit wins
                with m.If(magnitude[position]):
                    m.d.comb += leading.eq(position)
            normalize = Signal(range(n))
            code_significand = Signal(_MANTISSA)
            m.d.comb += [normalize.eq(n - 1 - leading),
                         code_significand.eq((magnitude << normalize) << (_MANTISSA - n))]
            scale_exponent = self.scale[23:31]
            scale_significand = Cat(self.scale[:23], 1)
            out = Signal(data.StructLayout({
                "negative": 1, "zero": 1, "bits": bits.shape(),
                "exponent": exponent_shape, "product": 2 * _MANTISSA}))
            m.d.comb += [
                out.negative.eq((code < 0) ^ self.scale[31]),
                out.zero.eq((magnitude == 0) | (scale_exponent == 0)),
                out.bits.eq(bits),
                # (leading + 127) + scale_exponent - 127
                out.exponent.eq(leading + scale_exponent),
                out.product.eq(code_significand * scale_significand),
            ]
            return out

        def normalize_and_round(m, item):
            product = item.product
            carry = product[-1]               # the significand product is in [1, 4)
            significand = Signal(_MANTISSA)
            guard, sticky = Signal(), Signal()
            with m.If(carry):
                m.d.comb += [significand.eq(product[_MANTISSA:]),
                             guard.eq(product[_MANTISSA - 1]),
                             sticky.eq(product[:_MANTISSA - 1].any())]
            with m.Else():
                m.d.comb += [significand.eq(product[_MANTISSA - 1:-1]),
                             guard.eq(product[_MANTISSA - 2]),
                             sticky.eq(product[:_MANTISSA - 2].any())]
            rounded = Signal(_MANTISSA + 1)
            m.d.comb += rounded.eq(significand + (guard & (sticky | significand[0])))
            out = Signal(data.StructLayout({
                "negative": 1, "zero": 1, "bits": bits.shape(),
                "exponent": exponent_shape, "significand": _MANTISSA}))
            overflow = rounded[-1]            # rounded up to 2^24: renormalize
            m.d.comb += [
                out.negative.eq(item.negative),
                out.zero.eq(item.zero),
                out.bits.eq(item.bits),
                out.exponent.eq(item.exponent + carry + overflow),
                out.significand.eq(Mux(overflow, rounded[1:], rounded[:_MANTISSA])),
            ]
            return out

        def to_integer(m, item):
            # value = significand * 2^(exponent - 150): shift right by t = 150 - exponent,
            # t clamped to [1, 25] (t >= 25 leaves < 0.5; exponent >= 150 saturates below).
            distance = Signal(range(_MANTISSA + 2))
            with m.If(item.exponent <= _INT_EXPONENT - (_MANTISSA + 1)):
                m.d.comb += distance.eq(_MANTISSA + 1)
            with m.Else():
                m.d.comb += distance.eq(_INT_EXPONENT - item.exponent)
            doubled = Cat(0, item.significand)           # keeps the half bit after the shift
            shifted = Signal(_MANTISSA + 1)
            m.d.comb += shifted.eq(doubled >> distance)
            integer, half = shifted[1:], shifted[0]
            sticky = (shifted << distance) != doubled
            magnitude = Signal(_MANTISSA + 1)
            m.d.comb += magnitude.eq(integer + (half & (sticky | integer[0])))
            huge = item.exponent >= _INT_EXPONENT       # |value| >= 2^23 > any b-bit code
            value = Signal(signed(_MANTISSA + 2))
            with m.If(item.zero):
                m.d.comb += value.eq(0)
            with m.Elif(huge):
                m.d.comb += value.eq(Mux(item.negative, -(1 << _MANTISSA), 1 << _MANTISSA))
            with m.Else():
                m.d.comb += value.eq(Mux(item.negative, -magnitude, magnitude))
            full_lo, full_hi = code_range(n, signed=self.signed)
            lo = Signal(signed(n + 1), init=full_lo)
            hi = Signal(unsigned(n), init=full_hi)
            with m.Switch(item.bits):
                for width in range(MIN_BITS, n + 1):
                    with m.Case(width):
                        width_lo, width_hi = code_range(width, signed=self.signed)
                        m.d.comb += [lo.eq(width_lo), hi.eq(width_hi)]
            return clamp(value, lo, hi)

        stream_pipeline(m, sink=self.input, source=self.output,
                        stages=[multiply, normalize_and_round, to_integer])
        return m
