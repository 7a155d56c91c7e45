# amaranth: UnusedElaboratable=no
"""The UART and the UART-to-Wishbone bridge in the Amaranth simulator: frames of the host
protocol become bus accesses, answers are bit-exact, and every documented error is flagged."""

import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from dqt_hw.boards import protocol
from dqt_hw.boards.bridge import UARTBridge
from dqt_hw.boards.uart import UARTReceiver, UARTTransmitter, uart_divisor
from dqt_hw.hdl.sim import test_seed

CLOCK_HZ, BAUD = 1_000_000, 200_000            # 5 cycles per bit
DIVISOR = CLOCK_HZ // BAUD
DEAD = 0x3000                                  # byte addresses from here never acknowledge


class _Board(wiring.Component):
    """The bridge on a 256-word memory that acknowledges after `latency` cycles."""

    def __init__(self, latency=2):
        self.latency = latency
        super().__init__({"rx": wiring.In(1, init=1), "tx": wiring.Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = UARTBridge(clock_hz=CLOCK_HZ, baud=BAUD)
        m.submodules.memory = memory = Memory(shape=32, depth=256, init=[])
        self.memory = memory
        read, write = memory.read_port(domain="comb"), memory.write_port()
        bus = bridge.bus
        m.d.comb += [bridge.rx.eq(self.rx), self.tx.eq(bridge.tx)]
        wait = Signal(8)
        live = bus.cyc & bus.stb & (bus.adr < DEAD // 4)
        m.d.comb += [read.addr.eq(bus.adr), write.addr.eq(bus.adr), write.data.eq(bus.dat_w),
                     bus.dat_r.eq(read.data)]
        with m.If(live & (wait == self.latency)):
            m.d.comb += [bus.ack.eq(1), write.en.eq(bus.we)]
            m.d.sync += wait.eq(0)
        with m.Elif(live):
            m.d.sync += wait.eq(wait + 1)
        return m


def _run(items, *, latency=2):
    """Send `items` to the bridge: bytes (8N1 frames), a list of raw line levels (one bit time
    each) or an int (idle cycles). Return the bytes it answered and the first memory words."""
    dut = _Board(latency)
    answer, contents = [], []
    sim = Simulator(dut)
    sim.add_clock(1 / CLOCK_HZ)

    async def line(ctx, levels):
        for level in levels:
            ctx.set(dut.rx, level)
            await ctx.tick().repeat(DIVISOR)

    async def host(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(20)
        for item in items:
            if isinstance(item, int):
                await ctx.tick().repeat(item)
            elif isinstance(item, list):
                await line(ctx, item)
            else:
                for byte in item:
                    await line(ctx, [0] + [byte >> i & 1 for i in range(8)] + [1])
                await ctx.tick().repeat(DIVISOR * 10 * 30)   # room for an answer
        contents.extend(ctx.get(dut.memory.data[i]) for i in range(16))

    async def listen(ctx):
        level = 1
        while True:
            while level:
                _clk, _rst, level = await ctx.tick().sample(dut.tx)
            samples = []
            for _ in range(10 * DIVISOR - 1):
                _clk, _rst, level = await ctx.tick().sample(dut.tx)
                samples.append(level)
            # The middle of the 8 data bits and the stop bit (sample k is cycle k + 1 of the byte).
            bits = samples[DIVISOR + DIVISOR // 2 - 1::DIVISOR]
            assert bits[8] == 1, "the bridge sent a byte without a stop bit"
            answer.append(sum(bit << i for i, bit in enumerate(bits[:8])))

    sim.add_testbench(host)
    sim.add_process(listen)
    sim.run()
    return bytes(answer), contents


def _read_answer(answer, count):
    assert answer[0] == protocol.REPLY_READ, answer
    assert len(answer) == protocol.read_reply_length(count)
    assert protocol.crc8(answer[:-1]) == answer[-1]
    words = [int.from_bytes(answer[1 + 4 * i:5 + 4 * i], "little") for i in range(count)]
    return words, answer[-2]


def test_crc8_matches_the_reference_check_value():
    # CRC-8 (poly 0x07, init 0): the catalogued check value of "123456789".
    assert protocol.crc8(b"123456789") == 0xF4


def test_writes_then_burst_read_round_trip():
    rng = random.Random(test_seed("bridge round trip"))
    words = [rng.getrandbits(32) for _ in range(5)]
    frames = [protocol.write_frame(0x10, words[:3]), protocol.write_frame(0x1C, words[3:]),
              protocol.read_frame(0x10, 5), protocol.read_frame(0x18)]
    answer, contents = _run(frames, latency=3)
    assert contents[4:9] == words
    first = answer[:protocol.read_reply_length(5)]
    assert _read_answer(first, 5) == (words, 0)
    assert _read_answer(answer[len(first):], 1) == ([words[2]], 0)


def test_identify_answers_magic_version_and_clock():
    answer, _ = _run([protocol.identify_frame()])
    assert len(answer) == protocol.IDENTIFY_REPLY_LENGTH
    assert answer[0] == protocol.REPLY_IDENTIFY and answer[1:5] == protocol.BRIDGE_MAGIC
    assert answer[5] == protocol.PROTOCOL_VERSION
    assert int.from_bytes(answer[6:10], "little") == CLOCK_HZ
    assert answer[10] == 0 and protocol.crc8(answer[:-1]) == answer[-1]


def test_bad_crc_write_is_flagged_and_bad_crc_read_answers_error():
    bad_write = bytearray(protocol.write_frame(0x0, [0x12345678]))
    bad_write[-1] ^= 1
    bad_read = bytearray(protocol.read_frame(0x0))
    bad_read[-1] ^= 0x80
    answer, contents = _run([bytes(bad_write), bytes(bad_read), protocol.read_frame(0x0)])
    assert answer[:3] == bytes([protocol.REPLY_ERROR, protocol.Flags.CRC,
                                protocol.crc8(bytes([protocol.REPLY_ERROR,
                                                     protocol.Flags.CRC]))])
    # The write was done (posted words go out as they arrive); the flag was reported once.
    assert _read_answer(answer[3:], 1) == ([0x12345678], 0)


def test_junk_between_frames_and_unacknowledged_bus_are_flagged():
    answer, _ = _run([b"\x00", protocol.read_frame(DEAD), protocol.read_frame(0x0)])
    words, flags = _read_answer(answer[:protocol.read_reply_length(1)], 1)
    assert words == [0] and flags == protocol.Flags.COMMAND | protocol.Flags.BUS
    assert _read_answer(answer[protocol.read_reply_length(1):], 1)[1] == 0


def test_unfinished_frame_times_out_and_the_bridge_listens_again():
    bridge = UARTBridge(clock_hz=CLOCK_HZ, baud=BAUD)
    half = list(protocol.read_frame(0x0)[:3])
    bits = [level for byte in half for level in [0] + [byte >> i & 1 for i in range(8)] + [1]]
    answer, _ = _run([bits, bridge.timeout_cycles + 10, protocol.read_frame(0x0)])
    assert _read_answer(answer, 1)[1] == protocol.Flags.TIMEOUT


def test_framing_error_is_flagged():
    # 0x00 with a stop bit of 0 (a break), then the line idles and a good frame follows.
    answer, _ = _run([[0] * 10 + [1], DIVISOR * 20, protocol.read_frame(0x0)])
    assert _read_answer(answer, 1)[1] == protocol.Flags.FRAMING


def test_receiver_keeps_a_byte_until_the_next_ones_first_data_bit():
    dut = UARTReceiver(DIVISOR)
    seen = []

    async def bench(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(5)
        for byte in (0xA5, 0x3C):                 # back to back, neither taken
            for level in [0] + [byte >> i & 1 for i in range(8)] + [1]:
                ctx.set(dut.rx, level)
                for _ in range(DIVISOR):
                    await ctx.tick()
                    seen.append((ctx.get(dut.output.valid), ctx.get(dut.output.payload),
                                 ctx.get(dut.overrun)))
        await ctx.tick().repeat(3 * DIVISOR)
        seen.append((ctx.get(dut.output.valid), ctx.get(dut.output.payload), 0))

    sim = Simulator(dut)
    sim.add_clock(1 / CLOCK_HZ)
    sim.add_testbench(bench)
    sim.run()
    first = [payload for valid, payload, _ in seen if valid]
    # The first byte stays valid, unchanged, from its stop bit to the second byte's first
    # data bit (its start bit and half a bit: at least 1.5 bit times); then it is lost.
    assert first[0] == 0xA5 and first.count(0xA5) >= DIVISOR * 3 // 2
    assert sum(overrun for _, _, overrun in seen) == 1
    assert seen[-1][:2] == (1, 0x3C)


@pytest.mark.parametrize("clock_hz,baud,message", [
    (12_000_000, 4_000_000, "needs a clock of at least 16000000 Hz"),
    (12_000_000, 1_150_000, "off at 12000000 Hz"),
])
def test_uart_divisor_refuses_bad_rates(clock_hz, baud, message):
    with pytest.raises(ValueError, match=message):
        uart_divisor(clock_hz, baud)


def test_uart_components_validate_divisor():
    with pytest.raises(ValueError, match="`divisor` must be an integer >= 4, not 3"):
        UARTReceiver(3)
    with pytest.raises(TypeError, match="`divisor` must be an integer >= 4, not 4.0"):
        UARTTransmitter(4.0)
    with pytest.raises(ValueError, match="`address_width` must be at most 30"):
        UARTBridge(clock_hz=CLOCK_HZ, baud=BAUD, address_width=31)
