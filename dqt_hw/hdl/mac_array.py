"""The MAC array: rows x cols processing elements fed by nest units, streaming operands in and
accumulators out (valid/ready)."""

import numpy as np
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import accumulator_bits, check_master_bits
from .arith import check_positive_int
from .layouts import bits_shape, operands_layout, results_layout
from .nest_unit import NestUnit
from .pe import PEGeometry, ProcessingElement

__all__ = ["MacArray"]


class MacArray(wiring.Component):
    """An output-stationary array: PE (r, c) accumulates dot(activations of row r, weights of
    column c) over the beats of one dot product.

    Every beat of `operands` carries, for each array row, `lanes` unsigned activation master
    codes and, for each column, `lanes` signed narrow-range weight master codes. Nest units at
    the array edge (one per row lane and per column lane, shared by the PEs of that row or
    column, each built only for the b values whose mode reads its lane) derive the b-bit codes
    for the layer's `bits`; each PE then adds
    `products_per_beat(b)` products per beat (lane p of a row times lane p of a column, lanes
    beyond that ignored; pad a dot product with zero codes to a whole number of beats: code 0
    is exact at every b). The beat with `last` ends the dot products: one cycle later the
    `results` stream offers all rows x cols accumulators, which equal
    `golden.linear(nest(x, b, unsigned), nest(w, b, signed))` exactly.

    Parameters: `rows`, `cols` (positive), `master_bits` n, `max_terms` K (the longest dot
    product, in products), `acc_width` (default and minimum `golden.accumulator_bits(n, n, K)`,
    which holds any K-term sum at every b <= n), `scalable` (Bit Fusion PEs, else fixed n x n
    MACs), `supported_bits` (the b values the array must run; default every b in [2, n]),
    `nest_weights` (default True; False drops the column nest units: the weight lanes then
    carry codes already nested to b bits, as the accelerator's weight buffer holds them).

    Ports:
      bits:     In(range(2, n + 1))  the layer's b; change it only between dot products.
      operands: In(stream.Signature(layouts.operands_layout(rows, cols, lanes, n)))
      results:  Out(stream.Signature(layouts.results_layout(rows, cols, acc_width)))

    Latency 1 (`latency`): cycles from accepting the `last` beat to `results.valid`.
    Throughput 1 beat per cycle (`beats_per_cycle`), including back-to-back dot products; a
    result held by back-pressure stalls `operands` (ready low) until it is taken. A K-term dot
    product takes ceil(K / products_per_beat(b)) beats.
    """

    latency = 1
    beats_per_cycle = 1

    def __init__(self, *, rows, cols, master_bits=8, max_terms, acc_width=None, scalable=True,
                 supported_bits=None, nest_weights=True):
        check_positive_int("rows", rows)
        if not isinstance(nest_weights, bool):
            raise TypeError(f"`nest_weights` must be a bool, not {nest_weights!r}")
        self.nest_weights = nest_weights
        check_positive_int("cols", cols)
        self.master_bits = n = check_master_bits(master_bits)
        check_positive_int("max_terms", max_terms)
        needed = accumulator_bits(n, n, max_terms)
        if acc_width is None:
            acc_width = needed
        elif not isinstance(acc_width, int) or isinstance(acc_width, bool):
            raise TypeError(f"`acc_width` must be an integer, not {acc_width!r}")
        elif acc_width < needed:
            raise ValueError(f"`acc_width` must be at least {needed} (accumulator_bits({n}, {n}, "
                             f"{max_terms})) to hold {max_terms} products, not {acc_width}")
        self.rows, self.cols, self.max_terms, self.acc_width = rows, cols, max_terms, acc_width
        self.geometry = PEGeometry.build(n, scalable, supported_bits)
        self.scalable = scalable
        self.supported_bits = self.geometry.supported_bits
        self.lanes = self.geometry.lanes
        super().__init__({
            "bits": In(bits_shape(n)),
            "operands": In(stream.Signature(operands_layout(rows, cols, self.lanes, n))),
            "results": Out(stream.Signature(results_layout(rows, cols, acc_width))),
        })

    def products_per_beat(self, bits):
        """Products each PE accumulates per beat at bit-width `bits` (1, 4, 16 for n = 8)."""
        return self.geometry.products_per_cycle(bits)

    def macs_per_cycle(self, bits):
        """Multiply-accumulates of the whole array per cycle at full throughput."""
        return self.rows * self.cols * self.products_per_beat(bits)

    def beats(self, terms, bits):
        """Beats (= cycles at full throughput) of a `terms`-long dot product at `bits`."""
        per_beat = self.products_per_beat(bits)
        return max(1, -(-terms // per_beat))

    def operand_beats(self, bits, activations, weights):
        """The `operands` payloads (dicts for `layouts.operands_layout`) of one dot product.

        `activations` is a (rows, K) array of unsigned master codes, `weights` a (cols, K)
        array of signed master codes; the K terms go `products_per_beat(bits)` to a beat, the
        last beat zero padded and marked `last`. Pack a payload for the Verilog port with
        `self.operands.payload.shape().const(beat).as_value().value`.
        """
        activations, weights = np.asarray(activations), np.asarray(weights)
        if activations.ndim != 2 or activations.shape[0] != self.rows:
            raise ValueError(f"`activations` must have shape ({self.rows}, K), "
                             f"not {activations.shape}")
        if weights.shape != (self.cols, activations.shape[1]):
            raise ValueError(f"`weights` must have shape ({self.cols}, "
                             f"{activations.shape[1]}), not {weights.shape}")
        per_beat, terms = self.products_per_beat(bits), activations.shape[1]
        count = self.beats(terms, bits)
        pad = ((0, 0), (0, count * per_beat - terms))
        activations, weights = np.pad(activations, pad), np.pad(weights, pad)
        idle = [0] * (self.lanes - per_beat)
        beats = []
        for index in range(count):
            lanes = slice(index * per_beat, (index + 1) * per_beat)
            beats.append({
                "activations": [activations[r, lanes].tolist() + idle for r in range(self.rows)],
                "weights": [weights[c, lanes].tolist() + idle for c in range(self.cols)],
                "last": int(index == count - 1),
            })
        return beats

    def elaborate(self, platform):
        m = Module()
        n = self.master_bits
        beat = self.operands.payload
        accept = Signal()
        starting = Signal(init=1)      # the next accepted beat starts new dot products
        m.d.comb += [
            self.operands.ready.eq(~self.results.valid | self.results.ready),
            accept.eq(self.operands.valid & self.operands.ready),
        ]
        with m.If(accept):
            m.d.sync += starting.eq(beat.last)
        with m.If(accept & beat.last):
            m.d.sync += self.results.valid.eq(1)
        with m.Elif(self.results.ready):
            m.d.sync += self.results.valid.eq(0)

        # Lane l is read only in the modes with more than l products per beat, so its nest
        # units only need those bit-widths (lanes >= 4 only b = 2 for n = 8).
        lane_bits = [[bits for bits in self.supported_bits
                      if lane < self.products_per_beat(bits)] for lane in range(self.lanes)]

        def nest_lanes(kind, index, codes, signed):
            nested = []
            for lane in range(self.lanes):
                unit = NestUnit(master_bits=n, signed=signed, supported_bits=lane_bits[lane])
                m.submodules[f"nest_{kind}_{index}_{lane}"] = unit
                m.d.comb += [unit.master.eq(codes[lane]), unit.bits.eq(self.bits)]
                nested.append(unit.nested)
            return nested

        row_codes = [nest_lanes("a", r, beat.activations[r], False) for r in range(self.rows)]
        col_codes = [nest_lanes("w", c, beat.weights[c], True) if self.nest_weights
                     else [beat.weights[c][lane] for lane in range(self.lanes)]
                     for c in range(self.cols)]
        for r in range(self.rows):
            for c in range(self.cols):
                pe = ProcessingElement(master_bits=n, scalable=self.scalable,
                                       supported_bits=self.supported_bits,
                                       acc_width=self.acc_width)
                m.submodules[f"pe_{r}_{c}"] = pe
                m.d.comb += [
                    pe.bits.eq(self.bits),
                    pe.enable.eq(accept),
                    pe.clear.eq(starting),
                    self.results.payload[r][c].eq(pe.acc),
                ]
                for lane in range(self.lanes):
                    m.d.comb += [pe.activations[lane].eq(row_codes[r][lane]),
                                 pe.weights[lane].eq(col_codes[c][lane])]
        return m
