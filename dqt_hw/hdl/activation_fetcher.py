"""The activation fetcher: walks the windows of a conv or pool op and streams activation beats.

One beat is up to 16 master codes of one tap of one output pixel's window (the codes one PE
adds in a beat at the layer's bit-width), read from the data memory's nibble-split groups
(`dqt_hw.accel.layout`). Three decoupled stages keep it at one beat per cycle:

1. the address generator walks output pixels, taps and channel chunks (one beat per cycle)
   and, whenever a beat needs a group other than the last one it asked for, queues a read
   request;
2. the reader issues those reads: the high-nibble word only at b <= 3 (`both` low), both words
   otherwise, and queues the returned groups;
3. the emitter takes each beat's lanes from the group at the head of the group queue, and
   drops the group after its last beat (the address generator marks it: it holds each
   descriptor back one beat to see whether the next beat needs the same group).

So a b = 2 layer reads one 64-bit word per beat, and a b = 4 layer two words per four beats,
read ahead while the previous group's beats go out. Taps outside the input (zero padding)
become zero beats without a read.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
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
        "e_init": In(signed(20)),        # element of the first window's first tap
        "step": In(16),                  # from a beat to the next: a chunk (2^lanes_log2
                                         # codes), or from a tap to the next with one chunk
        "row_jump": In(signed(20)),      # what a move to the next tap row, pixel and pixel
        "pixel_jump": In(signed(20)),    # row adds to the step
        "line_jump": In(signed(20)),
        "chunks": In(12),        # beats per tap (with more than one: step = 2^lanes_log2)
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
    groups (128 bits per entry). The defaults keep every mode at one beat per cycle
    (`test_fetcher_streams_one_beat_per_cycle`): a request's read goes out in the cycle it is
    taken, even in the cycle the group it replaces leaves the queue, and with `bypass` (the
    default) an arriving group passes straight to an empty queue's output, so a group is in
    flight for two cycles at most. Without `bypass` it waits a cycle in the queue: 128
    multiplexers fewer, fewer beats per cycle with a short queue.
    """

    def __init__(self, *, queue_depth=3, group_depth=2, bypass=True):
        if not isinstance(bypass, bool):
            raise TypeError(f"`bypass` must be a bool, not {bypass!r}")
        self.queue_depth, self.group_depth, self.bypass = queue_depth, group_depth, bypass
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
        # A beat's descriptor; `release`: its group is not used by the next beat (the next
        # beat is zero or needs another group), so the emitter drops it from the queue.
        desc_layout = data.StructLayout({"zero": 1, "release": 1, "offset": 4, "index": 12,
                                         "last": 1})
        group_layout = data.StructLayout({"high": DATA_WORD_BITS, "low": DATA_WORD_BITS})
        m.submodules.desc_fifo = desc_fifo = RegisterFIFO(width=desc_layout.size,
                                                          depth=self.queue_depth)
        m.submodules.req_fifo = req_fifo = RegisterFIFO(width=ADDRESS_BITS,
                                                        depth=self.queue_depth)
        # A group's two words arrive one after the other: each half has its own queue, so the
        # high word goes straight in instead of waiting in a register for the low one.
        high_fifo, low_fifo = (RegisterFIFO(width=DATA_WORD_BITS, depth=self.group_depth,
                                            bypass=self.bypass) for _ in range(2))
        m.submodules.high_fifo, m.submodules.low_fifo = high_fifo, low_fifo

        # -- 1. address generator ----------------------------------------------------------
        # One element offset walks the windows: each beat adds the step, and the jump of the
        # innermost counter that moves on if it is a tap row, pixel or pixel row (the chunks of
        # a tap are consecutive, and so are its taps' first chunks when a tap has one).
        running = Signal()
        oy, ox = Signal(8), Signal(8)
        ty, tx = Signal(4), Signal(4)
        chunk, index = Signal(12), Signal(12)
        iy0, ix0 = Signal(signed(10)), Signal(signed(10))
        e_cur = Signal(signed(ELEMENT_BITS))
        jumps = Array([Const(0, signed(20)), g.row_jump, g.pixel_jump, g.line_jump])
        tag, tag_valid = Signal(ADDRESS_BITS), Signal()
        iy, ix = Signal(signed(11)), Signal(signed(11))
        zero, new, group_addr = Signal(), Signal(), Signal(ADDRESS_BITS)
        chunk_last, tx_last, ty_last = Signal(), Signal(), Signal()
        ox_last, oy_last = Signal(), Signal()
        m.d.comb += [
            iy.eq(iy0 + ty), ix.eq(ix0 + tx),
            zero.eq((iy < 0) | (iy >= g.in_h) | (ix < 0) | (ix >= g.in_w)),
            group_addr.eq(g.in_a + (e_cur[4:] << 1)),
            new.eq(~zero & (~tag_valid | (group_addr != tag))),
            chunk_last.eq(chunk == g.chunks - 1), tx_last.eq(tx == g.kernel_w - 1),
            ty_last.eq(ty == g.kernel_h - 1), ox_last.eq(ox == g.out_w - 1),
            oy_last.eq(oy == g.out_h - 1),
        ]
        # Each descriptor is held for one beat, until the next beat says whether its group is
        # released; the last one is pushed when the walk has ended.
        held = Signal(desc_layout)
        held_valid = Signal()
        desc = data.View(desc_layout, desc_fifo.w_data)
        advance, window_last, flush = Signal(), Signal(), Signal()
        m.d.comb += [
            window_last.eq(chunk_last & tx_last & ty_last),
            advance.eq(running & desc_fifo.w_rdy & (~new | req_fifo.w_rdy)),
            flush.eq(~running & held_valid & desc_fifo.w_rdy),
            desc.eq(held),
            desc.release.eq(~held.zero & (flush | zero | new)),
            desc_fifo.w_en.eq((advance & held_valid) | flush),
            req_fifo.w_data.eq(group_addr), req_fifo.w_en.eq(advance & new),
        ]
        with m.If(flush):
            m.d.sync += held_valid.eq(0)
        with m.If(advance):
            m.d.sync += [held_valid.eq(1), held.zero.eq(zero), held.offset.eq(e_cur[:4]),
                         held.index.eq(index), held.last.eq(window_last)]
        jump = Signal(range(4))        # 0, or the tap row, pixel, pixel row that moves on
        with m.If(self.start & ~running):
            m.d.sync += [running.eq(1), oy.eq(0), ox.eq(0), ty.eq(0), tx.eq(0), chunk.eq(0),
                         index.eq(0), iy0.eq(-g.pad), ix0.eq(-g.pad), e_cur.eq(g.e_init),
                         tag_valid.eq(0)]
        with m.If(advance):
            with m.If(new):
                m.d.sync += [tag.eq(group_addr), tag_valid.eq(1)]
            with m.If(zero):                  # the group was released: ask for it again
                m.d.sync += tag_valid.eq(0)
            m.d.sync += [index.eq(Mux(window_last, 0, index + 1)),
                         e_cur.eq(e_cur + g.step + jumps[jump])]
            with m.If(~chunk_last):
                m.d.sync += chunk.eq(chunk + 1)
            with m.Else():
                m.d.sync += chunk.eq(0)
                with m.If(~tx_last):
                    m.d.sync += tx.eq(tx + 1)
                with m.Else():
                    m.d.sync += tx.eq(0)
                    with m.If(~ty_last):
                        m.d.comb += jump.eq(1)
                        m.d.sync += ty.eq(ty + 1)
                    with m.Else():
                        m.d.sync += ty.eq(0)
                        with m.If(~ox_last):
                            m.d.comb += jump.eq(2)
                            m.d.sync += [ox.eq(ox + 1), ix0.eq(ix0 + g.stride)]
                        with m.Else():
                            m.d.comb += jump.eq(3)
                            m.d.sync += [ox.eq(0), ix0.eq(-g.pad)]
                            with m.If(~oy_last):
                                m.d.sync += [oy.eq(oy + 1), iy0.eq(iy0 + g.stride)]
                            with m.Else():
                                m.d.sync += running.eq(0)

        # -- 2. reader ---------------------------------------------------------------------
        # A request's first read goes out in the cycle the request is taken (if the port is
        # free); `active` holds a request whose reads are not all granted yet.
        active, phase = Signal(), Signal()
        address = Signal(ADDRESS_BITS)
        pending = Signal(range(3))          # requests taken but whose group is not queued yet
        # A group leaving the queue this cycle makes room for one whose read starts now: its
        # data arrives a cycle later at the earliest.
        releasing = Signal()
        arrive_high, arrive_last = Signal(), Signal()
        take, want, granted, finishing = Signal(), Signal(), Signal(), Signal()
        read_phase = Signal()
        m.d.comb += [
            take.eq(~active & req_fifo.r_rdy
                    & (low_fifo.w_level + pending < self.group_depth + releasing)),
            want.eq(active | take),
            read_phase.eq(active & phase),
            self.port.addr.eq(Mux(active, address, req_fifo.r_data) + read_phase),
            self.port.read.eq(want),
            granted.eq(want & self.port.grant),
            finishing.eq(granted & (read_phase | ~g.both)),
            req_fifo.r_en.eq(take),
        ]
        with m.If(take & ~finishing):
            m.d.sync += [active.eq(1), address.eq(req_fifo.r_data), phase.eq(granted)]
        with m.Elif(active & finishing):
            m.d.sync += active.eq(0)
        with m.Elif(active & granted):
            m.d.sync += phase.eq(1)
        m.d.sync += [arrive_high.eq(granted & ~read_phase), arrive_last.eq(finishing)]
        # A group is complete (readable) once its low half is queued; at b <= 3 its only word
        # is the high one and the low half is zero.
        m.d.comb += [
            high_fifo.w_data.eq(self.port.rdata),
            high_fifo.w_en.eq(Mux(g.both, arrive_high, arrive_last)),
            low_fifo.w_data.eq(Mux(g.both, self.port.rdata, 0)),
            low_fifo.w_en.eq(arrive_last),
        ]
        m.d.sync += pending.eq(pending + take - arrive_last)

        # -- 3. emitter --------------------------------------------------------------------
        # The group at the head of its queue is the current beat's (no copy of it is kept).
        head = data.View(desc_layout, desc_fifo.r_data)
        source = data.View(group_layout, Cat(high_fifo.r_data, low_fifo.r_data))
        out = self.beats
        emit = Signal()
        m.d.comb += [
            emit.eq(desc_fifo.r_rdy & (head.zero | low_fifo.r_rdy)
                    & (~out.valid | out.ready)),
            desc_fifo.r_en.eq(emit),
            releasing.eq(emit & head.release),
            high_fifo.r_en.eq(releasing), low_fifo.r_en.eq(releasing),
            self.emit.eq(emit), self.emit_index.eq(head.index),
        ]
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
            m.d.sync += [out.valid.eq(1), out.payload.index.eq(head.index),
                         out.payload.last.eq(head.last)]
            for lane, value in enumerate(lanes):
                m.d.sync += out.payload.codes[lane].eq(value)
        with m.Elif(out.ready):
            m.d.sync += out.valid.eq(0)

        m.d.comb += self.idle.eq(~running & ~held_valid & ~desc_fifo.r_rdy & ~req_fifo.r_rdy
                                 & ~active
                                 & (pending == 0) & ~high_fifo.r_rdy & ~low_fifo.r_rdy
                                 & ~out.valid)
        return m
