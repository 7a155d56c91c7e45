"""The activation fetcher: walks the windows of a conv or pool op and streams activation beats.

One beat is up to 16 master codes of one tap of one output pixel's window (the codes one PE
adds in a beat at the layer's bit-width), read from the data memory's nibble-split groups
(`dqt_hw.accel.layout`). Three decoupled stages keep it at one beat per cycle:

1. the address generator walks output pixels, taps and channel chunks (one beat per cycle)
   and, whenever a beat needs a group other than the last one it asked for, queues a read
   request;
2. the reader issues those reads: the high-nibble word only at b <= 3 (`both` low), both words
   otherwise, and queues the returned groups;
3. the emitter pairs each beat with its group and selects its lanes.

So a b = 2 layer reads one 64-bit word per beat, and a b = 4 layer two words per four beats,
read ahead while the previous group's beats go out. Taps outside the input (zero padding)
become zero beats without a read.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .data_memory import ADDRESS_BITS, DATA_WORD_BITS, data_port_signature
from .register_fifo import RegisterFIFO

__all__ = ["GROUP_LANES", "activation_beat_layout", "window_signature", "ActivationFetcher"]

GROUP_LANES = 16
ELEMENT_BITS = 21      # signed element offsets within the data memory (2^17 codes, sign)


def activation_beat_layout():
    """One beat: 16 unsigned 8-bit master codes (lanes beyond the mode's products are
    unspecified), the beat's index within its dot product, and whether it ends the dot
    product (the window)."""
    return data.StructLayout({
        "codes": data.ArrayLayout(unsigned(8), GROUP_LANES),
        "index": unsigned(12),
        "last": unsigned(1),
    })


def window_signature():
    """The geometry of a window walk (instruction fields, constant while a walk runs), as the
    fetcher sees them."""
    return wiring.Signature({
        "in_a": In(16), "in_h": In(8), "in_w": In(8), "in_cp": In(12),
        "out_h": In(8), "out_w": In(8),
        "kernel_h": In(4), "kernel_w": In(4), "stride": In(4), "pad": In(4),
        "in_row": In(16), "px_step": In(16), "row_step": In(20), "e_init": In(signed(20)),
        "chunks": In(12),        # beats per tap
        "lanes_log2": In(range(5)),   # 0, 2 or 4: codes per beat 1, 4, 16
        "both": In(1),           # read the low nibbles too (b >= 4, pooling)
    })


class ActivationFetcher(wiring.Component):
    """Streams the activation beats of every output pixel's window, pixel by pixel.

    Walk order: output rows, output columns, kernel rows, kernel columns, chunks of
    2^lanes_log2 stored channels (`chunks` per tap). Beat codes are master codes; at
    lanes_log2 = 4 lane l holds stored channel 16 k + l of the tap, at 2 lanes 0..3 the four
    channels of the chunk, at 0 lane 0 the one channel. `start` (a pulse while `idle`) begins
    a walk with the `window` fields, which must stay constant until `idle` again.

    Ports: `window` (window_signature), `start` In(1), `idle` Out(1), `port` (a data
    memory client), `beats` Out(stream of activation_beat_layout()), and `emit` with
    `emit_index`: high in the cycle a beat is loaded into `beats` (its index), so a consumer
    can start a one-cycle read (the weight buffer) that lines up with the beat.

    `queue_depth` sizes the descriptor and request queues, `group_depth` the queue of read
    groups (128 bits per entry). The defaults keep every mode at one beat per cycle: the
    descriptor queue lets the address generator run ahead of the read latency, four groups
    cover the reads in flight at b = 2 (`test_fetcher_streams_one_beat_per_cycle`).
    """

    def __init__(self, *, queue_depth=6, group_depth=4):
        self.queue_depth, self.group_depth = queue_depth, group_depth
        super().__init__({
            "window": Out(window_signature()),
            "start": In(1),
            "idle": Out(1),
            "port": Out(data_port_signature()),
            "beats": Out(stream.Signature(activation_beat_layout())),
            "emit": Out(1),
            "emit_index": Out(12),
        })

    def elaborate(self, platform):
        m = Module()
        g = self.window
        desc_layout = data.StructLayout({"zero": 1, "new": 1, "offset": 4, "index": 12,
                                         "last": 1})
        group_layout = data.StructLayout({"high": DATA_WORD_BITS, "low": DATA_WORD_BITS})
        m.submodules.desc_fifo = desc_fifo = RegisterFIFO(width=desc_layout.size,
                                                          depth=self.queue_depth)
        m.submodules.req_fifo = req_fifo = RegisterFIFO(width=ADDRESS_BITS,
                                                        depth=self.queue_depth)
        m.submodules.group_fifo = group_fifo = RegisterFIFO(width=group_layout.size,
                                                            depth=self.group_depth)

        # -- 1. address generator ----------------------------------------------------------
        running = Signal()
        oy, ox = Signal(8), Signal(8)
        ty, tx = Signal(4), Signal(4)
        chunk, index = Signal(12), Signal(12)
        iy0, ix0 = Signal(signed(10)), Signal(signed(10))
        e_row, e_pix, e_ty, e_tap, e_cur = (Signal(signed(ELEMENT_BITS), name=name) for name in
                                            ("e_row", "e_pix", "e_ty", "e_tap", "e_cur"))
        tag, tag_valid = Signal(ADDRESS_BITS), Signal()
        iy, ix = Signal(signed(11)), Signal(signed(11))
        zero, new, group_addr = Signal(), Signal(), Signal(ADDRESS_BITS)
        chunk_last, tx_last, ty_last = Signal(), Signal(), Signal()
        ox_last, oy_last = Signal(), Signal()
        step = Signal(5)
        m.d.comb += [
            iy.eq(iy0 + ty), ix.eq(ix0 + tx),
            zero.eq((iy < 0) | (iy >= g.in_h) | (ix < 0) | (ix >= g.in_w)),
            group_addr.eq(g.in_a + (e_cur[4:] << 1)),
            new.eq(~zero & (~tag_valid | (group_addr != tag))),
            chunk_last.eq(chunk == g.chunks - 1), tx_last.eq(tx == g.kernel_w - 1),
            ty_last.eq(ty == g.kernel_h - 1), ox_last.eq(ox == g.out_w - 1),
            oy_last.eq(oy == g.out_h - 1),
            step.eq(Const(1, 5) << g.lanes_log2),
        ]
        desc = data.View(desc_layout, desc_fifo.w_data)
        advance, window_last = Signal(), Signal()
        m.d.comb += [
            window_last.eq(chunk_last & tx_last & ty_last),
            advance.eq(running & desc_fifo.w_rdy & (~new | req_fifo.w_rdy)),
            desc.zero.eq(zero), desc.new.eq(new), desc.offset.eq(e_cur[:4]),
            desc.index.eq(index), desc.last.eq(window_last),
            desc_fifo.w_en.eq(advance),
            req_fifo.w_data.eq(group_addr), req_fifo.w_en.eq(advance & new),
        ]
        with m.If(self.start & ~running):
            m.d.sync += [running.eq(1), oy.eq(0), ox.eq(0), ty.eq(0), tx.eq(0), chunk.eq(0),
                         index.eq(0), iy0.eq(-g.pad), ix0.eq(-g.pad), e_row.eq(g.e_init),
                         e_pix.eq(g.e_init), e_ty.eq(g.e_init), e_tap.eq(g.e_init),
                         e_cur.eq(g.e_init), tag_valid.eq(0)]
        with m.If(advance):
            with m.If(new):
                m.d.sync += [tag.eq(group_addr), tag_valid.eq(1)]
            m.d.sync += index.eq(Mux(window_last, 0, index + 1))
            with m.If(~chunk_last):
                m.d.sync += [chunk.eq(chunk + 1), e_cur.eq(e_cur + step)]
            with m.Else():
                m.d.sync += chunk.eq(0)
                with m.If(~tx_last):
                    m.d.sync += [tx.eq(tx + 1), e_tap.eq(e_tap + g.in_cp),
                                 e_cur.eq(e_tap + g.in_cp)]
                with m.Else():
                    m.d.sync += tx.eq(0)
                    with m.If(~ty_last):
                        m.d.sync += [ty.eq(ty + 1), e_ty.eq(e_ty + g.in_row),
                                     e_tap.eq(e_ty + g.in_row), e_cur.eq(e_ty + g.in_row)]
                    with m.Else():
                        m.d.sync += ty.eq(0)
                        with m.If(~ox_last):
                            m.d.sync += [ox.eq(ox + 1), ix0.eq(ix0 + g.stride),
                                         e_pix.eq(e_pix + g.px_step),
                                         e_ty.eq(e_pix + g.px_step), e_tap.eq(e_pix + g.px_step),
                                         e_cur.eq(e_pix + g.px_step)]
                        with m.Else():
                            m.d.sync += [ox.eq(0), ix0.eq(-g.pad)]
                            with m.If(~oy_last):
                                m.d.sync += [oy.eq(oy + 1), iy0.eq(iy0 + g.stride),
                                             e_row.eq(e_row + g.row_step),
                                             e_pix.eq(e_row + g.row_step),
                                             e_ty.eq(e_row + g.row_step),
                                             e_tap.eq(e_row + g.row_step),
                                             e_cur.eq(e_row + g.row_step)]
                            with m.Else():
                                m.d.sync += running.eq(0)

        # -- 2. reader ---------------------------------------------------------------------
        active, phase = Signal(), Signal()
        address = Signal(ADDRESS_BITS)
        pending = Signal(range(3))          # requests taken but whose group is not queued yet
        arrive_high, arrive_last = Signal(), Signal()
        granted = Signal()
        finishing = Signal()
        m.d.comb += [
            self.port.addr.eq(address + phase), self.port.read.eq(active),
            granted.eq(active & self.port.grant),
            finishing.eq(granted & (phase | ~g.both)),
        ]
        load = Signal()
        m.d.comb += [
            load.eq(req_fifo.r_rdy & (~active | finishing)
                    & (group_fifo.w_level + pending < self.group_depth)),
            req_fifo.r_en.eq(load),
        ]
        with m.If(load):
            m.d.sync += [active.eq(1), phase.eq(0), address.eq(req_fifo.r_data)]
        with m.Elif(finishing):
            m.d.sync += active.eq(0)
        with m.Elif(granted):
            m.d.sync += phase.eq(1)
        m.d.sync += [arrive_high.eq(granted & ~phase), arrive_last.eq(finishing)]
        high_reg = Signal(DATA_WORD_BITS)
        with m.If(arrive_high):
            m.d.sync += high_reg.eq(self.port.rdata)
        group_in = data.View(group_layout, group_fifo.w_data)
        m.d.comb += [
            group_in.high.eq(Mux(g.both, high_reg, self.port.rdata)),
            group_in.low.eq(Mux(g.both, self.port.rdata, 0)),
            group_fifo.w_en.eq(arrive_last),
        ]
        m.d.sync += pending.eq(pending + load - arrive_last)

        # -- 3. emitter --------------------------------------------------------------------
        head = data.View(desc_layout, desc_fifo.r_data)
        group_head = data.View(group_layout, group_fifo.r_data)
        cache = Signal(group_layout)
        out = self.beats
        emit = Signal()
        m.d.comb += [
            emit.eq(desc_fifo.r_rdy & (~head.new | group_fifo.r_rdy)
                    & (~out.valid | out.ready)),
            desc_fifo.r_en.eq(emit),
            group_fifo.r_en.eq(emit & head.new),
            self.emit.eq(emit), self.emit_index.eq(head.index),
        ]
        source = Signal(group_layout)
        m.d.comb += source.eq(Mux(head.new, group_head.as_value(), cache.as_value()))
        codes = [Cat(source.low[4 * k:4 * k + 4], source.high[4 * k:4 * k + 4])
                 for k in range(GROUP_LANES)]
        code_array = data.View(data.ArrayLayout(unsigned(8), GROUP_LANES), Cat(*codes))
        quad = head.offset[2:4]
        lanes = []
        for lane in range(GROUP_LANES):
            if lane == 0:
                value = Mux(g.lanes_log2 == 0, code_array[head.offset],
                            Mux(g.lanes_log2 == 2, code_array[quad << 2], codes[0]))
            elif lane < 4:
                value = Mux(g.lanes_log2 == 2, code_array[(quad << 2) | lane], codes[lane])
            else:
                value = codes[lane]
            lanes.append(Mux(head.zero, 0, value))
        with m.If(emit):
            with m.If(head.new):
                m.d.sync += cache.eq(group_head)
            m.d.sync += [out.valid.eq(1), out.payload.index.eq(head.index),
                         out.payload.last.eq(head.last)]
            for lane, value in enumerate(lanes):
                m.d.sync += out.payload.codes[lane].eq(value)
        with m.Elif(out.ready):
            m.d.sync += out.valid.eq(0)

        m.d.comb += self.idle.eq(~running & ~desc_fifo.r_rdy & ~req_fifo.r_rdy & ~active
                                 & (pending == 0) & ~group_fifo.r_rdy & ~out.valid)
        return m
