"""The MAC array: rows x cols processing elements fed by nest units, streaming operands in and
accumulators out (valid/ready)."""

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import accumulator_bits, check_master_bits
from .arith import check_positive_int
from .layouts import bits_shape, operands_layout, results_layout
from .nest_unit import NestUnit
from .pe import PECore, PEGeometry, decode_mode, route_operands

__all__ = ["MacArray"]

#: Cycles the array delays the DSP lane's operands at its edge (`PECore.dsp_delayed`): all but
#: the last register in front of the DSP block, whose own input register is the last.
DSP_EDGE_DELAY = PECore.PRODUCT_STAGES - 2


class MacArray(wiring.Component):
    """An output-stationary array: PE (r, c) accumulates dot(activations of row r, weights of
    column c) over the beats of one dot product.

    Every beat of `operands` carries, for each array row, `lanes` unsigned activation master
    codes and, for each column, `lanes` signed narrow-range weight master codes. Nest units at
    the array edge (one per row lane and per column lane, each built only for the b values
    whose mode reads its lane) derive the b-bit codes for the beat's `bits`; each PE then adds
    `products_per_beat(b)` products per beat (lane p of a row times lane p of a column, lanes
    beyond that ignored; pad a dot product with zero codes to a whole number of beats: code 0
    is exact at every b). The beat with `last` ends the dot products: `latency` cycles later
    the `results` stream offers all rows x cols accumulators, which equal
    `golden.linear(nest(x, b, unsigned), nest(w, b, signed))` exactly.

    Pipeline (every stage registered): nest units | the nested lanes routed to the PEs' brick
    digits by fusion mode (`pe.route_operands`: once per row and per column, not in every PE)
    | the PEs (`PECore`: two product stages, then the split accumulators). The `bits` port is
    registered and decoded into a one-hot mode that travels with each beat; a beat is only
    accepted once that register holds the current `bits` (`operands.ready` is low for one
    cycle after `bits` changes), so nothing after the first register depends on the port.
    Keep `bits` constant within a dot product.

    Parameters: `rows`, `cols` (positive), `master_bits` n, `max_terms` K (the longest dot
    product, in products), `acc_width` (default and minimum `golden.accumulator_bits(n, n, K)`,
    which holds any K-term sum at every b <= n), `scalable` (Bit Fusion PEs, else fixed n x n
    MACs), `supported_bits` (the b values the array must run; default every b in [2, n]),
    `nest_weights` (default True; False drops the column nest units: the weight lanes then
    carry codes already nested to b bits, as the accelerator's weight buffer holds them),
    `dsp_lanes` and `fuse_wide` (`ProcessingElement`: a DSP multiplier per PE for n x n
    products, beside the bricks' one or instead of it; fixed PEs: `dsp_lanes=1` multiplies on
    a DSP, else in LUTs), `dsp_columns` (fixed arrays only: the first `dsp_columns` columns
    multiply on DSPs, the others in LUTs; default all with `dsp_lanes=1`, else none).

    Ports:
      bits:     In(range(2, n + 1))  the b of the next beats; change it only between dot
                                     products (a change costs one cycle).
      operands: In(stream.Signature(layouts.operands_layout(rows, cols, lanes, n)))
      results:  Out(stream.Signature(layouts.results_layout(rows, cols, acc_width)))

    Latency 6 (`latency`): rising edges from accepting the `last` beat up to and including
    the one after which `results.valid` is high. Throughput 1 beat per cycle
    (`beats_per_cycle`), including back-to-back dot products; while a result is held by
    back-pressure the whole pipeline stalls (`operands.ready` low) until it is taken. A K-term
    dot product takes ceil(K / products_per_beat(b)) beats.
    """

    latency = 2 + PECore.latency
    beats_per_cycle = 1

    def __init__(self, *, rows, cols, master_bits=8, max_terms, acc_width=None, scalable=True,
                 supported_bits=None, nest_weights=True, dsp_lanes=0, fuse_wide=True,
                 dsp_columns=None):
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
        self.geometry = PEGeometry.build(n, scalable, supported_bits, dsp_lanes, fuse_wide)
        if dsp_columns is None:
            dsp_columns = cols if dsp_lanes else 0
        elif scalable:
            raise ValueError("`dsp_columns` is for fixed arrays (`scalable=False`) only")
        elif (not isinstance(dsp_columns, int) or isinstance(dsp_columns, bool)
              or not 0 <= dsp_columns <= cols):
            raise ValueError(f"`dsp_columns` must be an integer between 0 and `cols` ({cols}), "
                             f"not {dsp_columns!r}")
        self.dsp_columns = dsp_columns
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
        g = self.geometry
        beat = self.operands.payload
        advance, accept = Signal(), Signal()
        # `bits` is registered, so that the nest units and the mode decoder run from a
        # register; a beat is only accepted once the register holds the current `bits`.
        bits = Signal(bits_shape(self.master_bits), init=self.master_bits)
        m.d.sync += bits.eq(self.bits)
        starting = Signal(init=1)      # the next accepted beat starts new dot products
        m.d.comb += [
            advance.eq(~self.results.valid | self.results.ready),
            self.operands.ready.eq(advance & (bits == self.bits)),
            accept.eq(self.operands.valid & self.operands.ready),
        ]
        with m.If(accept):
            m.d.sync += starting.eq(beat.last)

        def register(value, name, reset_less=True):
            """`value` one advancing edge later."""
            delayed = Signal.like(value, name=name, reset_less=reset_less)
            with m.If(advance):
                m.d.sync += delayed.eq(value)
            return delayed

        # -- edge: nest | route to the brick digits | PEs -----------------------------------
        nest_valid = register(accept, "nest_valid", reset_less=False)
        nest_start = register(starting, "nest_start")
        nest_last = register(beat.last, "nest_last")
        nest_mode = register(decode_mode(m, g, bits), "nest_mode")
        rows = [self._edge(m, "a", r, beat.activations[r], bits, nest_mode, register, nest=True)
                for r in range(self.rows)]
        cols = [self._edge(m, "w", c, beat.weights[c], bits, nest_mode, register,
                           nest=self.nest_weights)
                for c in range(self.cols)]
        edge_valid = register(nest_valid, "edge_valid", reset_less=False)
        edge_start = register(nest_start, "edge_start")
        edge_mode = register(nest_mode, "edge_mode")
        # `last`: the PEs' accumulator stage holds the last beat of the dot products.
        last = register(nest_valid & nest_last, "edge_last", reset_less=False)
        for stage in range(PECore.PRODUCT_STAGES):
            last = register(last, f"last_{stage}", reset_less=False)
        with m.If(advance):
            with m.If(last):
                m.d.sync += self.results.valid.eq(1)
            with m.Elif(self.results.ready):
                m.d.sync += self.results.valid.eq(0)

        # -- the PEs ------------------------------------------------------------------------
        for r in range(self.rows):
            for c in range(self.cols):
                geometry = g if g.scalable else PEGeometry.build(
                    g.master_bits, False, g.supported_bits, int(c < self.dsp_columns))
                core = PECore(geometry, self.acc_width, dsp_delayed=DSP_EDGE_DELAY)
                m.submodules[f"pe_{r}_{c}"] = core
                m.d.comb += [core.mode.eq(edge_mode), core.valid.eq(edge_valid),
                             core.start.eq(edge_start), core.advance.eq(advance),
                             self.results.payload[r][c].eq(core.acc)]
                for port in ("a_digits", "dsp_a"):
                    if port in rows[r]:
                        m.d.comb += getattr(core, port).eq(rows[r][port])
                for port in ("w_digits", "dsp_w"):
                    if port in cols[c]:
                        m.d.comb += getattr(core, port).eq(cols[c][port])
        return m

    def _edge(self, m, kind, index, codes, bits, mode, register, *, nest):
        """One row's (kind "a") or column's ("w") operands for its PEs: the lanes nested and
        registered, then routed to the brick digits and the DSP lane's code for `mode` (the
        registered mode of the nested lanes) and registered ({core port name: register})."""
        g, n = self.geometry, self.master_bits
        signed = kind == "w"
        nested = []
        for lane in range(self.lanes):
            code = codes[lane]
            if nest:
                unit = NestUnit(master_bits=n, signed=signed, supported_bits=g.lane_bits(lane),
                                passthrough=False)
                m.submodules[f"nest_{kind}_{index}_{lane}"] = unit
                m.d.comb += [unit.master.eq(code), unit.bits.eq(bits)]
                code = unit.nested
            nested.append(register(code, f"nested_{kind}_{index}_{lane}"))
        values = {}
        if g.brick_modes:
            a_digits, w_digits = (route_operands(g, nested, nested, mode))
            values[f"{kind}_digits"] = Cat(*(a_digits if kind == "a" else w_digits))
        if not g.scalable:
            values[f"dsp_{kind}"] = nested[0]
        elif g.dsp_lane is not None:
            wide = mode[f"w{n}"]
            code = nested[g.dsp_lane]
            # Beside the bricks' n x n product the DSP product is added, so it must be zero in
            # the other modes; alone in the n x n mode it is selected, so it needs no gate.
            values[f"dsp_{kind}"] = Mux(wide, code, 0) if n in g.brick_modes else code
        registers = {name: register(value, f"edge_{name}_{index}")
                     for name, value in values.items()}
        for name in list(registers):
            if name.startswith("dsp_"):
                # The DSP lane's product takes fewer stages than the bricks' tree; the delay
                # is paid here, once per row and column, instead of in every PE.
                for stage in range(DSP_EDGE_DELAY):
                    registers[name] = register(registers[name], f"edge_{name}_{index}_{stage}")
        return registers
