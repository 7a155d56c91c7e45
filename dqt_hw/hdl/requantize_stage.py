"""The accelerator's one requantizer, shared by every engine, with the places of its results.

Engines send requests: a value to requantize (an accumulator, a pooling sum, or a residual
join's k1 a + k2 b), its constants (M, r, bias) and where the result goes (`output_layout`
without the value). The stage runs them through `Requantizer` (run-time output range) and
hands each result with its place to the tensor writer; the places travel through the
requantizer's pipeline as its tags. A residual join is a requantization too: clip(round_shift(k1 a +
k2 b + k3, r), lo, hi) is the requantizer with acc = k1 a + k2 b, bias = k3, M = 1 and
acc_shift = 0.
"""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import MULTIPLIER_BITS
from .layouts import bits_shape
from .requantizer import RANGE_PORT_BITS, Requantizer
from .tensor_writer import output_layout

__all__ = ["request_layout", "RequantizeStage"]


def request_layout(acc_width):
    """One request: the value and constants, and the result's place (see `output_layout`)."""
    place = {name: field.shape for name, field in output_layout() if name != "value"}
    return data.StructLayout({
        "acc": signed(acc_width), "multiplier": unsigned(MULTIPLIER_BITS),
        "shift": unsigned(6), "bias": signed(acc_width), **place,
    })


class RequantizeStage(wiring.Component):
    """Ports: `requests` In(stream of `request_layout(config.value_bits)`), `bits` (the b the
    accumulators were computed at: acc_shift = 2(n - b)), `lo`, `hi` (the output range; all
    three constant during an instruction), `output` Out(stream of `output_layout()`), `idle`
    (nothing in flight)."""

    def __init__(self, config):
        self.config = config
        self.acc_width = config.value_bits
        super().__init__({
            "requests": In(stream.Signature(request_layout(self.acc_width))),
            "bits": In(bits_shape(config.master_bits)),
            "lo": In(signed(RANGE_PORT_BITS)),
            "hi": In(signed(RANGE_PORT_BITS)),
            "output": Out(stream.Signature(output_layout())),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        place_layout = data.StructLayout({name: field.shape for name, field in output_layout()
                                          if name != "value"})
        m.submodules.requantizer = requantizer = Requantizer(
            master_bits=cfg.master_bits, max_terms=max(cfg.max_terms, 1024),
            multiplier_bits=MULTIPLIER_BITS, range_ports=True,
            supported_bits=cfg.supported_bits, tag_shape=place_layout)
        request = self.requests.payload
        rq = requantizer.input.payload
        m.d.comb += [
            requantizer.bits.eq(self.bits), requantizer.lo.eq(self.lo),
            requantizer.hi.eq(self.hi),
            rq.acc.eq(request.acc), rq.multiplier.eq(request.multiplier),
            rq.shift.eq(request.shift), rq.bias.eq(request.bias),
            rq.tag.wide.eq(request.wide), rq.tag.addr.eq(request.addr),
            rq.tag.lane.eq(request.lane), rq.tag.flush.eq(request.flush),
            requantizer.input.valid.eq(self.requests.valid),
            self.requests.ready.eq(requantizer.input.ready),
        ]
        result = requantizer.output.payload
        out = self.output.payload
        m.d.comb += [
            self.output.valid.eq(requantizer.output.valid),
            out.wide.eq(result.tag.wide), out.addr.eq(result.tag.addr),
            out.lane.eq(result.tag.lane), out.flush.eq(result.tag.flush),
            out.value.eq(result.value),
            requantizer.output.ready.eq(self.output.ready),
        ]
        # Requests in the requantizer's pipeline, for `idle`.
        in_flight = Signal(range(requantizer.latency + 1))
        taken = self.requests.valid & self.requests.ready
        left = self.output.valid & self.output.ready
        m.d.sync += in_flight.eq(in_flight + taken - left)
        m.d.comb += self.idle.eq(in_flight == 0)
        return m
