"""A UART on two pins of a cocotb design, as a byte port of `dqt_hw.boards.link`.

`UARTPort(rx, tx, baud)` drives the design's receive pin `rx` (8N1 at `baud`, the host's
nominal rate, so the design's rounding of its divisor is exercised as on a real link) and
decodes the design's transmit pin `tx` in a background task. `send`, `receive(count,
timeout_s)` and `pause(seconds)` count simulated time, so `BridgeTransport` and
`AcceleratorDriver` run on the simulated board exactly as on a serial port.
"""

from collections import deque

import cocotb
from cocotb.triggers import FallingEdge, Timer
from cocotb.utils import get_sim_time

__all__ = ["UARTPort"]


class UARTPort:
    def __init__(self, rx, tx, baud):
        self.rx, self.tx = rx, tx
        self.bit_ps = round(1e12 / baud)
        self.received = deque()
        self.framing_errors = 0
        self.rx.value = 1
        self._monitor = cocotb.start_soon(self._listen())

    async def _listen(self):
        while True:
            await FallingEdge(self.tx)
            await Timer(self.bit_ps // 2, unit="ps")
            if self.tx.value != 0:                 # a glitch
                continue
            value = 0
            for i in range(8):
                await Timer(self.bit_ps, unit="ps")
                value |= int(self.tx.value) << i
            await Timer(self.bit_ps, unit="ps")
            if self.tx.value != 1:
                self.framing_errors += 1
            self.received.append(value)

    async def send(self, data):
        for byte in data:
            for level in [0] + [byte >> i & 1 for i in range(8)] + [1]:
                self.rx.value = level
                await Timer(self.bit_ps, unit="ps")

    async def receive(self, count, timeout_s):
        deadline = get_sim_time(unit="ps") + round(timeout_s * 1e12)
        while len(self.received) < count and get_sim_time(unit="ps") < deadline:
            await Timer(min(10 * self.bit_ps, max(1, deadline - get_sim_time(unit="ps"))),
                        unit="ps")
        return bytes(self.received.popleft() for _ in range(min(count, len(self.received))))

    async def pause(self, seconds):
        if seconds > 0:
            await Timer(max(1, round(seconds * 1e12)), unit="ps")
