"""The nest unit: an n-bit master code in, its b-bit nested code out (docs/arithmetic.md §2)."""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..golden import MIN_BITS, check_master_bits, code_range
from .arith import check_bits_list, clamp, round_shift
from .layouts import bits_shape, code_shape

__all__ = ["BARREL_MIN_WIDTHS", "NestUnit"]

#: From this many supported widths on, one barrel shifter is smaller than a multiplexer over
#: constant-shift datapaths (Yosys synth_ice40: 30 against 31 LUT4 for b in {2, 3, 4}).
BARREL_MIN_WIDTHS = 2


class NestUnit(wiring.Component):
    """Q^b = sat_b((Q^n >> s) + bit_{s-1}(Q^n)), s = n - b, with b chosen at run time.

    A barrel shifter (by s, keeping the rounding bit), one incrementer and a saturation to the
    b-bit range: unsigned [0, 2^b - 1] or signed narrow range [-(2^(b-1) - 1), 2^(b-1) - 1].
    Bit-exact to `dqt_hw.golden.nest` for every master code in range and b in [2, n].

    Parameters: `master_bits` n in [2, 16]; `signed` selects weights (two's complement,
    arithmetic shift) or activations (unsigned); `supported_bits` the b values it must
    produce (default every b in [2, n]); the barrel shifter and range table only cover those
    (the MAC array's lanes that only its 2-bit or 4-bit modes read need just those). With
    fewer than `BARREL_MIN_WIDTHS` values it builds one constant-shift datapath per b and a
    multiplexer instead (measured smaller for a single b on iCE40).

    Ports:
      master: In(n bits, signed or unsigned)  the master code.
      bits:   In(range(2, n + 1))              b; values outside `supported_bits` pass
                                               `master` through unchanged.
      nested: Out(n bits, same signedness)     the b-bit code, sign/zero-extended to n bits.

    Latency 0 (purely combinational, `latency` == 0); throughput one code per cycle.
    """

    latency = 0

    def __init__(self, *, master_bits=8, signed, supported_bits=None):
        if not isinstance(signed, bool):
            raise TypeError(f"`signed` must be a bool, not {signed!r}")
        self.master_bits = check_master_bits(master_bits)
        self.signed = signed
        self.supported_bits = check_bits_list(supported_bits, self.master_bits)
        shape = code_shape(self.master_bits, signed)
        super().__init__({
            "master": In(shape),
            "bits": In(bits_shape(self.master_bits)),
            "nested": Out(shape),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.master_bits
        if len(self.supported_bits) >= BARREL_MIN_WIDTHS:
            self._barrel(m)
        else:
            with m.Switch(self.bits):
                for bits in self.supported_bits:
                    with m.Case(bits):
                        lo, hi = code_range(bits, signed=self.signed)
                        rounded = Signal(signed(n + 2), name=f"rounded_{bits}")
                        m.d.comb += [rounded.eq(round_shift(self.master, n - bits)),
                                     self.nested.eq(clamp(rounded, lo, hi))]
                with m.Default():
                    m.d.comb += self.nested.eq(self.master)
        return m

    def _barrel(self, m):
        n = self.master_bits
        # s = n - b and the b-bit range as one small constant table indexed by b; the default
        # (s = 0, the n-bit range) passes the master code through.
        step = Signal(range(n - MIN_BITS + 1))
        full_lo, full_hi = code_range(n, signed=self.signed)
        lo = Signal(signed(n + 1), init=full_lo)
        hi = Signal(unsigned(n), init=full_hi)
        with m.Switch(self.bits):
            for bits in self.supported_bits:
                with m.Case(bits):
                    bits_lo, bits_hi = code_range(bits, signed=self.signed)
                    m.d.comb += [step.eq(n - bits), lo.eq(bits_lo), hi.eq(bits_hi)]
        rounded = Signal(signed(n + 2))
        m.d.comb += [rounded.eq(round_shift(self.master, step)),
                     self.nested.eq(clamp(rounded, lo, hi))]
