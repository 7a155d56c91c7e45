"""The residual adder: two codes joined with k-constants (docs/arithmetic.md §6.1)."""

from amaranth import hdl
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import MIN_BITS, check_master_bits
from .arith import (bound_width, check_int_at_least, clamp_stages, dsp_products,
                    halving_shift)
from .layouts import SHIFT_BITS, residual_operands_layout
from .pipeline import stream_pipeline
from .requantizer import RANGE_PORT_BITS, check_output_range

__all__ = ["ResidualAdder"]


class ResidualAdder(wiring.Component):
    """out = clip(round_shift(k1 (q1 << s1) + k2 (q2 << s2) + k3, shift), lo, hi).

    Bit-exact to `dqt_hw.golden.add` (in_shift1 = s1, in_shift2 = s2). k1 / 2^shift and
    k2 / 2^shift approximate Delta1 / Delta3 and Delta2 / Delta3; operands given as b-bit nested
    codes carry s = n - b, which restores the master constants.

    Parameters: `master_bits` n; `signed` operand codes (default unsigned activations);
    `constant_bits` width of the signed k1, k2 ports (default 16); `offset_bits` width of the
    signed k3 port (default 32); `lo`, `hi` the output range (default [0, 2^n - 1]);
    `range_ports` (default False) replaces the fixed range by run-time `lo`, `hi` input ports
    (signed 32 bits) and a signed 32-bit output.

    Ports (k1, k2, k3, shift, in_shift1, in_shift2 are the layer's constants, sampled with each
    accepted operand pair):
      k1, k2:     In(signed(constant_bits))
      k3:         In(signed(offset_bits))
      shift:      In(unsigned(6))
      in_shift1, in_shift2: In(range(0, n - 1))
      input:  In(stream.Signature(layouts.residual_operands_layout(n, signed)))  {q1, q2}
      output: Out(stream.Signature(range(lo, hi + 1)))

    The sum is computed at full width (no overflow for any port values). The products
    k * (q << s) are `arith.dsp_products` of DSP-sized pieces (one each for constant_bits <= 16
    and n <= 9), registered, so a synthesizer maps each to one DSP block with its output
    register. Pipeline (`latency` 5): DSP products | sum with k3 | halving shift by `shift` |
    rounding and comparisons with lo, hi | clamp select; throughput one pair per cycle.
    """

    latency = 5

    def __init__(self, *, master_bits=8, signed=False, constant_bits=16, offset_bits=32,
                 lo=None, hi=None, range_ports=False):
        self.master_bits = n = check_master_bits(master_bits)
        if not isinstance(signed, bool):
            raise TypeError(f"`signed` must be a bool, not {signed!r}")
        check_int_at_least("constant_bits", constant_bits, 2)
        check_int_at_least("offset_bits", offset_bits, 2)
        self.signed, self.constant_bits, self.offset_bits = signed, constant_bits, offset_bits
        if not isinstance(range_ports, bool):
            raise TypeError(f"`range_ports` must be a bool, not {range_ports!r}")
        self.range_ports = range_ports
        if range_ports:
            if lo is not None or hi is not None:
                raise ValueError("`lo` and `hi` must be None when `range_ports` is set")
            output_shape = hdl.signed(RANGE_PORT_BITS)
        else:
            self.lo, self.hi = check_output_range(lo, hi, n)
            output_shape = range(self.lo, self.hi + 1)
        in_shift = range(n - MIN_BITS + 1)
        ports = {
            "k1": In(hdl.signed(constant_bits)),
            "k2": In(hdl.signed(constant_bits)),
            "k3": In(hdl.signed(offset_bits)),
            "shift": In(unsigned(SHIFT_BITS)),
            "in_shift1": In(in_shift),
            "in_shift2": In(in_shift),
            "input": In(stream.Signature(residual_operands_layout(n, signed))),
            "output": Out(stream.Signature(output_shape)),
        }
        if range_ports:
            ports.update(lo=In(hdl.signed(RANGE_PORT_BITS)), hi=In(hdl.signed(RANGE_PORT_BITS)))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        n = self.master_bits
        # q << s has at most 2n - 2 bits (s <= n - 2); k * (q << s) then fits
        # constant_bits + 2n - 1 bits (one more for an unsigned operand times a signed k), and
        # the sum of three terms two more.
        shifted_shape = signed(2 * n - 2) if self.signed else unsigned(2 * n - 2)
        term_bits = self.constant_bits + 2 * n - 1
        total_bits = max(term_bits, self.offset_bits) + 2
        shift = unsigned(SHIFT_BITS)
        terms = []

        def multiply(m, pair):
            shifted1, shifted2 = Signal(shifted_shape), Signal(shifted_shape)
            m.d.comb += [shifted1.eq(pair.q1 << self.in_shift1),
                         shifted2.eq(pair.q2 << self.in_shift2)]
            products = (dsp_products(self.k1, shifted1) + dsp_products(self.k2, shifted2))
            fields = {f"p{index}": product.shape() for index, (product, _) in enumerate(products)}
            out = Signal(data.StructLayout(dict(fields, k3=signed(self.offset_bits),
                                                shift=shift)))
            for index, (product, place) in enumerate(products):
                m.d.comb += out[f"p{index}"].eq(product)
                terms.append(place)
            m.d.comb += [out.k3.eq(self.k3), out.shift.eq(self.shift)]
            return out

        def add(m, item):
            out = Signal(data.StructLayout({"sum": signed(total_bits), "shift": shift}))
            m.d.comb += [out.sum.eq(sum((item[f"p{index}"] << place
                                         for index, place in enumerate(terms)), item.k3)),
                         out.shift.eq(item.shift)]
            return out

        def halve(m, item):
            halved = Signal(signed(total_bits + 1))
            m.d.comb += halved.eq(halving_shift(item.sum, item.shift))
            return halved

        bound_bits = RANGE_PORT_BITS if self.range_ports else bound_width(self.lo, self.hi)
        stream_pipeline(m, sink=self.input, source=self.output,
                        stages=[multiply, add, halve]
                        + clamp_stages(self.lo, self.hi, bound_bits,
                                       signed_result=self.range_ports))
        return m
