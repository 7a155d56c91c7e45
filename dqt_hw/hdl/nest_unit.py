"""The nest unit: an n-bit master code in, its b-bit nested code out (docs/arithmetic.md §2)."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..golden import MIN_BITS, check_master_bits, code_range
from .arith import check_bits_list
from .layouts import bits_shape, code_shape

__all__ = ["BARREL_MIN_WIDTHS", "NestUnit"]

#: From this many supported widths on, one barrel shifter is smaller than a multiplexer over
#: constant-shift datapaths (Yosys synth_ice40: 30 against 31 LUT4 for b in {2, 3, 4}).
BARREL_MIN_WIDTHS = 2


class NestUnit(wiring.Component):
    """Q^b = sat_b((Q^n >> s) + bit_{s-1}(Q^n)), s = n - b, with b chosen at run time.

    A barrel shifter (by s, keeping the rounding bit), one incrementer whose increment already
    accounts for the saturation to the b-bit range (unsigned [0, 2^b - 1] or signed narrow
    range [-(2^(b-1) - 1), 2^(b-1) - 1]; see `_round`).
    Bit-exact to `dqt_hw.golden.nest` for every master code in range and b in [2, n].

    Parameters: `master_bits` n in [2, 16]; `signed` selects weights (two's complement,
    arithmetic shift) or activations (unsigned); `supported_bits` the b values it must
    produce (default every b in [2, n]); the barrel shifter and range table only cover those
    (the MAC array's lanes that only its 2-bit or 4-bit modes read need just those). With
    fewer than `BARREL_MIN_WIDTHS` values it builds one constant-shift datapath per b and a
    multiplexer instead (measured smaller for a single b on iCE40). `passthrough` (default
    True) makes b values outside `supported_bits` pass the master code through; without it
    their output is unspecified and costs no logic (for a lane that no other b reads).

    Ports:
      master: In(n bits, signed or unsigned)  the master code.
      bits:   In(range(2, n + 1))              b; values outside `supported_bits` pass
                                               `master` through unchanged (`passthrough`).
      nested: Out(n bits, same signedness)     the b-bit code, sign/zero-extended to n bits.

    Latency 0 (purely combinational, `latency` == 0); throughput one code per cycle.
    """

    latency = 0

    def __init__(self, *, master_bits=8, signed, supported_bits=None, passthrough=True):
        if not isinstance(signed, bool):
            raise TypeError(f"`signed` must be a bool, not {signed!r}")
        if not isinstance(passthrough, bool):
            raise TypeError(f"`passthrough` must be a bool, not {passthrough!r}")
        self.passthrough = passthrough
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
        if len(self.supported_bits) >= BARREL_MIN_WIDTHS:
            self._barrel(m)
        elif not self.passthrough:
            self._constant_shift(m, self.supported_bits[0])
        else:
            with m.Switch(self.bits):
                for bits in self.supported_bits:
                    with m.Case(bits):
                        self._constant_shift(m, bits)
                with m.Default():
                    m.d.comb += self.nested.eq(self.master)
        return m

    def _constant_shift(self, m, bits):
        lo, hi = code_range(bits, signed=self.signed)
        self._round(m, self.master_bits - bits, hi, -(1 << (bits - 1)))

    def _barrel(self, m):
        n = self.master_bits
        # s = n - b, the largest b-bit code and (signed) the most negative b-bit two's
        # complement value as one small constant table indexed by b. The default (s = 0, the
        # n-bit range, a floor no code reaches) passes the master code through.
        step = Signal(range(n - MIN_BITS + 1))
        hi = Signal(unsigned(n), init=code_range(n, signed=self.signed)[1])
        floor = Signal(signed(n + 1), init=-(1 << (n - 1)) - 1)
        with m.Switch(self.bits):
            for index, bits in enumerate(self.supported_bits):
                # Without passthrough the last entry also serves every unsupported b.
                last = not self.passthrough and index == len(self.supported_bits) - 1
                with (m.Default() if last else m.Case(bits)):
                    m.d.comb += [step.eq(n - bits), hi.eq(code_range(bits, signed=self.signed)[1]),
                                 floor.eq(-(1 << (bits - 1)))]
        self._round(m, step, hi, floor)

    def _round(self, m, step, hi, floor):
        """nested = sat((Q >> s) + bit_{s-1}(Q)) for s = `step`, as h + up with h = Q >> s.

        h is already a b-bit code (unsigned: [0, hi]; signed: [floor, hi], floor = -2^(b-1)),
        so h + bit_{s-1} leaves the b-bit range only at its ends: h = hi with the rounding bit
        set (the result is hi), and for signed codes h = floor without it (the result is
        floor + 1, the narrow range's lowest code). Deciding the increment `up` from two
        equality tests of h, instead of clamping the sum against the range, keeps the carry
        chain of the increment the only one in the unit.
        """
        n = self.master_bits
        halved = Signal(signed(n + 1) if self.signed else unsigned(n + 1))
        m.d.comb += halved.eq((self.master << 1) >> step)
        h, rounding = halved[1:], halved[0]
        if self.signed:
            h = h.as_signed()
            up = Mux(rounding, h != hi, h == floor)
        else:
            up = rounding & (h != hi)
        m.d.comb += self.nested.eq(h + up)
