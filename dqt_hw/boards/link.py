"""The host end of the board link: `dqt_hw.accel.driver`'s transport over the bridge protocol.

`BridgeTransport(port)` turns the driver's `read(address)` / `write(address, value)` /
`wait(cycles)` into frames of `dqt_hw.boards.protocol`. Writes to consecutive addresses are
gathered into one frame (an image goes out as a few bursts) and sent before the next read or
wait; every answer is checked (first byte, length, CRC, FLAGS), so a board that is silent,
runs another baud rate or answers garbage raises `LinkError` with one line, never hangs.

A *port* moves bytes: `async send(data)`, `async receive(count, timeout_s) -> bytes` (fewer
bytes when the time is up) and `async pause(seconds)`. `SerialPort` is a pyserial port (the
board); the simulated board's port drives the UART pins of the bitstream's top level in cocotb
(sim/dqt_tb/uart.py). The same transport and the same driver run on both.
"""

import time

from . import protocol

__all__ = ["LinkError", "BridgeTransport", "SerialPort", "open_serial"]


class LinkError(RuntimeError):
    """The board did not answer, or answered something that is not the protocol."""


class BridgeTransport:
    """See the module docstring. `timeout_s` bounds the silence while an answer is due. After
    `identify()`, `clock_hz` is the board's design clock and `wait(cycles)` pauses that long.
    Counters: `bytes_out`, `bytes_in`, `frames`."""

    def __init__(self, port, *, timeout_s=1.0, clock_hz=None):
        self.port = port
        self.timeout_s = timeout_s
        self.clock_hz = clock_hz
        self._pending_address, self._pending = None, []
        self.bytes_out = self.bytes_in = self.frames = 0

    async def _send(self, frame):
        self.bytes_out += len(frame)
        self.frames += 1
        await self.port.send(frame)

    async def flush(self):
        """Send the gathered writes."""
        if self._pending:
            address, words = self._pending_address, self._pending
            self._pending_address, self._pending = None, []
            for start in range(0, len(words), protocol.MAX_BURST):
                await self._send(protocol.write_frame(address + 4 * start,
                                                      words[start:start + protocol.MAX_BURST]))

    async def write(self, address, value):
        if (self._pending and address == self._pending_address + 4 * len(self._pending)
                and len(self._pending) < protocol.MAX_BURST):
            self._pending.append(value)
            return
        await self.flush()
        self._pending_address, self._pending = address, [value]

    async def _answer(self, kind, length, what):
        first = await self.port.receive(1, self.timeout_s)
        if not first:
            raise LinkError(f"no answer from the board within {self.timeout_s:g} s to {what} "
                            f"(is the bitstream loaded, and are the port and baud rate right?)")
        if first[0] == protocol.REPLY_ERROR:
            rest = await self.port.receive(2, self.timeout_s)
            raise LinkError(f"the board refused {what}: the frame arrived damaged"
                            + (f" ({protocol.describe_flags(rest[0])})"
                               if len(rest) == 2 and rest[0] else ""))
        if first[0] != kind:
            junk = first + await self.port.receive(64, 0.05)
            raise LinkError(f"the board answered garbage to {what}: {junk[:16].hex(' ')}"
                            f"{' ...' if len(junk) > 16 else ''} (another baud rate or "
                            f"another device on this port?)")
        # A long answer takes a while on the line: give up only after `timeout_s` of silence.
        answer = first
        while len(answer) < length:
            chunk = await self.port.receive(length - len(answer), self.timeout_s)
            if not chunk:
                break
            answer += chunk
        self.bytes_in += len(answer)
        if len(answer) < length:
            raise LinkError(f"the board's answer to {what} stopped after {len(answer)} of "
                            f"{length} bytes")
        if protocol.crc8(answer[:-1]) != answer[-1]:
            raise LinkError(f"the board's answer to {what} has a wrong CRC (a damaged byte "
                            f"on the line)")
        flags = answer[-2]
        if flags:
            raise LinkError(f"the board reports a link error before {what}: "
                            f"{protocol.describe_flags(flags)}")
        return answer[1:-2]

    async def read_words(self, address, count):
        """`count` consecutive words from byte address `address` (bursts of 256)."""
        await self.flush()
        words = []
        for start in range(0, count, protocol.MAX_BURST):
            n = min(protocol.MAX_BURST, count - start)
            at = address + 4 * (start)
            await self._send(protocol.read_frame(at, n))
            body = await self._answer(protocol.REPLY_READ, protocol.read_reply_length(n),
                                      f"a read of {n} words at {at:#x}")
            words += [int.from_bytes(body[4 * i:4 * i + 4], "little") for i in range(n)]
        return words

    async def read(self, address):
        return (await self.read_words(address, 1))[0]

    async def identify(self):
        """Ask the bridge who it is: {"version", "clock_hz"}; sets `clock_hz`."""
        await self.flush()
        await self._send(protocol.identify_frame())
        body = await self._answer(protocol.REPLY_IDENTIFY, protocol.IDENTIFY_REPLY_LENGTH,
                                  "the identify frame")
        if body[:4] != protocol.BRIDGE_MAGIC:
            raise LinkError(f"the device on this port is not a dqt-hw board bridge "
                            f"(magic {body[:4]!r})")
        if body[4] != protocol.PROTOCOL_VERSION:
            raise LinkError(f"the board speaks link protocol version {body[4]}; this host "
                            f"speaks {protocol.PROTOCOL_VERSION} (rebuild the bitstream or "
                            f"update dqt-hw)")
        self.clock_hz = int.from_bytes(body[5:9], "little")
        return {"version": body[4], "clock_hz": self.clock_hz}

    async def wait(self, cycles):
        await self.flush()
        if self.clock_hz:
            await self.port.pause(cycles / self.clock_hz)


class SerialPort:
    """A pyserial port as a link port (blocking calls inside coroutines: the host runs one
    board at a time)."""

    def __init__(self, serial_port):
        self.serial = serial_port

    async def send(self, data):
        self.serial.write(data)

    async def receive(self, count, timeout_s):
        self.serial.timeout = timeout_s
        data = bytearray()
        deadline = time.monotonic() + timeout_s
        while len(data) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.serial.timeout = left
            chunk = self.serial.read(count - len(data))
            if not chunk:
                break
            data += chunk
        return bytes(data)

    async def pause(self, seconds):
        time.sleep(seconds)

    def drain(self, quiet_s=0.05):
        """Drop whatever the board sent before we spoke (after power-up, a previous run)."""
        self.serial.reset_input_buffer()
        time.sleep(quiet_s)
        self.serial.reset_input_buffer()


def open_serial(name, baud):
    """A `SerialPort` on device `name` at `baud`; OSError with one line when it cannot open."""
    try:
        import serial
    except ImportError:
        raise OSError("the host link needs pyserial: pip install pyserial") from None
    try:
        port = serial.Serial(name, baud, timeout=1.0, write_timeout=5.0)
    except (serial.SerialException, ValueError) as error:
        raise OSError(f"cannot open {name}: {str(error).splitlines()[0]}") from None
    try:
        port.set_low_latency_mode(True)       # Linux FTDI: 1 ms instead of 16 ms per answer
    except (AttributeError, NotImplementedError, ValueError, OSError):
        pass
    return SerialPort(port)
