"""Drivers and monitors for `amaranth.lib.stream` ports in the generated Verilog.

An Amaranth stream port `name` becomes the Verilog ports `name__valid`, `name__ready` and
`name__payload` (the payload flattened to one vector in its `lib.data` layout's bit order).
A transfer happens on a rising clock edge where `valid` and `ready` were both high.

Both sides stall at random so every block is tested under valid gaps (the source withholds
`valid`) and back-pressure (the sink withholds `ready`). A `StallPolicy` switches between
stall probabilities in phases of random length, so one run covers full-rate stretches (no
stall), light and heavy stalls. While `valid` is low the source drives random junk on the
payload, so a block that samples its payload without `valid` produces a mismatch.

Timing discipline (one clock, edges at t): the driver and the sink write their outputs just
after a rising edge and sample the handshake in the read-only phase of the same time step,
after every combinational path (a `ready` that depends on `valid`, say) has settled.
"""

from collections import deque

from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["StallPolicy", "StreamSource", "StreamSink", "stream_ports"]


def stream_ports(dut, name):
    """The (valid, ready, payload) handles of stream port `name` of `dut`."""
    try:
        return (getattr(dut, f"{name}__valid"), getattr(dut, f"{name}__ready"),
                getattr(dut, f"{name}__payload"))
    except AttributeError as error:
        raise AttributeError(f"{dut._name} has no stream port `{name}` "
                             f"({name}__valid/__ready/__payload): {error}") from None


class StallPolicy:
    """Random stalls in phases: each phase draws a stall probability from `probabilities` and
    lasts a random number of cycles in [1, `max_phase_cycles`].

    `random` is a `random.Random` (fast per-cycle draws); `probabilities` (each in [0, 1))
    includes 0 by default so the block also runs at full rate, where throughput bugs show.
    """

    def __init__(self, random, probabilities=(0.0, 0.2, 0.5, 0.8), max_phase_cycles=64):
        if not probabilities or any(not 0 <= p < 1 for p in probabilities):
            raise ValueError(f"`probabilities` must be values in [0, 1), not {probabilities!r}")
        if max_phase_cycles < 1:
            raise ValueError(f"`max_phase_cycles` must be a positive integer, "
                             f"not {max_phase_cycles!r}")
        self._random = random
        self._probabilities = tuple(probabilities)
        self._max_phase_cycles = max_phase_cycles
        self._left = 0
        self._probability = 0.0

    @classmethod
    def never(cls, random):
        """A policy that never stalls (full-rate reference runs)."""
        return cls(random, probabilities=(0.0,))

    def stall(self):
        """Whether to stall this cycle."""
        if self._left == 0:
            self._probability = self._random.choice(self._probabilities)
            self._left = self._random.randint(1, self._max_phase_cycles)
        self._left -= 1
        return self._probability > 0 and self._random.random() < self._probability


class StreamSource:
    """Drives one stream input of the DUT from a queue of packed payloads (ints).

    Once `valid` is raised it stays high with the payload unchanged until the transfer, as
    `amaranth.lib.stream` requires; stalls only happen between transfers.

    `sideband` names plain DUT inputs that the block samples together with each accepted
    payload (a layer's `bits`, the residual adder's k-constants): each queued payload carries
    its own values for them, applied while that payload is offered. With `junk_sideband` they
    get random bits while `valid` is low (for blocks that ignore them then); otherwise they
    keep their last value (for contracts like "change `bits` only between dot products").
    """

    def __init__(self, clock, dut, name, *, stall, random, sideband=(), junk_sideband=True):
        self._clock = clock
        self.valid, self.ready, self.payload = stream_ports(dut, name)
        self.name = name
        self._stall = stall
        self._random = random
        self._width = len(self.payload)
        self._sideband = [getattr(dut, port) for port in sideband]
        self._sideband_widths = [len(port) for port in self._sideband]
        self._junk_sideband = junk_sideband
        self._queue = deque()
        self.transfers = 0
        self.valid.value = 0
        self.payload.value = 0

    def send(self, payload, sideband=()):
        """Queue one packed payload (a non-negative int of the port's width) and the values of
        the sideband ports (ints, in the order given at construction) that go with it."""
        if not 0 <= payload < (1 << self._width):
            raise ValueError(f"payload {payload:#x} does not fit `{self.name}__payload` "
                             f"({self._width} bits)")
        if len(sideband) != len(self._sideband):
            raise ValueError(f"`sideband` must hold {len(self._sideband)} values, "
                             f"not {len(sideband)}")
        self._queue.append((payload, tuple(sideband)))

    @property
    def idle(self):
        """True once every queued payload has been transferred."""
        return not self._queue

    def _offer(self, payload, sideband):
        self.payload.value = payload
        for port, width, value in zip(self._sideband, self._sideband_widths, sideband):
            port.value = value & ((1 << width) - 1)
        self.valid.value = 1

    def _withhold(self):
        self.valid.value = 0
        self.payload.value = self._random.getrandbits(self._width)
        if self._junk_sideband:
            for port, width in zip(self._sideband, self._sideband_widths):
                port.value = self._random.getrandbits(width)

    async def run(self):
        edge = RisingEdge(self._clock)
        presenting = False
        while True:
            await edge
            if not presenting:
                if self._queue and not self._stall.stall():
                    self._offer(*self._queue[0])
                    presenting = True
                else:
                    self._withhold()
            await ReadOnly()
            if presenting and self.ready.value:
                # The transfer completes on this rising edge's successor.
                self._queue.popleft()
                self.transfers += 1
                presenting = False


class StreamSink:
    """Accepts one stream output of the DUT with random back-pressure on `ready` and hands
    each transferred payload (an int) to `callback`."""

    def __init__(self, clock, dut, name, *, stall, callback):
        self._clock = clock
        self.valid, self.ready, self.payload = stream_ports(dut, name)
        self.name = name
        self._stall = stall
        self._callback = callback
        self.transfers = 0
        self.ready.value = 0

    async def run(self):
        edge = RisingEdge(self._clock)
        while True:
            await edge
            ready = not self._stall.stall()
            self.ready.value = int(ready)
            await ReadOnly()
            if ready and self.valid.value:
                self.transfers += 1
                self._callback(self.payload.value.to_unsigned())
