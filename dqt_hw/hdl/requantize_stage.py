"""The accelerator's one requantizer, shared by every engine, with the places of its results.

Engines send requests: a value to requantize (an accumulator, a pooling sum, or a residual
join's k1 a + k2 b), its constants (M, r, bias) and where the result goes (`output_layout`
without the value). The stage runs them through `Requantizer` (run-time output range) and
hands each result with its place to the tensor writer. The requantizer keeps its results in
order, so the places wait in a queue (block RAM) from the request to the result. A residual
join is a requantization too: clip(round_shift(k1 a + k2 b + k3, r), lo, hi) is the
requantizer with acc = k1 a + k2 b, bias = k3, M = 1 and acc_shift = 0.
"""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..golden import MULTIPLIER_BITS as GOLDEN_MULTIPLIER_BITS
from .layouts import bits_shape
from ..accel.program import RANGE_BOUND_BITS
from .requantizer import Requantizer
from .tensor_writer import output_layout

__all__ = ["request_layout", "RequantizeStage"]

#: M < 2^15 (docs/arithmetic.md §4.1; the compiler refuses more): the product then takes two
#: DSP-sized pieces (iCE40: 546 LUT4 and 2 SB_MAC16 for this stage, against 638 and 3 with a
#: 16-bit M).
MULTIPLIER_BITS = GOLDEN_MULTIPLIER_BITS


def request_layout(acc_width):
    """One request: the value and constants, and the result's place (see `output_layout`)."""
    place = {name: field.shape for name, field in output_layout() if name != "value"}
    return data.StructLayout({
        "acc": signed(acc_width), "multiplier": unsigned(MULTIPLIER_BITS),
        "shift": unsigned(6), "bias": signed(acc_width), **place,
    })


class RequantizeStage(wiring.Component):
    """Ports: `requests` In(stream of `request_layout(config.value_bits)`), `bits` (the b the
    accumulators were computed at: acc_shift = 2(n - b)), `lo`, `hi`, `full_range` (the
    output range, as `Requantizer(range_ports=True)` takes it; all constant during an
    instruction), `output` Out(stream of `output_layout()`), `idle`
    (nothing in flight)."""

    def __init__(self, config):
        self.config = config
        self.acc_width = config.value_bits
        super().__init__({
            "requests": In(stream.Signature(request_layout(self.acc_width))),
            "bits": In(bits_shape(config.master_bits)),
            "lo": In(signed(RANGE_BOUND_BITS)),
            "hi": In(signed(RANGE_BOUND_BITS)),
            "full_range": In(1),
            "output": Out(stream.Signature(output_layout())),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.requantizer = requantizer = Requantizer(
            master_bits=cfg.master_bits, max_terms=max(cfg.max_terms, 1024),
            multiplier_bits=MULTIPLIER_BITS, range_ports=True, supported_bits=cfg.supported_bits)
        request = self.requests.payload
        rq = requantizer.input.payload
        m.d.comb += [
            requantizer.bits.eq(self.bits), requantizer.lo.eq(self.lo),
            requantizer.hi.eq(self.hi), requantizer.full_range.eq(self.full_range),
            rq.acc.eq(request.acc), rq.multiplier.eq(request.multiplier),
            rq.shift.eq(request.shift), rq.bias.eq(request.bias),
            requantizer.input.valid.eq(self.requests.valid),
            self.requests.ready.eq(requantizer.input.ready),
        ]
        place_layout = data.StructLayout({name: field.shape for name, field in output_layout()
                                          if name != "value"})
        # The places wait in a small queue in block RAM (a pipeline of registers beside the
        # requantizer took 6 x 22 flip-flops): a request's place goes in when the requantizer
        # takes it, and the place at the head leaves with the result, which is in order.
        depth = 1 << requantizer.latency.bit_length()        # more than can be in flight
        m.submodules.places = places = Memory(shape=place_layout, depth=depth, init=[],
                                              attrs={"ram_style": "block"})
        self.places = places                 # for simulators that watch its ports
        push = self.requests.valid & requantizer.input.ready
        pop = requantizer.output.valid & self.output.ready
        write_at, read_at = Signal(range(depth)), Signal(range(depth))
        m.d.sync += [write_at.eq(write_at + push), read_at.eq(read_at + pop)]
        place_write, place_read = places.write_port(), places.read_port()
        head = Signal(range(depth))
        m.d.comb += [
            place_write.addr.eq(write_at), place_write.en.eq(push),
            place_write.data.wide.eq(request.wide), place_write.data.addr.eq(request.addr),
            place_write.data.lane.eq(request.lane), place_write.data.flush.eq(request.flush),
            head.eq(read_at + pop), place_read.addr.eq(head),
            # An entry read as it is written is read again a cycle later, still long before its
            # result (latency 6): the port never reads an address in the cycle it is written.
            place_read.en.eq(~(push & (write_at == head))),
        ]
        place = place_read.data
        busy = Signal(range(depth + 1))          # requests in the requantizer
        m.d.sync += busy.eq(busy + push - pop)
        out = self.output.payload
        m.d.comb += [
            self.output.valid.eq(requantizer.output.valid),
            out.wide.eq(place.wide), out.addr.eq(place.addr), out.lane.eq(place.lane),
            out.flush.eq(place.flush), out.value.eq(requantizer.output.payload),
            requantizer.output.ready.eq(self.output.ready),
            self.idle.eq(busy == 0),
        ]
        return m
