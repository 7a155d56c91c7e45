"""The window engine: runs conv2d/linear (CONV) and pooling (POOL) instructions.

Both walk the windows of their output pixels with the `ActivationFetcher` and end each window
in a set of values that the drain requantizes and hands to the tensor writer:

- CONV, per group of `cols` output channels: load the group's weight rows into the
  `WeightBuffer` (nested to the layer's b), then stream every output pixel's window through
  the `MacArray` (one row, `cols` columns: the activation beat is broadcast, each column has
  its channel's weights). Each window ends in `cols` accumulators, requantized with the
  channel's constants (read from the data memory into registers once per group) and
  acc_shift = 2(n - b).
- POOL, per chunk of up to `pool_lanes` channels: the same walk with one beat per tap; the
  lanes of each beat are summed per channel, and each window's sums are requantized with the
  instruction's M and r.

The bit-width of a CONV comes from the instruction or, for a controlled layer, from the
controller: the slot's chosen candidate (choice memory) indexes the controller table, whose
word gives b. A precision switch therefore costs two table reads at the start of the op.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..accel.program import INSTRUCTION, Opcode
from .activation_fetcher import ActivationFetcher
from .data_memory import ADDRESS_BITS, data_port_signature
from .layouts import bits_shape
from .mac_array import MacArray
from .pe import mode_bits
from .requantize_stage import request_layout
from .weight_buffer import WeightBuffer

__all__ = ["POOL_SUM_BITS", "WindowEngine"]

#: Width of a pooling window sum: 8-bit codes over at most 15 x 15 taps, signed.
POOL_SUM_BITS = 18


class WindowEngine(wiring.Component):
    """Executes one CONV or POOL instruction (`instr`, constant while busy) per `start` pulse;
    `done` pulses when its last output has been handed to the tensor writer and the writer is
    idle. See the module docstring; docs/accelerator.md has the cycle model.

    Ports: data-memory clients `fetch_port` (activations), `load_port` (weights) and
    `const_port` (the group's constants); `requests` (to the shared `RequantizeStage`) and
    `drained` (the stage and the tensor writer have finished everything sent);
    read ports of the choice memory (`choice_*`) and the controller table (`table_*`); `bits`
    (the b the current or last CONV ran at).
    """

    def __init__(self, config):
        self.config = config
        super().__init__({
            "instr": In(INSTRUCTION),
            "start": In(1),
            "done": Out(1),
            "fetch_port": Out(data_port_signature()),
            "load_port": Out(data_port_signature()),
            "requests": Out(stream.Signature(request_layout(config.value_bits))),
            "drained": In(1),
            "const_port": Out(data_port_signature()),
            "choice_addr": Out(range(config.slots)),
            "choice_data": In(8),
            "table_addr": Out(range(config.table_words)),
            "table_data": In(32),
            "bits": Out(bits_shape(config.master_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        n, cols, pool_lanes = cfg.master_bits, cfg.cols, cfg.pool_lanes
        ins = self.instr
        is_conv = Signal()
        m.d.comb += is_conv.eq(ins.opcode == Opcode.CONV)

        m.submodules.fetcher = fetcher = ActivationFetcher(queue_depth=cfg.fetch_queue,
                                                           group_depth=cfg.fetch_groups,
                                                           bypass=cfg.fetch_bypass)
        # Kept for simulators that watch the buffer's memory.
        self.buffer = buffer = WeightBuffer(cols=cols, depth=cfg.buffer_depth,
                                            supported_bits=cfg.supported_bits,
                                            narrow=cfg.narrow_loader)
        m.submodules.buffer = buffer
        m.submodules.array = array = MacArray(rows=1, cols=cols, master_bits=n,
                                              max_terms=cfg.max_terms,
                                              supported_bits=cfg.supported_bits,
                                              nest_weights=False,
                                              dsp_lanes=int(cfg.dsp_wide),
                                              fuse_wide=not cfg.dsp_wide)
        wiring.connect(m, wiring.flipped(self.fetch_port), fetcher.port)
        wiring.connect(m, wiring.flipped(self.load_port), buffer.port)

        # -- the op's bit-width and the mode it selects --------------------------------------
        bits = Signal(bits_shape(n), init=n)
        m.d.comb += self.bits.eq(bits)
        lanes_log2, beats_log2, mode = Signal(range(5)), Signal(range(3)), Signal(range(9))
        with m.Switch(bits):
            for b in cfg.supported_bits:
                with m.Case(b):
                    w = mode_bits(b)
                    m.d.comb += [lanes_log2.eq(2 * (n // w).bit_length() - 2),
                                 beats_log2.eq({8: 2, 4: 1, 2: 0}[w]), mode.eq(w)]
        pool_log2 = Signal(range(5))
        m.d.comb += pool_log2.eq(Mux((pool_lanes >= 16) & (ins.in_cp[:4] == 0), 4,
                                     Mux((pool_lanes >= 4) & (ins.in_cp[:2] == 0), 2, 0)))
        step_log2 = Signal(range(5))
        m.d.comb += step_log2.eq(Mux(is_conv, (cols - 1).bit_length(), pool_log2))

        # -- sequencing ----------------------------------------------------------------------
        first = Signal(12)                      # first output channel of the current group
        row_base = Signal(ADDRESS_BITS)
        constant_layout = data.StructLayout({"bias": signed(32), "multiplier": unsigned(16),
                                             "shift": unsigned(6)})
        constants = [Signal(constant_layout, name=f"constants_{j}") for j in range(cols)]
        const_index, const_arrive = Signal(range(cols + 1)), Signal()
        const_arrive_index = Signal(range(cols))
        group_done = Signal()
        drain_idle = Signal()
        columns = Signal(range(cols + 1))
        m.d.comb += columns.eq(Mux(ins.out_c - first >= cols, cols, ins.out_c - first))
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [first.eq(0), row_base.eq(ins.weights)]
                    with m.If(is_conv & ins.bits_select):
                        m.next = "CHOICE"
                    with m.Else():
                        m.d.sync += bits.eq(Mux(is_conv, ins.bits, n))
                        m.next = "GROUP"
            with m.State("CHOICE"):
                m.d.comb += self.choice_addr.eq(ins.slot)
                m.next = "TABLE"
            with m.State("TABLE"):
                m.d.comb += [self.choice_addr.eq(ins.slot),
                             self.table_addr.eq(ins.table_row + self.choice_data[:4])]
                m.next = "BITS"
            with m.State("BITS"):
                m.d.sync += bits.eq(self.table_data[:4])
                m.next = "GROUP"
            with m.State("GROUP"):
                with m.If(first >= ins.out_c):
                    m.next = "FINISH"
                with m.Elif(is_conv):
                    m.d.sync += const_index.eq(0)
                    m.next = "CONSTANTS"
                with m.Else():
                    m.next = "WALK"
            with m.State("CONSTANTS"):       # one data word per column of the group
                m.d.comb += [self.const_port.addr.eq(ins.consts + first + const_index),
                             self.const_port.read.eq(const_index < columns)]
                with m.If(self.const_port.grant & (const_index < columns)):
                    m.d.sync += const_index.eq(const_index + 1)
                with m.If((const_index == columns) & ~const_arrive):
                    m.d.comb += buffer.start.eq(1)
                    m.next = "LOAD"
            with m.State("LOAD"):
                with m.If(buffer.idle):
                    m.next = "WALK"
            with m.State("WALK"):
                m.d.comb += fetcher.start.eq(1)
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(group_done):
                    m.d.sync += [first.eq(first + (Const(1, 5) << step_log2)),
                                 row_base.eq(row_base + (ins.row_words << step_log2))]
                    m.next = "GROUP"
            with m.State("FINISH"):
                with m.If(drain_idle & self.drained):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
        m.d.comb += [
            buffer.row_base.eq(row_base), buffer.row_words.eq(ins.row_words),
            buffer.columns.eq(columns), buffer.bits.eq(bits), buffer.both.eq(bits >= 4),
        ]
        g = fetcher.window
        m.d.comb += [
            g.in_a.eq(ins.in_a), g.in_h.eq(ins.in_h), g.in_w.eq(ins.in_w),
            g.in_cp.eq(ins.in_cp), g.out_h.eq(ins.out_h), g.out_w.eq(ins.out_w),
            g.kernel_h.eq(ins.kernel_h), g.kernel_w.eq(ins.kernel_w), g.stride.eq(ins.stride),
            g.pad.eq(ins.pad), g.row_jump.eq(ins.row_jump), g.pixel_jump.eq(ins.pixel_jump),
            g.line_jump.eq(ins.line_jump),
            g.step.eq(Mux(is_conv, Const(1, 5) << lanes_log2, ins.in_cp)),
            g.e_init.eq(Mux(is_conv, ins.e_init, ins.e_init + first)),
            g.chunks.eq(Mux(is_conv, ins.in_cp >> lanes_log2, 1)),
            g.lanes_log2.eq(Mux(is_conv, lanes_log2, pool_log2)),
            g.both.eq(~is_conv | (bits >= 4)),
        ]

        # -- CONV: the array takes the fetcher's beats; the weight buffer is read as a beat is
        # emitted, so its word arrives together with the beat.
        beat = fetcher.beats.payload
        beat_sub = Signal(2)                 # the beat's place in its buffer word
        conv_ready = Signal()
        m.d.comb += [
            conv_ready.eq(array.operands.ready),
            buffer.read_addr.eq(fetcher.emit_index >> beats_log2),
            buffer.read_en.eq(fetcher.emit & is_conv),
        ]
        with m.If(fetcher.emit):
            m.d.sync += beat_sub.eq(fetcher.emit_index & ((Const(1, 3) << beats_log2) - 1))
        operands = array.operands.payload
        m.d.comb += [array.bits.eq(bits), array.operands.valid.eq(fetcher.beats.valid & is_conv),
                     operands.last.eq(beat.last)]
        for lane in range(array.lanes):
            m.d.comb += operands.activations[0][lane].eq(beat.codes[lane])
        modes = sorted({mode_bits(b) for b in cfg.supported_bits})
        for column in range(cols):
            word = buffer.read_data[32 * column:32 * column + 32]
            for lane in range(array.lanes):
                options = {8: word.word_select(beat_sub, 8) if lane == 0 else None,
                           4: (word.word_select(Cat(Const(lane, 2), beat_sub[0]), 4)
                               if lane < 4 else None),
                           2: word[2 * lane:2 * lane + 2]}
                # A lane that only one mode reads takes its field directly: in the other
                # modes the PE ignores it.
                fields = [(w, options[w].as_signed()) for w in modes if options[w] is not None]
                value = fields[0][1]
                for w, field in fields[1:]:
                    value = Mux(mode == w, field, value)
                m.d.comb += operands.weights[column][lane].eq(value)

        # -- POOL: window sums per lane ------------------------------------------------------
        sums = [Signal(signed(POOL_SUM_BITS), name=f"sum_{lane}") for lane in range(pool_lanes)]
        pool_set = Signal()                      # a window's sums are complete
        pool_values = [Signal(signed(POOL_SUM_BITS), name=f"pool_{lane}")
                       for lane in range(pool_lanes)]
        set_taken = Signal()
        pool_ready = Signal()
        m.d.comb += pool_ready.eq(~pool_set | set_taken)
        m.d.comb += fetcher.beats.ready.eq(Mux(is_conv, conv_ready, pool_ready))
        with m.If(~is_conv & fetcher.beats.valid & pool_ready):
            for lane in range(pool_lanes):
                code = beat.codes[lane]
                value = Mux(ins.a_signed, code.as_signed(), code.as_unsigned())
                total = sums[lane] + value
                m.d.sync += sums[lane].eq(Mux(beat.last, 0, total))
                with m.If(beat.last):
                    m.d.sync += pool_values[lane].eq(total)
            m.d.sync += pool_set.eq(beat.last)
        with m.Elif(set_taken):
            m.d.sync += pool_set.eq(0)

        # -- drain: each window's set of values -> requantizer -> writer ---------------------
        width = max(cfg.acc_width, POOL_SUM_BITS)
        depth = max(cols, pool_lanes)
        hold = [Signal(signed(width), name=f"hold_{j}") for j in range(depth)]
        holding = Signal()
        index = Signal(range(depth + 1))           # next value of the held set to send
        count = Signal(range(depth + 1))           # values of this set to send
        e_pix, w_pix = Signal(21), Signal(16)      # this pixel's first output element / index
        px, py = Signal(8), Signal(8)
        result_taken = Signal()
        m.d.comb += [array.results.ready.eq(~holding & is_conv),
                     result_taken.eq(array.results.valid & ~holding & is_conv),
                     set_taken.eq(pool_set & ~holding & ~is_conv)]
        with m.If(result_taken):
            m.d.sync += [holding.eq(1), index.eq(0), count.eq(columns)]
            for j in range(cols):
                m.d.sync += hold[j].eq(array.results.payload[0][j])
        with m.If(set_taken):
            m.d.sync += [holding.eq(1), index.eq(0),
                         count.eq(Mux(ins.out_c - first >= (Const(1, 5) << pool_log2),
                                      Const(1, 5) << pool_log2, ins.out_c - first))]
            for j in range(pool_lanes):
                m.d.sync += hold[j].eq(pool_values[j])
        m.d.sync += [const_arrive.eq(self.const_port.read & self.const_port.grant),
                     const_arrive_index.eq(const_index)]
        with m.If(const_arrive):
            with m.Switch(const_arrive_index):
                for j in range(cols):
                    with m.Case(j):
                        m.d.sync += constants[j].eq(self.const_port.rdata[:constant_layout.size])
        # One held value enters the requantizer per cycle, with its channel's constants.
        offer, fed = Signal(), Signal()
        m.d.comb += [offer.eq(holding & (index < count)),
                     fed.eq(offer & self.requests.ready)]
        with m.If(fed):
            m.d.sync += index.eq(index + 1)
        feed_index = index
        held = Signal(signed(width))
        m.d.comb += held.eq(Cat(*hold).word_select(feed_index, width).as_signed())
        channel = Signal(constant_layout)
        m.d.comb += channel.eq(Cat(*constants).word_select(index[:max(1, (cols - 1).bit_length())],
                                                          constant_layout.size))
        request = self.requests.payload
        element = Signal(21)
        m.d.comb += [
            self.requests.valid.eq(offer),
            request.acc.eq(held),
            request.multiplier.eq(Mux(is_conv, channel.multiplier, ins.multiplier)),
            request.shift.eq(Mux(is_conv, channel.shift, ins.shift)),
            request.bias.eq(Mux(is_conv, channel.bias, 0)),
            element.eq(e_pix + feed_index),
            request.wide.eq(ins.out_wide),
            request.addr.eq(Mux(ins.out_wide, w_pix + feed_index, ins.out + (element[4:] << 1))),
            request.lane.eq(element[:4]),
            request.flush.eq(feed_index == count - 1),
        ]
        set_done = Signal()
        m.d.comb += set_done.eq(holding & (index == count))
        last_pixel = Signal()
        m.d.comb += last_pixel.eq((px == ins.out_w - 1) & (py == ins.out_h - 1))
        with m.If(set_done):
            m.d.sync += holding.eq(0)
            with m.If(last_pixel):
                m.d.sync += [px.eq(0), py.eq(0)]
            with m.Elif(px == ins.out_w - 1):
                m.d.sync += [px.eq(0), py.eq(py + 1)]
            with m.Else():
                m.d.sync += px.eq(px + 1)
            m.d.sync += [e_pix.eq(e_pix + ins.out_cp), w_pix.eq(w_pix + ins.out_c)]
        m.d.comb += group_done.eq(set_done & last_pixel)
        with m.If(buffer.start | (~is_conv & fetcher.start)):
            m.d.sync += [e_pix.eq(first), w_pix.eq(ins.out + first), px.eq(0), py.eq(0)]
        m.d.comb += drain_idle.eq(~holding)
        return m
