"""The requantizer: a b-bit accumulator to an n-bit output code with master constants
(docs/arithmetic.md §4.3)."""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import (MULTIPLIER_BITS, accumulator_bits, check_master_bits, code_range,
                      requantizer_bits)
from .arith import check_positive_int, clamp, round_shift
from .layouts import SHIFT_BITS, bits_shape, requantizer_input_layout
from .pipeline import stream_pipeline

__all__ = ["RANGE_PORT_BITS", "Requantizer", "check_output_range"]

#: Width of run-time output-range ports and of the output they bound (32-bit logits).
RANGE_PORT_BITS = 32


def check_output_range(lo, hi, master_bits):
    """Default [lo, hi] to the unsigned n-bit code range; both must be n-bit codes."""
    if lo is None and hi is None:
        lo, hi = code_range(master_bits, signed=False)
    limit = 1 << master_bits
    for name, value in (("lo", lo), ("hi", hi)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"`{name}` must be an integer, not {value!r}")
        if not -limit // 2 <= value < limit:
            raise ValueError(f"`{name}` must be an {master_bits}-bit code in "
                             f"[{-limit // 2}, {limit - 1}], not {value}")
    if lo > hi:
        raise ValueError(f"output range [`lo`, `hi`] must have lo <= hi, not [{lo}, {hi}]")
    return lo, hi


class Requantizer(wiring.Component):
    """out = clip(round_shift(((acc << acc_shift) + bias) * M, r), lo, hi), acc_shift = 2(n - b).

    Bit-exact to `dqt_hw.golden.requantize`. M, r and the bias are an output channel's master
    constants and travel with each accumulator (the accelerator keeps them in its data memory);
    the same constants serve every b, only `acc_shift` follows the `bits` port.

    Parameters: `master_bits` n; `max_terms` K sets the accumulator and bias width
    A = `golden.accumulator_bits(n, n, K)`; `multiplier_bits` P (M < 2^P, default 15); `lo`,
    `hi` the output range (default [0, 2^n - 1]); `range_ports` (default False) replaces the
    fixed range with run-time `lo`, `hi` input ports (signed 32 bits, sampled as the results
    leave) and a signed 32-bit output, as the accelerator needs for ReLU outputs, signed
    branches and logits alike.

    Ports:
      bits:   In(range(2, n + 1))  b the accumulators were computed at.
      input:  In(stream.Signature(layouts.requantizer_input_layout(A, P)))
              {acc: signed(A), multiplier: unsigned(P), shift: unsigned(6), bias: signed(A)};
              acc must be a b-bit accumulator of at most K terms (|acc << acc_shift| < 2^(A-1)).
      output: Out(stream.Signature(range(lo, hi + 1)))  the output code.

    The product is `golden.requantizer_bits(n, K, P)` bits wide (no overflow). Latency 2
    (`latency`: multiply | round, clamp), throughput one accumulator per cycle.
    """

    latency = 2

    def __init__(self, *, master_bits=8, max_terms, multiplier_bits=MULTIPLIER_BITS, lo=None,
                 hi=None, range_ports=False):
        self.master_bits = n = check_master_bits(master_bits)
        check_positive_int("max_terms", max_terms)
        if (not isinstance(multiplier_bits, int) or isinstance(multiplier_bits, bool)
                or not 2 <= multiplier_bits <= 31):
            raise ValueError(f"`multiplier_bits` must be an integer between 2 and 31, "
                             f"not {multiplier_bits!r}")
        if not isinstance(range_ports, bool):
            raise TypeError(f"`range_ports` must be a bool, not {range_ports!r}")
        self.range_ports = range_ports
        if range_ports:
            if lo is not None or hi is not None:
                raise ValueError("`lo` and `hi` must be None when `range_ports` is set")
            output_shape = signed(RANGE_PORT_BITS)
        else:
            self.lo, self.hi = check_output_range(lo, hi, n)
            output_shape = range(self.lo, self.hi + 1)
        self.max_terms, self.multiplier_bits = max_terms, multiplier_bits
        self.acc_width = accumulator_bits(n, n, max_terms)
        self.product_width = requantizer_bits(n, max_terms, multiplier_bits=multiplier_bits)
        ports = {
            "bits": In(bits_shape(n)),
            "input": In(stream.Signature(
                requantizer_input_layout(self.acc_width, multiplier_bits))),
            "output": Out(stream.Signature(output_shape)),
        }
        if range_ports:
            ports.update(lo=In(signed(RANGE_PORT_BITS)), hi=In(signed(RANGE_PORT_BITS)))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        n = self.master_bits
        acc_shift = Signal(range(2 * n + 1))
        m.d.comb += acc_shift.eq((n - self.bits) * 2)

        def multiply(m, item):
            shifted = Signal(signed(self.acc_width))     # fits by the input contract
            offset = Signal(signed(self.acc_width + 1))
            m.d.comb += [shifted.eq(item.acc << acc_shift), offset.eq(shifted + item.bias)]
            product = Signal(data.StructLayout({"scaled": signed(self.product_width),
                                                "shift": unsigned(SHIFT_BITS)}))
            m.d.comb += [product.scaled.eq(offset * item.multiplier),
                         product.shift.eq(item.shift)]
            return product

        def round_and_clamp(m, product):
            rounded = Signal(signed(self.product_width + 1))
            m.d.comb += rounded.eq(round_shift(product.scaled, product.shift))
            if self.range_ports:
                return clamp(rounded, self.lo, self.hi)[:RANGE_PORT_BITS].as_signed()
            return clamp(rounded, self.lo, self.hi)

        stream_pipeline(m, sink=self.input, source=self.output,
                        stages=[multiply, round_and_clamp])
        return m

