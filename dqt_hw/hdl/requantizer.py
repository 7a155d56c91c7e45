"""The requantizer: a b-bit accumulator to an n-bit output code with master constants
(docs/arithmetic.md §4.3)."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import (MULTIPLIER_BITS, accumulator_bits, check_master_bits, code_range,
                      requantizer_bits)
from ..accel.program import RANGE_BOUND_BITS
from .arith import (bound_width, check_bits_list, check_positive_int, dsp_products,
                    clamp_stages, halving_shift, rounding_compare, select_clamped)
from .layouts import SHIFT_BITS, bits_shape, requantizer_input_layout
from .pipeline import stream_pipeline

__all__ = ["RANGE_PORT_BITS", "FULL_RANGE", "Requantizer", "check_output_range"]

#: Width of the run-time range's output (32-bit logits).
RANGE_PORT_BITS = 32
#: The 32-bit output's limits: the run-time range's `full_range` clip.
FULL_RANGE = (-(1 << (RANGE_PORT_BITS - 1)), (1 << (RANGE_PORT_BITS - 1)) - 1)


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
    fixed range with run-time ports, as the accelerator needs for ReLU outputs, signed
    branches and logits alike: `lo`, `hi` (signed `RANGE_BOUND_BITS`, enough for any code
    range) and `full_range` (clip at the int32 limits `FULL_RANGE` instead), read by the last
    two stages, so hold them while results are in flight; the output is then signed 32 bits.
    `supported_bits`: the b values the `bits` port takes (default every b in [2, n]; others
    give an undefined result).

    Ports:
      bits:   In(range(2, n + 1))  b the accumulators were computed at (sampled with each
                                   accepted input).
      input:  In(stream.Signature(layouts.requantizer_input_layout(A, P)))
              {acc: signed(A), multiplier: unsigned(P), shift: unsigned(6), bias: signed(A)};
              acc must be a b-bit accumulator of at most K terms (|acc << acc_shift| < 2^(A-1)).
      output: Out(stream.Signature(range(lo, hi + 1)))  the output code.

    The product is `golden.requantizer_bits(n, K, P)` bits wide (no overflow). It is computed
    as `dsp_multipliers` products of DSP-sized pieces (`arith.dsp_products`: two for A <= 30,
    P <= 15), each registered, so a synthesizer maps each to one DSP block with its output
    register (iCE40 SB_MAC16, ECP5 MULT18X18D) and nothing else to a DSP.
    Pipeline (`latency` 6): offset (acc << acc_shift) + bias | DSP products | product sum |
    halving shift by r | rounding and comparisons with lo, hi | clamp select. Throughput one
    accumulator per cycle.
    """

    latency = 6

    def __init__(self, *, master_bits=8, max_terms, multiplier_bits=MULTIPLIER_BITS, lo=None,
                 hi=None, range_ports=False, supported_bits=None):
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
        self.supported_bits = check_bits_list(supported_bits, n)
        self.acc_width = accumulator_bits(n, n, max_terms)
        self.product_width = requantizer_bits(n, max_terms, multiplier_bits=multiplier_bits)
        self.dsp_multipliers = len(dsp_products(Signal(signed(self.acc_width + 1)),
                                                Signal(unsigned(multiplier_bits))))
        ports = {
            "bits": In(bits_shape(n)),
            "input": In(stream.Signature(
                requantizer_input_layout(self.acc_width, multiplier_bits))),
            "output": Out(stream.Signature(output_shape)),
        }
        if range_ports:
            ports.update(lo=In(signed(RANGE_BOUND_BITS)), hi=In(signed(RANGE_BOUND_BITS)),
                         full_range=In(1))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        n, width = self.master_bits, self.product_width
        shift = unsigned(SHIFT_BITS)

        def offset(m, item):
            shifted = Signal(signed(self.acc_width))     # fits by the input contract
            out = Signal(data.StructLayout({"offset": signed(self.acc_width + 1),
                                            "multiplier": unsigned(self.multiplier_bits),
                                            "shift": shift}))
            # Only the supported bit-widths' shifts are built: a few constant shifts and a
            # multiplexer, not a barrel shifter, when few are supported.
            with m.Switch(self.bits):
                for bits in self.supported_bits:
                    with m.Case(bits):
                        m.d.comb += shifted.eq(item.acc << (2 * (n - bits)))
            m.d.comb += [
                         out.offset.eq(shifted + item.bias),
                         out.multiplier.eq(item.multiplier), out.shift.eq(item.shift)]
            return out

        offsets = []

        def multiply(m, item):
            products = dsp_products(item.offset, item.multiplier)
            fields = {f"p{index}": product.shape() for index, (product, _) in enumerate(products)}
            out = Signal(data.StructLayout(dict(fields, shift=shift)))
            for index, (product, place) in enumerate(products):
                m.d.comb += out[f"p{index}"].eq(product)
                offsets.append(place)
            m.d.comb += out.shift.eq(item.shift)
            return out

        def add(m, item):
            out = Signal(data.StructLayout({"scaled": signed(width), "shift": shift}))
            m.d.comb += [out.scaled.eq(sum(item[f"p{index}"] << place
                                           for index, place in enumerate(offsets))),
                         out.shift.eq(item.shift)]
            return out

        def halve(m, item):
            halved = Signal(signed(width + 1))
            m.d.comb += halved.eq(halving_shift(item.scaled, item.shift))
            return halved

        if self.range_ports:
            clamp = self._run_time_clamp_stages()
        else:
            clamp = clamp_stages(self.lo, self.hi, bound_width(self.lo, self.hi),
                                 signed_result=False)
        stream_pipeline(m, sink=self.input, source=self.output,
                        stages=[offset, multiply, add, halve] + clamp)
        return m

    def _run_time_clamp_stages(self):
        """`clamp_stages` for the run-time range: the code bounds compare as `rounding_compare`
        does; the int32 limits need no comparator: for halved h, floor((h + 1) / 2) leaves
        [-2^31, 2^31 - 1] exactly when h < -2^32 (the bits from 32 up are not all ones) or
        h > 2^32 - 2 (non-negative and some bit from 32 up set, or the low 32 bits all ones)."""
        low, high = FULL_RANGE

        def compare(m, halved):
            below, above, _ = rounding_compare(m, halved, self.lo, self.hi, RANGE_BOUND_BITS)
            negative, top = halved[-1], halved[RANGE_PORT_BITS:]
            rounded = Signal(signed(RANGE_PORT_BITS))
            m.d.comb += rounded.eq((halved[:RANGE_PORT_BITS + 1].as_signed() + 1) >> 1)
            return Cat(Mux(self.full_range, negative & ~top.all(), below),
                       Mux(self.full_range,
                           ~negative & (top.any() | halved[:RANGE_PORT_BITS].all()), above),
                       rounded)

        def select(m, item):
            return select_clamped(item[0], item[1], item[2:].as_signed(),
                                  Mux(self.full_range, low, self.lo),
                                  Mux(self.full_range, high, self.hi)).as_signed()
        return [compare, select]
